"""aiortc's receive queues, bounded. aiortc (1.16) hands a track's encoded frames to its decoder
thread through a ``queue.Queue`` and the decoded pictures to ``recv()`` through an ``asyncio.Queue``,
both without a bound: a picture nobody reads (a second track, sound on a server without voice
models) or read slower than it comes (an 8K stream) stays in memory, +41 MB a second for an unread
720p30 track. Each queue is swapped, before the receiver starts, for one that keeps the newest
``size`` and counts what it drops, as every other queue at dfstream's edge does.

This reaches into two of aiortc's private attributes (``RemoteStreamTrack._queue`` and the
receiver's decoder queue); ``bound_receiver`` checks they are there and says so in one line if an
aiortc release renamed them, rather than leaving the queues unbounded silently.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Any

DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"  # RTCRtpReceiver.__decoder_queue, name-mangled


class NewestPictures(asyncio.Queue):
    """The decoded pictures ``recv()`` reads: the newest ``maxsize``; a put never waits (aiortc's
    decoder thread puts through ``run_coroutine_threadsafe``: a waiting put would pile up there)."""

    def __init__(self, maxsize: int, on_drop: Callable[[], None]):
        super().__init__(maxsize)
        self._on_drop = on_drop

    def put_nowait(self, item: Any) -> None:
        if self.full():
            self.get_nowait()
            if item is not None:  # None is the end of the track: it always gets in
                self._on_drop()
        super().put_nowait(item)

    async def put(self, item: Any) -> None:
        self.put_nowait(item)


class NewestEncoded(queue.Queue):
    """The encoded frames the decoder thread takes: the newest ``maxsize`` (a dropped frame costs
    the picture until the next keyframe, which a stream too big to decode in time pays anyway)."""

    def __init__(self, maxsize: int, on_drop: Callable[[], None]):
        super().__init__(maxsize)
        self._on_drop = on_drop

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        while True:
            try:
                super().put(item, block=False)
                return
            except queue.Full:
                try:
                    self.get_nowait()
                    self._on_drop()
                except queue.Empty:
                    pass


def bound_receiver(receiver: object, track: object, size: int, on_drop: Callable[[], None]) -> None:
    """Bound ``receiver``'s decoder queue and ``track``'s picture queue (before the receiver starts)."""
    for owner, name in ((receiver, DECODER_QUEUE), (track, "_queue")):
        if not hasattr(owner, name):
            raise RuntimeError(f"aiortc's {type(owner).__name__} has no {name}: this aiortc cannot be bounded")
    setattr(receiver, DECODER_QUEUE, NewestEncoded(size, on_drop))
    track._queue = NewestPictures(size, on_drop)  # type: ignore[attr-defined]
