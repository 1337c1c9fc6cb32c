"""A stream's sound, decoded beside its pictures: the source's demuxer hands audio packets here, in
the decode thread, and they leave as ``AudioChunk``s of 16 kHz mono float32 (the voice models'
input), resampled by libswresample (PyAV's ``AudioResampler``).

Times stay on the stream's clock: a chunk's ``pts`` is the presentation time of its first sample
in the same seconds as a video frame's ``pts``, so a voice verdict and a face verdict about the
same moment carry comparable times. The resampler's output is counted in samples from an anchor
(the first decoded frame's pts): the clock advances with the sound itself, and a jump in the
input's pts (lost packets, a server that restarted its clock) re-anchors it and marks the chunk
``gap`` so whoever listens does not join sound across the hole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

RATE = 16_000
CHUNK_SAMPLES = 1_600  # 0.1 s: the unit handed to the event loop (a handoff per AAC frame would be ~47 a second)
JUMP_S = 0.25  # an input pts this far from where the counted samples put it is a discontinuity


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """Consecutive 16 kHz mono samples of one stream.

    ``pts``: the first sample's time on the stream clock (None when the container gives none);
    ``arrival_ts`` / ``arrival_mono``: when the chunk was complete (wall clock / monotonic);
    ``gap``: the sound before this chunk is not continuous with it (a reconnect, lost packets)."""

    stream_id: str
    pts: float | None
    arrival_ts: float
    arrival_mono: float
    samples: np.ndarray  # float32, 1-D
    gap: bool = False

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


class AudioDecoder:
    """One connection's audio: ``decode(packet)`` (or ``add(frames)``) returns the chunks completed. A packet
    that fails to decode costs its samples (counted by ``on_error``), not the stream."""

    def __init__(self, stream_id: str, on_error: Callable[[], None]):
        self.stream_id = stream_id
        self._on_error = on_error
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._anchor: float | None = None  # the stream time of sample 0 of the counted samples
        self._counted = 0  # samples produced since the anchor
        self._gap = True  # the first chunk of a connection follows a gap

    def decode(self, packet: av.Packet) -> list[AudioChunk]:
        try:
            frames = packet.decode()
        except (av.error.FFmpegError, ValueError):
            self._on_error()
            return []
        return self.add(frames)

    def add(self, frames: list[av.AudioFrame]) -> list[AudioChunk]:
        """Decoded frames (a WebRTC track's) in; the chunks they completed out."""
        chunks: list[AudioChunk] = []
        for frame in frames:
            self._follow_clock(frame)
            try:
                resampled = self._resampler.resample(frame)
            except (av.error.FFmpegError, ValueError):  # a frame whose layout changed mid-stream, a bad frame
                self._on_error()
                self._resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
                continue
            for out in resampled:
                self._add(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
            chunks.extend(self._take(CHUNK_SAMPLES))
        return chunks

    def flush(self) -> list[AudioChunk]:
        """What is left at the end of the stream, as a last (short) chunk."""
        try:
            for out in self._resampler.resample(None):
                self._add(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        except (av.error.FFmpegError, ValueError):
            pass
        return self._take(1)

    def _follow_clock(self, frame: av.AudioFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        pts = float(frame.pts * frame.time_base)
        expected = None if self._anchor is None else self._anchor + (self._counted + self._pending_samples) / RATE
        if expected is None or abs(pts - expected) > JUMP_S:
            if expected is not None:
                self._pending, self._pending_samples, self._gap = [], 0, True  # do not join sound across the jump
            self._anchor, self._counted = pts, 0

    def _add(self, samples: np.ndarray) -> None:
        if len(samples):
            self._pending.append(samples)
            self._pending_samples += len(samples)

    def _take(self, minimum: int) -> list[AudioChunk]:
        if self._pending_samples < minimum or not self._pending:
            return []
        samples = np.concatenate(self._pending)
        self._pending, self._pending_samples = [], 0
        pts = None if self._anchor is None else self._anchor + self._counted / RATE
        self._counted += len(samples)
        chunk = AudioChunk(self.stream_id, pts, time.time(), time.monotonic(), samples, self._gap)
        self._gap = False
        return [chunk]
