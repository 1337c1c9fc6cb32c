"""The unit that travels from a source into the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture.

    ``seq`` numbers the stream's frames from 0 (on across reconnects); a gap is frames dropped on
    the way (a full queue, shed under overload), each counted. ``pts`` is the presentation time in
    seconds on the stream's clock (None when the container gives none, as the first RTSP frame
    does); ``arrival_ts`` (wall clock) and ``arrival_mono`` (monotonic) are stamped once, at
    decode, and every later latency is measured from them.
    """

    stream_id: str
    seq: int
    pts: float | None
    arrival_ts: float
    arrival_mono: float
    image: np.ndarray  # HxWx3 uint8 RGB

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise InputError(f"Frame image must be HxWx3 uint8 RGB, got {self.image.shape} {self.image.dtype}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
