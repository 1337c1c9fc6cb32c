"""What a video is before it is judged: container, codec, size, rate, duration and frame count,
read by opening it with PyAV and decoding its first frame (a header can lie; a decoded frame cannot)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av

from core.errors import SourceDecodeError, SourceOpenError, one_line
from core.redaction import redact


@dataclass(frozen=True)
class Probe:
    container: str  # FFmpeg's demuxer name
    codec: str
    width: int
    height: int
    fps: Fraction  # the stream's average (or guessed) rate; 30 when it says none
    duration_s: float | None
    frames: int | None  # as the container says, or derived from duration x rate; None when neither says
    sample_rate: int | None = None  # of the first audio stream; None without one


def probe(target: str, timeout_s: float = 10.0, options: dict[str, str] | None = None) -> Probe:
    """``target`` (a path or URL) probed; SourceOpenError or SourceDecodeError naming it otherwise.
    ``options`` go to FFmpeg's open (an upload's protocol and demuxer whitelists)."""
    try:
        with av.open(target, timeout=timeout_s, options=options or {}) as container:
            if not container.streams.video:
                raise SourceOpenError(f"{redact(target)}: no video stream in it")
            video = container.streams.video[0]
            for frame in container.decode(video):
                width, height = frame.width, frame.height
                break
            else:
                raise SourceDecodeError(f"{redact(target)}: no frame of it decodes")
            rate = Fraction(video.average_rate or video.guessed_rate or 30).limit_denominator(1001)
            duration = container.duration / av.time_base if container.duration else None
            if duration is None and video.duration and video.time_base:
                duration = float(video.duration * video.time_base)
            frames = video.frames or (round(duration * rate) if duration else None)
            audio = container.streams.audio[0].sample_rate if container.streams.audio else None
            return Probe(container.format.name, video.codec_context.name, width, height, rate, duration, frames, audio)
    except av.error.FFmpegError as exc:
        raise SourceOpenError(f"{redact(target)}: cannot be read: {one_line(exc)}") from None
