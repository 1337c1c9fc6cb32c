"""The live view's tap: per stream, the newest judged frame and its faces, kept only while someone
watches. Unwatched, a stream pays one dictionary lookup per frame; watched, it hands over a
reference to a frame it no longer needs (never a copy). Drawing and encoding are the viewer's,
off the event loop, at the viewer's rate; a viewer that falls behind only misses frames."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from pipeline.models.detections import Box

Follower = Callable[["Shot"], Awaitable[None]]


@dataclass(frozen=True)
class Face:
    track_id: int
    box: Box
    label: str  # real, fake, uncertain; "pending" before its first verdict
    probability: float | None  # smoothed P(fake)


@dataclass(frozen=True)
class Shot:
    """One judged frame as the stream saw it."""

    stream: str
    seq: int  # the frame's sequence number in its stream
    pts: float | None  # its presentation time in seconds, as the source says
    arrival_mono: float  # when it was decoded (monotonic): the live view's latency starts here
    image: np.ndarray  # RGB
    faces: tuple[Face, ...]


class LiveTap:
    def __init__(self) -> None:
        self._watchers: dict[str, int] = {}
        self._latest: dict[str, Shot] = {}
        self._fresh: dict[str, asyncio.Event] = {}
        self._followers: dict[str, list[Follower]] = {}

    def watching(self, stream: str) -> bool:
        return self._watchers.get(stream, 0) > 0 or stream in self._followers

    def watchers(self, stream: str) -> int:
        return self._watchers.get(stream, 0)

    async def offer(self, shot: Shot) -> None:
        """From a stream worker, once a frame is judged (only while watched). A follower that waits
        (``dfstream annotate``'s encoder) holds the stream back: that is its backpressure."""
        for follower in self._followers.get(shot.stream, ()):
            await follower(shot)
        self._latest[shot.stream] = shot
        fresh = self._fresh.get(shot.stream)
        if fresh is not None:
            fresh.set()

    def forget(self, stream: str) -> None:
        """A stream that ended for good: its last shot goes (nobody watches it any more)."""
        if not self.watching(stream):
            self._latest.pop(stream, None)
            self._fresh.pop(stream, None)

    def latest(self, stream: str) -> Shot | None:
        return self._latest.get(stream)

    async def next(self, stream: str, after: int, timeout: float) -> Shot | None:
        """The newest shot newer than frame ``after``, waiting up to ``timeout``; None if none came."""
        fresh = self._fresh.setdefault(stream, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            shot = self._latest.get(stream)
            if shot is not None and shot.seq > after:
                return shot
            fresh.clear()
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(fresh.wait(), left)
            except TimeoutError:
                return None

    @contextmanager
    def watch(self, stream: str) -> Iterator[None]:
        """While inside, the stream offers its frames; the last viewer leaving drops the frame held."""
        self._watchers[stream] = self._watchers.get(stream, 0) + 1
        try:
            yield
        finally:
            self._watchers[stream] -= 1
            if not self._watchers[stream]:
                del self._watchers[stream]
                self._latest.pop(stream, None)

    @contextmanager
    def follow(self, stream: str, receive: Follower) -> Iterator[None]:
        """While inside, ``receive`` gets every judged frame of the stream, in order, on the event
        loop (an output that must see every frame: ``dfstream annotate``, a re-encoded stream)."""
        self._followers.setdefault(stream, []).append(receive)
        try:
            yield
        finally:
            self._followers[stream].remove(receive)
            if not self._followers[stream]:
                del self._followers[stream]
