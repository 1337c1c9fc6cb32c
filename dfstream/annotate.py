"""``dfstream annotate INPUT --out OUT.mp4``: a file or URL in, the same video out with every face's
box, track id, label and smoothed P(fake) drawn, and the verdict timeline along the bottom; judged
by the streaming runtime itself (faces, tracking, the ensemble, smoothing), not by a copy of it.

The runtime hands every judged frame, in order, to an encoder thread through a small queue it
waits on when full (the tap's backpressure): annotate judges no faster than it writes, and no
frame is skipped. Audio is not copied."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import ConfigError, SourceError, one_line
from core.handoff import LoopHandoff, Stopped
from core.queues import DropOldestQueue, QueueClosed
from dfstream.config import DfstreamConfig
from pipeline.models.detector import BaseDetector
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.drawing import Timeline, draw
from pipeline.runtime.live import Shot
from pipeline.runtime.runtime import Runtime
from sinks.video import H264Writer
from stream.probe import Probe, probe

STREAM = "input"


def probe_input(source: str) -> Probe:
    """What the encoder needs to know of the input before the first frame."""
    try:
        return probe(source)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None


class _Writer(threading.Thread):
    def __init__(self, out: Path, found: Probe, handoff: LoopHandoff, progress: Callable[[int], None] | None):
        super().__init__(name="dfstream[annotate].encode", daemon=True)
        self.out, self.found, self.handoff, self.progress = out, found, handoff, progress
        self.shots: DropOldestQueue[Shot] = DropOldestQueue(16)
        self.written = 0
        self.error: BaseException | None = None
        self.timeline = Timeline(found.duration_s, found.width) if found.duration_s else None
        self._never = threading.Event()  # every queued shot is written: the queue's end alone stops it

    async def receive(self, shot: Shot) -> None:
        """The tap's follower: waits while the encoder is 16 frames behind."""
        await self.shots.put_wait(shot)

    def run(self) -> None:
        partial = self.out.with_name(f".{self.out.name}.part")
        try:
            found = self.found
            with H264Writer(
                str(partial),
                _format(self.out),
                found.width,
                found.height,
                found.fps,
                {"preset": "veryfast", "crf": "21"},
            ) as out:
                first_pts = None
                while (shot := self._next()) is not None:
                    canvas = draw(shot.image, shot.faces)
                    if self.timeline is not None:
                        if first_pts is None:
                            first_pts = shot.pts or 0.0
                        self.timeline.draw(canvas, self.timeline.mark((shot.pts or 0.0) - first_pts, shot.faces))
                    out.write(canvas)
                    self.written = out.written
                    if self.progress is not None:
                        self.progress(1)
            partial.replace(self.out)
        except BaseException as exc:  # noqa: BLE001 -- reported by annotate() on the main thread
            self.error = exc
            partial.unlink(missing_ok=True)
            self.handoff.call(self.shots.close)  # the runtime's next frames are dropped instead of waiting forever

    def _next(self) -> Shot | None:
        try:
            return self.handoff.wait(self.shots.get(), self._never)
        except (QueueClosed, Stopped):
            return None


def _format(out: Path) -> str | None:
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}.get(out.suffix.lower())


def annotate(
    config: DfstreamConfig,
    detectors: dict[str, BaseDetector],
    source: str,
    out: Path,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Judge ``source`` and write ``out``; returns what was done (frames, seconds, fps)."""
    found = probe_input(source)
    if _format(out) is None:
        raise ConfigError(f"--out {out}: the name must end in .mp4, .mov, .mkv or .ts")
    out.parent.mkdir(parents=True, exist_ok=True)
    monitor = PerformanceMonitor(config.monitoring)
    started = time.perf_counter()

    async def judge() -> _Writer:
        runtime = Runtime(config, detectors, [], monitor)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a live input ends when asked; what was written is kept
            loop.add_signal_handler(sig, runtime.stop.set)
        writer = _Writer(out, found, LoopHandoff.here(), progress)
        writer.start()
        try:
            with runtime.tap.follow(STREAM, writer.receive):
                await runtime.run()
        finally:
            writer.shots.close()  # what is queued is still written
            await asyncio.to_thread(writer.join)
        return writer

    writer = asyncio.run(judge())
    if writer.error is not None:
        raise ConfigError(f"--out {out}: writing failed: {one_line(writer.error)}")
    elapsed = time.perf_counter() - started
    return {"frames": writer.written, "seconds": elapsed, "fps": writer.written / elapsed if elapsed else 0.0}
