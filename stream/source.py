"""A video source: PyAV decoding in its own thread, frames handed to the event loop through a
bounded queue, a watchdog, and reconnection with the shared backoff (``core.backoff``).

    async with Source(config, on_status=...) as source:
        async for frame in source:
            ...

Live sources keep the newest frames: when the consumer falls behind, the oldest queued frame is
dropped and counted (``dropped:queue_full``). A file read ``asap`` waits for the consumer
instead, so every frame is judged. When the runtime listens (a voice model is configured and the
stream's ``audio`` is ``auto``), the same demuxer's audio packets are decoded in the same thread
into ``AudioChunk``s (``audio.py``) on a second queue that behaves the same way; a stream without an
audio track, or a runtime that does not listen, never demuxes its sound.

Measured with real servers: a killed RTSP server makes ``decode``
simply end, so a live source treats a normal end as a disconnect; a hung server blocks reads
forever unless ``av.open`` gets a read timeout, after which the read gives up in about twice that.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import av

from core.backoff import Backoff
from core.errors import LifecycleError, SourceDecodeError, SourceError, SourceOpenError, SourceTimeoutError, one_line
from core.handoff import LoopHandoff, Stopped
from core.lifecycle import Lifecycle
from core.queues import QUEUE_FULL, DropOldestQueue
from core.redaction import redact

from .audio import AudioChunk, AudioDecoder
from .config import StreamConfig
from .frame import Frame
from .sample import sample_clip_path
from .screen import GRABBERS, screen_input
from .urls import file_path, open_options

log = logging.getLogger(__name__)


class SourceStatus(str, enum.Enum):
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


class SourceCount(str, enum.Enum):
    """What a source counts (the runtime maps each onto its own metric)."""

    FRAMES_DECODED = "frames_decoded"
    DROPPED_FPS_CAP = "dropped:fps_cap"
    DROPPED_QUEUE_FULL = "dropped:queue_full"
    DROPPED_OVERLOAD = "dropped:overload"  # shed before conversion, at the share the worker set (``shed_frames``)
    DECODE_ERRORS = "decode_errors"
    ERRORS = "errors"  # failed opens and reads
    RECONNECTS = "reconnects"
    STALLS = "stalls"
    AUDIO_CHUNKS = "audio_chunks"  # 0.1 s each
    AUDIO_DROPPED = "audio_dropped"  # chunks dropped: the voice path fell behind a live stream
    AUDIO_DECODE_ERRORS = "audio_decode_errors"


class Counters(Protocol):
    def count(self, key: SourceCount, n: int = 1) -> None: ...

    def expected_fps(self, fps: float) -> None: ...


class SourceCounters:
    """A thread-safe tally, for sources run without a PerformanceMonitor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: collections.Counter[str] = collections.Counter()
        self.fps: float | None = None

    def count(self, key: SourceCount, n: int = 1) -> None:
        with self._lock:
            self.values[key.value] += n

    def expected_fps(self, fps: float) -> None:
        self.fps = fps


StatusCallback = Callable[[str, SourceStatus, str | None], None]

AUDIO_QUEUE = 80  # chunks (8 s): room for a voice model's batch to finish while a live stream's sound keeps coming


class EvenDrop:
    """Drops a share of a stream's frames spread evenly (at 0.25, every fourth), not in bursts."""

    def __init__(self) -> None:
        self.credit = 0.0

    def __call__(self, share: float) -> bool:
        if share <= 0.0:
            self.credit = 0.0
            return False
        self.credit += share
        if self.credit < 1.0:
            return False
        self.credit -= 1.0
        return True


