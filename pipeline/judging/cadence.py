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

from core.strict import StrictModel
from pipeline.models.detections import iou_matrix


class JudgeConfig(StrictModel):
    # measured on synthetic episodes (python -m bench.judging): at 10 Hz a fake episode is labelled
    # fake 55-155 ms later on average than when every frame is scored (p95 0.6-0.8 s, the noisier the
    # scores the later), for a third of the detector work; 5 Hz costs 250-375 ms
    max_rate_hz: float | None = Field(10.0, gt=0.0)
    rejudge_iou: float = Field(
        0.6, ge=0.0, le=1.0
    )  # a box overlapping its last scored box less than this is scored now


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
