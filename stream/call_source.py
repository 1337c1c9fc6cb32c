"""One WebRTC session read as a source: the same frames, sound, queues, counts and statuses as
``Source`` gives the worker for a camera, from the tracks a ``Session`` (``calls.py``) receives.

aiortc decodes in its own threads and hands ``av.VideoFrame``s to the event loop; converting one to
RGB is done off the loop (a 720p frame is milliseconds). A call has no server to reconnect to: when
no media comes for ``stall_timeout_s / 2`` the stream is ``reconnecting`` (the sender may only have
paused: a hidden tab, a frozen window), after ``stall_timeout_s`` the session is ended and the stream
goes ``offline``, as a camera that does not come back. Times: a frame's ``pts`` is the session's
clock (seconds since the offer was answered, advanced by the sender's RTP timestamps), the sound's
the same, so a face and a voice verdict of one moment carry comparable times.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator

from core.errors import LifecycleError
from core.queues import DropOldestQueue

from .audio import AudioChunk, AudioDecoder
from .calls import Session
from .config import StreamConfig
from .frame import Frame
from .source import AUDIO_QUEUE, Counters, Feed, SourceCount, SourceCounters, SourceStatus, StatusCallback

_WRAP = 2**32  # RTP timestamps are 32-bit


class _Clock:
    """A track's RTP timestamps as seconds since the session started."""

    def __init__(self, started_mono: float):
        self.started = started_mono
        self.first: int | None = None
        self.offset = 0.0

    def seconds(self, rtp: int | None, rate: float) -> float:
        if rtp is None:
            return time.monotonic() - self.started
        if self.first is None:
            self.first, self.offset = rtp, time.monotonic() - self.started
        return self.offset + ((rtp - self.first) % _WRAP) / rate


class _Rate:
    """Pictures a second over the last two seconds; over the limit by a fifth ends the call (a burst a
    sender flushes after a pause stays under it)."""

    WINDOW_S = 2.0

    def __init__(self, limit: float):
        self.limit = limit
        self.times: collections.deque[float] = collections.deque()

    def add(self, now: float) -> float | None:
        """The rate, when it is over the limit by a fifth; else None."""
        self.times.append(now)
        while now - self.times[0] > self.WINDOW_S:
            self.times.popleft()
        rate = len(self.times) / self.WINDOW_S
        return rate if len(self.times) > 1.2 * self.limit * self.WINDOW_S else None


