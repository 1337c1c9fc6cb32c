"""``dfstream annotate INPUT --out OUT.mp4``: a file or URL in, the same video out with every face's
box, track id, label and smoothed P(fake) drawn, and the verdict timeline along the bottom; judged
by the streaming runtime itself (faces, tracking, the ensemble, smoothing), not by a copy of it.

The runtime hands every judged frame, in order, to an encoder thread through a small blocking
queue: annotate judges no faster than it writes, and no frame is skipped. Audio is not copied."""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from dfstream.config import DfstreamConfig
from pipeline.errors import ConfigError, one_line
from pipeline.models.detector import BaseDetector
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.drawing import Timeline, draw
from pipeline.runtime.live import Shot
from pipeline.runtime.runtime import Runtime
from sinks.video import H264Writer

STREAM = "input"


@dataclass(frozen=True)
class Probe:
    width: int
    height: int
    fps: Fraction
    duration_s: float | None
    frames: int | None


def probe(source: str) -> Probe:
    """What the encoder needs to know of the input before the first frame."""
    try:
        with av.open(source, timeout=10) as container:
            if not container.streams.video:
                raise ConfigError(f"{source}: no video stream in it")
            video = container.streams.video[0]
            rate = video.average_rate or video.guessed_rate or Fraction(30)
            duration = container.duration / av.time_base if container.duration else None
            frames = video.frames or (round(duration * rate) if duration else None)
            return Probe(video.codec_context.width, video.codec_context.height, Fraction(rate).limit_denominator(1001), duration, frames)
    except av.error.FFmpegError as exc:
        raise ConfigError(f"{source}: cannot be read: {one_line(exc)}") from None


class _Writer(threading.Thread):
    def __init__(self, out: Path, found: Probe, progress: Callable[[int], None] | None):
        super().__init__(name="dfstream.annotate", daemon=True)
        self.out, self.found, self.progress = out, found, progress
        self.shots: queue.Queue[Shot | None] = queue.Queue(maxsize=16)
        self.written = 0
        self.error: BaseException | None = None
        self.timeline = Timeline(found.duration_s, found.width) if found.duration_s else None

    def run(self) -> None:
        partial = self.out.with_name(f".{self.out.name}.part")
        try:
            found = self.found
            with H264Writer(str(partial), _format(self.out), found.width, found.height, found.fps, {"preset": "veryfast", "crf": "21"}) as out:
                first_pts = None
                while (shot := self.shots.get()) is not None:
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
            while self.shots.get() is not None:  # let the runtime finish instead of blocking on a full queue
                pass


def _format(out: Path) -> str | None:
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}.get(out.suffix.lower())


def annotate(config: DfstreamConfig, detectors: dict[str, BaseDetector], source: str, out: Path,
             progress: Callable[[int], None] | None = None) -> dict:  # fmt: skip
    """Judge ``source`` and write ``out``; returns what was done (frames, seconds, fps)."""
    found = probe(source)
    if _format(out) is None:
        raise ConfigError(f"--out {out}: the name must end in .mp4, .mov, .mkv or .ts")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out, found, progress)
    monitor = PerformanceMonitor(config.monitoring)
    started = time.perf_counter()

    async def judge() -> None:
        runtime = Runtime(config, detectors, [], monitor)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a live input ends when asked; what was written is kept
            loop.add_signal_handler(sig, runtime.stop.set)
        with runtime.tap.follow(STREAM, writer.shots.put):
            await runtime.run()

    writer.start()
    try:
        asyncio.run(judge())
    finally:
        writer.shots.put(None)
        writer.join()
    if writer.error is not None:
        raise ConfigError(f"--out {out}: writing failed: {one_line(writer.error)}")
    elapsed = time.perf_counter() - started
    return {"frames": writer.written, "seconds": elapsed, "fps": writer.written / elapsed if elapsed else 0.0}
