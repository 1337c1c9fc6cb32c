"""Annotated video out, for broadcast monitoring: each stream's judged frames, drawn as the live
view draws them, re-encoded with PyAV (H.264) and pushed to a server the user runs (RTSP to
MediaMTX, RTMP to nginx-rtmp, MPEG-TS over TCP or UDP) or written to a file.

Frames come from the runtime's live tap, every judged frame in order; each output has its own
thread and a bounded queue: when the encoder or the network falls behind, the oldest frame is
dropped and counted, and detection never waits. A server that goes away is reconnected to with
the shared backoff, as sources are."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import ExitStack
from fractions import Fraction

import av
import numpy as np
from pydantic import Field, field_validator

from core.backoff import Backoff
from core.errors import ConfigError, one_line
from core.handoff import LoopHandoff, Stopped
from core.lifecycle import Lifecycle
from core.queues import DropOldestQueue, QueueClosed
from core.ratelog import RateLimitedLog
from core.redaction import redact
from core.strict import StrictModel
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.drawing import draw
from pipeline.runtime.events import Event
from pipeline.runtime.live import LiveTap, Shot

log = logging.getLogger(__name__)
VIDEO = Subject.sink("video")
_FORMATS = {
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "rtmp": "flv",
    "rtmps": "flv",
    "tcp": "mpegts",
    "udp": "mpegts",
    "srt": "mpegts",
}
_FILES = {".mp4": "mp4", ".mkv": "matroska", ".ts": "mpegts", ".mov": "mov", ".flv": "flv"}


class VideoConfig(StrictModel):
    # {stream} becomes the stream's id: rtsp://127.0.0.1:8554/annotated/{stream}, rtmp://host/live/{stream},
    # tcp://host:9000 (MPEG-TS), or a file: recordings/{stream}.mp4
    url: str
    streams: list[str] = Field(default_factory=list)  # none: every stream
    fps: float = Field(15.0, gt=0, le=60)  # frames beyond it are not sent (the output's rate)
    width: int | None = Field(None, ge=64)  # scaled down to this width
    bitrate_kbps: int = Field(2000, ge=100)
    queue: int = Field(30, ge=1)  # frames waiting for the encoder; beyond it the oldest is dropped
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _known_output(cls, value: str) -> str:
        output_format(value)
        return value


def output_format(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _FORMATS:
        return _FORMATS[scheme]
    for suffix, name in _FILES.items():
        if url.lower().endswith(suffix):
            return name
    raise ConfigError(f"{url!r}: use rtsp://, rtmp://, tcp://, udp://, srt:// or a file ending in {', '.join(_FILES)}")


class H264Writer:
    """One H.264 video into a container (a file or a server): BGR frames in, at a constant rate.
    yuv420p halves both sides, so an odd width or height loses its last column or row."""

    def __init__(
        self,
        target: str,
        format: str | None,
        width: int,
        height: int,
        rate: Fraction,
        options: dict[str, str],
        open_options: dict[str, str] | None = None,
        bit_rate: int | None = None,
    ):
        self.width, self.height, self.rate = width - width % 2, height - height % 2, rate
        self.container = av.open(target, "w", format=format, options=open_options or {}, timeout=10)
        try:
            self.video = self.container.add_stream("libx264", rate=rate)
            self.video.width, self.video.height, self.video.pix_fmt = self.width, self.height, "yuv420p"
            if bit_rate is not None:
                self.video.bit_rate = bit_rate
            self.video.options = options
        except BaseException:
            self.container.close()
            raise
        self.written = 0

    def write(self, bgr: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr[: self.height, : self.width]), format="bgr24")
        frame.pts, frame.time_base = self.written, 1 / self.rate
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.written += 1

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            if kind is None:  # flush the encoder only when the writing went well
                for packet in self.video.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()


class VideoSink(Lifecycle):
    """A Sink for its lifecycle (events themselves it leaves to the others); its frames come from the tap."""

    def __init__(self, config: VideoConfig, monitor: PerformanceMonitor, tap: LiveTap, streams: list[str]):
        super().__init__("video")
        self.config = config
        output_format(config.url)  # a wrong URL is a config error, before anything runs
        wanted = config.streams or streams
        self.outputs = {
            s: _Output(s, config.url.replace("{stream}", s), config, monitor) for s in wanted if s in streams
        }
        self.tap = tap
        self._follows = ExitStack()

    async def _open(self) -> None:
        handoff = LoopHandoff.here()
        for stream, output in self.outputs.items():
            output.handoff = handoff
            output.start()
            self._follows.enter_context(self.tap.follow(stream, output.offer))

    async def publish(self, event: Event) -> None:
        pass

    async def _close(self) -> None:
        self._follows.close()
        for output in self.outputs.values():
            output.finish()
        await asyncio.to_thread(lambda: [output.join(10) for output in self.outputs.values()])
        for output in self.outputs.values():
            output.abandon.set()  # one still encoding after 10 s stops waiting for frames


class _Output(threading.Thread):
    def __init__(self, stream: str, url: str, config: VideoConfig, monitor: PerformanceMonitor):
        super().__init__(name=f"dfstream[video.{stream}].encode", daemon=True)
        self.stream, self.url, self.config, self.monitor = stream, url, config, monitor
        self.format = output_format(url)
        self.frames: DropOldestQueue[Shot] = DropOldestQueue(config.queue, on_drop=self._dropped)
        self.handoff: LoopHandoff | None = None  # set on the loop before the thread starts
        self.abandon = threading.Event()  # stop waiting for frames, even queued ones
        self._last_offer = float("-inf")
        self._stopping = threading.Event()  # no reconnect after the sink finished
        self._problems = RateLimitedLog(log, logging.ERROR)

    async def offer(self, shot: Shot) -> None:
        """On the event loop: keep at most ``fps`` frames a second, never wait for the encoder."""
        if shot.arrival_mono - self._last_offer < 1.0 / self.config.fps * 0.999:
            return
        self._last_offer = shot.arrival_mono
        self.frames.put(shot)

    def _dropped(self, shot: Shot, reason: str) -> None:
        self.monitor.count(VIDEO, Count.FRAMES_DROPPED, reason=reason, stream=self.stream)

    def finish(self) -> None:
        """On the event loop: what is queued is still written, then the output closes."""
        self._stopping.set()
        self.frames.close()

    def run(self) -> None:
        backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s)
        self.monitor.set_gauge(VIDEO, Gauge.OUTPUT_UP, 0, stream=self.stream)
        while not self._stopping.is_set():
            try:
                self._send(backoff)
                return  # finished
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                self.monitor.count(VIDEO, Count.OUTPUT_ERRORS, stream=self.stream)
                delay = backoff.next()
                self._problems(
                    "output",
                    "video %s: %s failed, retrying in %.1f s: %s",
                    self.stream,
                    redact(self.url),
                    delay,
                    one_line(exc),
                )
            self.monitor.set_gauge(VIDEO, Gauge.OUTPUT_UP, 0, stream=self.stream)
            if self._stopping.wait(delay):
                return

    def _send(self, backoff: Backoff) -> None:
        """Open the output and send until the sink finishes; raises when the output fails."""
        shot = self._next()
        if shot is None:
            return
        canvas = draw(shot.image, shot.faces, self.config.width)  # the first frame also sizes the output
        rate = Fraction(self.config.fps).limit_denominator(1001)
        options = {"preset": "veryfast", "tune": "zerolatency", "g": str(max(1, round(self.config.fps)))}
        with H264Writer(
            self.url,
            self.format,
            canvas.shape[1],
            canvas.shape[0],
            rate,
            options,
            {"rtsp_transport": "tcp"} if self.format == "rtsp" else None,
            self.config.bitrate_kbps * 1000,
        ) as out:
            self.monitor.set_gauge(VIDEO, Gauge.OUTPUT_UP, 1, stream=self.stream)
            self._problems.clear("output")
            backoff.reset()
            log.info("video %s: sending to %s", self.stream, redact(self.url))
            while True:
                out.write(canvas)
                self.monitor.count(VIDEO, Count.FRAMES_WRITTEN, stream=self.stream)
                shot = self._next()
                if shot is None:
                    return
                canvas = draw(shot.image, shot.faces, self.config.width)

    def _next(self) -> Shot | None:
        """The next frame, or None once the sink finished and what was queued is written."""
        assert self.handoff is not None
        try:
            return self.handoff.wait(self.frames.get(), self.abandon)
        except (QueueClosed, Stopped):
            return None