class Feed(Lifecycle):
    """What every source hands the worker: frames and sound on two bounded queues, counted drops, and
    its status told once per change (``Source`` for what FFmpeg opens, ``CallSource`` for a WebRTC call).

    Under overload the worker asks for a share of the frames to be shed (``shed_frames``): they are
    dropped where they are decoded, before the RGB conversion and the hand-over to the event loop
    that a dropped frame would waste, and their numbers are skipped (``Frame.seq`` keeps counting
    the stream's frames, so the gap says how many went)."""

    config: StreamConfig
    status: SourceStatus
    counters: Counters
    _on_status: StatusCallback | None
    _queue: DropOldestQueue[Frame] | None
    _audio: DropOldestQueue[AudioChunk] | None

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._shed = 0.0  # written by the event loop, read by the decode thread: one float, no lock needed
        self._even = EvenDrop()

    def shed_frames(self, share: float) -> None:
        """Drop this share of the frames from now on (0 for none), evenly, each counted ``dropped:overload``."""
        self._shed = share

    def _thinned(self) -> bool:
        """Whether the frame just decoded is one of those shed (counted)."""
        if not self._even(self._shed):
            return False
        self.counters.count(SourceCount.DROPPED_OVERLOAD)
        return True

    def _close_queues(self) -> None:
        for queue in (self._queue, self._audio):
            if queue is not None:
                queue.close()

    async def sound(self) -> AsyncIterator[AudioChunk]:
        """The stream's audio, while the source runs; nothing when it does not listen."""
        if self._audio is None:
            return
        async for chunk in self._audio:
            yield chunk

    def queued(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def _dropped(self, frame: Frame, reason: str) -> None:
        if reason == QUEUE_FULL:
            self.counters.count(SourceCount.DROPPED_QUEUE_FULL)

    def _audio_dropped(self, chunk: AudioChunk, reason: str) -> None:
        if reason == QUEUE_FULL:
            self.counters.count(SourceCount.AUDIO_DROPPED)

    def _set_status(self, status: SourceStatus, reason: str | None) -> None:
        if status is self.status:
            return
        self.status = status
        if self._on_status is not None:
            self._on_status(self.config.id, status, reason)


class Source(Feed):
    def __init__(
        self,
        config: StreamConfig,
        on_status: StatusCallback | None = None,
        counters: Counters | None = None,
        listen: bool = False,
    ):
        """``listen``: decode the stream's sound too (when its config says ``audio: auto``)."""
        super().__init__(config.id)
        self.config = config
        self.status = SourceStatus.CONNECTING
        self.last_error: str | None = None
        self.counters = counters or SourceCounters()
        self._on_status = on_status
        self._stop = threading.Event()
        self._queue: DropOldestQueue[Frame] | None = None
        self.listening = listen and config.audio == "auto"
        self._audio: DropOldestQueue[AudioChunk] | None = None
        self._handoff: LoopHandoff | None = None
        self._thread: threading.Thread | None = None
        self._last_frame = time.monotonic()
        self._seq = 0  # the next frame's number, kept across reconnects (written by the decode thread)
        self._backoff = Backoff(config.retry_initial_s, config.retry_max_s)
        self._live = config.live  # re-deriving it means parsing the URL: not per frame

    # ---- lifecycle ------------------------------------------------------------------------------
    async def _open(self) -> None:
        self._handoff = LoopHandoff.here()
        self._queue = DropOldestQueue(self.config.queue_size, on_drop=self._dropped)
        if self.listening:
            self._audio = DropOldestQueue(AUDIO_QUEUE, on_drop=self._audio_dropped)
        self._thread = threading.Thread(target=self._run, name=f"dfstream[{self.config.id}].decode", daemon=True)
        self._thread.start()
        self.spawn("watchdog", self._watch)

    async def _close(self) -> None:
        self.request_stop()
        if self._thread is not None:
            # a read blocked on a hung server returns at its timeout; the daemon thread is not awaited longer
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 1.0)
        self._set_status(SourceStatus.OFFLINE, self.last_error)

    def request_stop(self) -> None:
        """Stop decoding; frames already queued are still delivered, then iteration ends."""
        self._stop.set()
        self._close_queues()

    async def __aiter__(self) -> AsyncIterator[Frame]:
        if self._queue is None:
            raise LifecycleError(f"source {self.config.id}: use `async with Source(...)` first")
        async for frame in self._queue:
            yield frame

    # ---- the decode thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._run_until_stopped()
        finally:  # whatever happened, the consumer must learn that no more frames will come
            assert self._handoff is not None
            self._handoff.call(self._close_queues)

    def _run_until_stopped(self) -> None:
        cfg = self.config
        while not self._stop.is_set():
            delivered_before = self._seq
            try:
                self._decode_once()
                reason = "stream ended"
                if self._seq == delivered_before and not self._stop.is_set():
                    # a container whose index or payload is damaged can end without one frame and
                    # without an exception: that is a failure, not an empty success
                    raise SourceDecodeError(f"{redact(cfg.url)}: no video frame could be decoded")
            except (av.error.FFmpegError, OSError, SourceError) as exc:
                reason = _one_line(exc)
                self.counters.count(SourceCount.ERRORS)
            except Exception as exc:  # noqa: BLE001  a damaged input can trip PyAV itself; one stream, not the process
                reason = f"unexpected {_one_line(exc)}"
                self.counters.count(SourceCount.ERRORS)
            if self._stop.is_set():
                break
            if cfg.kind in ("file", "sample"):
                if cfg.loop and self._seq > delivered_before:
                    continue
                if reason != "stream ended":
                    self.last_error = reason
                    log.error("%s: %s", cfg.id, reason)
                break
            if self._seq > delivered_before:
                self._backoff.reset()
            self._reconnect_after(reason)

    def _reconnect_after(self, reason: str) -> None:
        cfg = self.config
        self.problems("reconnect", "%s: %s; reconnecting with backoff (up to %ss)", cfg.id, reason, cfg.retry_max_s)
        self.last_error = reason
        self.counters.count(SourceCount.RECONNECTS)
        assert self._handoff is not None
        self._handoff.call(self._set_status, SourceStatus.RECONNECTING, reason)
        self._stop.wait(self._backoff.next())

    def _decode_once(self) -> None:
        """Open and decode until the end, an error or stop; frames are numbered on from self._seq."""
        cfg = self.config
        kind = cfg.kind
        if kind == "sample":
            target: str = str(sample_clip_path())
        elif kind == "file":
            target = str(file_path(cfg.url))
        else:
            target = cfg.url
        fmt, options = open_options(kind, cfg.transport, cfg.options)
        if kind == "screen":
            target, fmt, grab = screen_input(cfg.url, av.formats_available)
            options = {**grab, **cfg.options}
        network = kind in ("rtsp", "rtmp", "http")
        timeout = (cfg.open_timeout_s, cfg.stall_timeout_s / 2) if network else None
        with self._open_container(target, fmt, options, timeout) as container:
            if not container.streams.video:
                raise SourceOpenError(f"{redact(cfg.url)}: no video stream")
            video = container.streams.video[0]
            sound = container.streams.audio[0] if self.listening and container.streams.audio else None
            decoder = None if sound is None else AudioDecoder(cfg.id, self._audio_error)
            rate = video.average_rate or video.guessed_rate
            if rate:
                self.counters.expected_fps(min(float(rate), cfg.fps or float(rate)))
            anchor: tuple[float, float] | None = None  # (first pts, monotonic time) for realtime pacing
            last_kept: float | None = None
            for packet in container.demux(video, sound) if sound is not None else container.demux(video):
                if self._stop.is_set():
                    break
                if decoder is not None and packet.stream is sound:
                    chunks = decoder.decode(packet) + ([] if packet.size else decoder.flush())
                    if not all(self._deliver_sound(chunk) for chunk in chunks):
                        return
                    continue
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    self.counters.count(SourceCount.DECODE_ERRORS)  # a corrupt packet costs its frames, not the stream
                    continue
                for av_frame in frames:
                    pts = float(av_frame.pts * av_frame.time_base) if av_frame.pts is not None else None
                    self.counters.count(SourceCount.FRAMES_DECODED)
                    if kind in ("file", "sample") and cfg.pace == "realtime" and pts is not None:
                        anchor = anchor or (pts, time.monotonic())
                        wait = anchor[1] + (pts - anchor[0]) - time.monotonic()
                        if wait > 0 and self._stop.wait(wait):
                            return
                    now = time.monotonic()
                    clock = pts if pts is not None and not network else now
                    if cfg.fps is not None and last_kept is not None and clock - last_kept < 0.95 / cfg.fps:
                        self.counters.count(SourceCount.DROPPED_FPS_CAP)
                        continue
                    last_kept = clock
                    if self._thinned():
                        self._seq += 1
                        continue
                    frame = Frame(cfg.id, self._seq, pts, time.time(), now, av_frame.to_ndarray(format="rgb24"))
                    self._seq += 1
                    if not self._deliver(frame):
                        return

    def _audio_error(self) -> None:
        self.counters.count(SourceCount.AUDIO_DECODE_ERRORS)

    def _deliver_sound(self, chunk: AudioChunk) -> bool:
        """As ``_deliver`` does with frames; False when the source is stopping."""
        assert self._handoff is not None and self._audio is not None
        self.counters.count(SourceCount.AUDIO_CHUNKS)
        if self._live:
            return self._handoff.call(self._audio.put, chunk)
        try:
            self._handoff.wait(self._audio.put_wait(chunk), self._stop)
        except Stopped:
            return False
        return True

    def _open_container(self, target: str, fmt: str | None, options: dict, timeout: tuple[float, float] | None):
        started = time.monotonic()
        try:
            return av.open(target, format=fmt, options=options, timeout=timeout)
        except av.error.FFmpegError as exc:
            if fmt in GRABBERS.values():  # FFmpeg says only "Input/output error"
                raise SourceOpenError(
                    f"{self.config.url}: {fmt} cannot open {target!r} ({one_line(exc)}): is the display running, "
                    "and may this user reach it (XAUTHORITY)?"
                ) from None
            # a server that accepts and never answers makes FFmpeg blame the data ("Invalid data
            # found"); the one fact worth telling is that nothing came back in time
            if timeout is not None and time.monotonic() - started >= 0.9 * timeout[0]:
                raise SourceTimeoutError(
                    f"{redact(self.config.url)}: no answer within {timeout[0]:g}s (open_timeout_s)"
                ) from exc
            raise

    def _deliver(self, frame: Frame) -> bool:
        """Live: offered, the oldest queued frame dropped if need be. Read asap: waits for room.
        False when the source is stopping."""
        assert self._handoff is not None
        if self._live:
            return self._handoff.call(self._offer, frame)
        try:
            self._handoff.wait(self._put_and_mark(frame), self._stop)
        except Stopped:
            return False
        return True

    async def _put_and_mark(self, frame: Frame) -> None:
        assert self._queue is not None
        await self._queue.put_wait(frame)
        self._mark_frame()

    # ---- on the event loop ---------------------------------------------------------------------
    def _offer(self, frame: Frame) -> None:
        assert self._queue is not None
        self._queue.put(frame)
        self._mark_frame()

    def _mark_frame(self) -> None:
        self._last_frame = time.monotonic()
        if self.status is not SourceStatus.ONLINE:
            self.problems.clear("reconnect")
            if self.last_error:
                log.info("%s: online again", self.config.id)
            self.last_error = None
            self._set_status(SourceStatus.ONLINE, None)

    async def _watch(self) -> None:
        stall = self.config.stall_timeout_s
        while True:
            await asyncio.sleep(min(0.5, stall / 4))
            if self.status is SourceStatus.ONLINE and time.monotonic() - self._last_frame > stall:
                self.counters.count(SourceCount.STALLS)
                self._set_status(SourceStatus.RECONNECTING, f"no frame for {stall:g}s")


def _one_line(exc: BaseException) -> str:
    return redact(one_line(exc, with_type=True))  # FFmpeg's messages quote the URL, credentials included
