"""When a tracked face is scored again: at most ``max_rate_hz`` times a second per track.

A tracked face changes little from one frame to the next, so scoring it on every frame mostly
repeats work. A track is scored when it is new, when its box has moved or grown so that it overlaps
the box last scored less than ``rejudge_iou``, or when ``1 / max_rate_hz`` seconds have passed since
its last score. In between, its verdicts carry the last score (``scored: false``). ``max_rate_hz:
null`` scores every face on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from pipeline.models.detections import iou_matrix
from stream.config import StrictModel


class JudgeConfig(StrictModel):
    # measured (bench.judging): at 10 Hz a fake episode is labelled fake within one 30 fps frame of
    # scoring every frame, for a third of the detector work
    max_rate_hz: float | None = Field(10.0, gt=0.0)
    rejudge_iou: float = Field(0.6, ge=0.0, le=1.0)  # a box overlapping its last scored box less than this is scored now


@dataclass
class Scored:
    """A track's last score: when (stream time), where."""

    t: float
    box: np.ndarray


class Cadence:
    def __init__(self, config: JudgeConfig):
        self.interval = 0.0 if config.max_rate_hz is None else 1.0 / config.max_rate_hz
        self.rejudge_iou = config.rejudge_iou
        # a frame's time is rounded to its stream clock; without slack a 30 fps stream scored at
        # 10 Hz would wait 4 frames when 3 are 99.9 % of the interval
        self.slack = 0.005

    def due(self, last: Scored | None, box: np.ndarray, t: float) -> bool:
        if last is None or self.interval == 0.0:
            return True
        if t - last.t >= self.interval - self.slack:
            return True
        return float(iou_matrix(last.box[None], box[None])[0, 0]) < self.rejudge_iou