class CallSource(Feed):
    def __init__(
        self,
        session: Session,
        config: StreamConfig,
        on_status: StatusCallback | None = None,
        counters: Counters | None = None,
        listen: bool = False,
    ):
        super().__init__(config.id)
        self.session = session
        self.config = config
        self.status = SourceStatus.CONNECTING
        self.last_error: str | None = None
        self.counters = counters or SourceCounters()
        self._on_status = on_status
        self.listening = listen and config.audio == "auto" and session.audio is not None
        self._queue: DropOldestQueue[Frame] | None = None
        self._audio: DropOldestQueue[AudioChunk] | None = None
        self._seq = 0
        self._last_frame = time.monotonic()
        self._dropped_counted = 0

    async def _open(self) -> None:
        self._queue = DropOldestQueue(self.config.queue_size, on_drop=self._dropped)
        self.spawn("video", self._pictures)
        if self.listening:
            self._audio = DropOldestQueue(AUDIO_QUEUE, on_drop=self._audio_dropped)
            self.spawn("audio", self._sound)
        self.spawn("watchdog", self._watch)
        self.spawn("ended", self._until_ended)

    async def _close(self) -> None:
        await self.session.close("the stream stopped")
        self._close_queues()
        self._set_status(SourceStatus.OFFLINE, self.session.reason)

    def request_stop(self) -> None:
        asyncio.get_running_loop().create_task(self.session.close("dfstream is stopping"))
        self._close_queues()

    async def __aiter__(self) -> AsyncIterator[Frame]:
        if self._queue is None:
            raise LifecycleError(f"source {self.config.id}: use `async with CallSource(...)` first")
        async for frame in self._queue:
            yield frame

    # ---- the tracks ----------------------------------------------------------------------------
    async def _pictures(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        track, clock = self.session.video, _Clock(self.session.started_mono)
        last_kept: float | None = None
        cap = self.config.fps
        rate = _Rate(self.session.policy.max_fps)
        while True:
            try:
                picture = await track.recv()  # type: ignore[attr-defined]
            except MediaStreamError:
                await self.session.close("the sender ended its video")
                return
            self.counters.count(SourceCount.FRAMES_DECODED)
            now = time.monotonic()
            if (beyond := self._beyond(picture.width, picture.height, rate.add(now))) is not None:
                self.counters.count(SourceCount.ERRORS)
                await self.session.close(beyond)
                return
            if cap is not None and last_kept is not None and now - last_kept < 0.95 / cap:
                self.counters.count(SourceCount.DROPPED_FPS_CAP)
                continue
            last_kept = now
            if self._thinned():
                self._seq += 1
                continue
            pts = clock.seconds(picture.pts, 90_000)
            image = await asyncio.to_thread(picture.to_ndarray, format="rgb24")
            assert self._queue is not None
            self._queue.put(Frame(self.config.id, self._seq, pts, time.time(), now, image))
            self._seq += 1
            self._mark_frame()

    async def _sound(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        track, clock = self.session.audio, _Clock(self.session.started_mono)
        decoder = AudioDecoder(self.config.id, lambda: self.counters.count(SourceCount.AUDIO_DECODE_ERRORS))
        while True:
            try:
                frame = await track.recv()  # type: ignore[attr-defined]
            except MediaStreamError:
                return  # the picture decides when the call is over
            frame.pts = round(clock.seconds(frame.pts, frame.sample_rate) * frame.sample_rate)
            for chunk in decoder.add([frame]):
                self.counters.count(SourceCount.AUDIO_CHUNKS)
                assert self._audio is not None
                self._audio.put(chunk)

    async def _until_ended(self) -> None:
        await self.session.ended.wait()
        self.last_error = self.session.reason
        self._close_queues()

    async def _watch(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(min(0.5, cfg.stall_timeout_s / 4))
            silent = time.monotonic() - self._last_frame
            if (dropped := self.session.dropped - self._dropped_counted) > 0:  # aiortc's bounded queues
                self._dropped_counted += dropped
                self.counters.count(SourceCount.DROPPED_QUEUE_FULL, dropped)
            if self.status is SourceStatus.CONNECTING and silent > cfg.open_timeout_s:
                self.counters.count(SourceCount.ERRORS)
                await self.session.close(f"no video within {cfg.open_timeout_s:g}s of the answer (open_timeout_s)")
            elif self.status is SourceStatus.ONLINE and silent > cfg.stall_timeout_s / 2:
                self.counters.count(SourceCount.STALLS)
                self._set_status(SourceStatus.RECONNECTING, f"no media for {cfg.stall_timeout_s / 2:g}s")
            elif self.status is SourceStatus.RECONNECTING and silent > cfg.stall_timeout_s:
                await self.session.close(f"no media for {cfg.stall_timeout_s:g}s (stall_timeout_s)")

    def _beyond(self, width: int, height: int, fps: float | None) -> str | None:
        """Why a picture ends the session: larger or faster than the calls' policy allows."""
        policy = self.session.policy
        long, short = max(width, height), min(width, height)  # a portrait phone is a landscape one turned
        if long > max(policy.max_width, policy.max_height) or short > min(policy.max_width, policy.max_height):
            return (
                f"a {width}x{height} picture, over calls.max_width x max_height {policy.max_width}x{policy.max_height}"
            )
        if fps is not None:
            return f"{fps:.0f} pictures a second, over calls.max_fps {policy.max_fps:g}"
        return None

    def _mark_frame(self) -> None:
        self._last_frame = time.monotonic()
        if self.status is not SourceStatus.ONLINE:
            self._set_status(SourceStatus.ONLINE, None)
