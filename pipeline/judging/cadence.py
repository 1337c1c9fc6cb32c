"""When a tracked face is scored again: judge what is suspicious, skim what is not.

A tracked face changes little from one frame to the next, so scoring it on every frame mostly
repeats work. A track is scored when it is new, when its box has moved or grown so that it overlaps
the box last scored less than ``rejudge_iou``, or when its interval has passed since its last
score: ``1 / max_rate_hz``, or ``1 / min_rate_hz`` once it has been *calm* for ``calm_after_s``
(as the smoother says: labelled real with its smoothed P(fake) at or below the smoothing's
``leave``, where a fake label would be dropped anyway; with ``cusum``, its evidence at most a
quarter of the alarm's). A new track and a moved box are scored at once, whatever the rate; a
score above ``leave`` or another label puts the track back at the full rate at once (a face that
moves is not suspicious by moving: its score decides). In between, its verdicts carry the last score (``scored:
false``) and say the rate the track is judged at (``judge_rate_hz``). ``max_rate_hz: null``
scores every face on every frame; ``min_rate_hz: null`` never skims.

Under overload (``pipeline.runtime.overload``) the runtime lowers the full rate toward a floor
(``shed``): the calm rate stays (a floor already), a moved box waits a share of the lowered
interval, a new track is still scored at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

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
    # a calm track's rate. python -m bench.judging: a real face for a minute costs 0.12 of the
    # detector work of every frame against 0.33 at 10 Hz alone, and an onset is labelled 36-87 ms
    # later on average than at 10 Hz alone (3 Hz: 0.16, about no delay; both after 1 s calm)
    min_rate_hz: float | None = Field(2.0, gt=0.0)
    calm_after_s: float = Field(1.0, ge=0.0)  # calm this long before it is skimmed

    @model_validator(mode="after")
    def _floor_below_rate(self) -> JudgeConfig:
        if self.min_rate_hz is not None and self.max_rate_hz is not None and self.min_rate_hz > self.max_rate_hz:
            raise ValueError(
                f"min_rate_hz ({self.min_rate_hz}) must be <= max_rate_hz ({self.max_rate_hz}): "
                "it is the rate of a calm track"
            )
        return self


class Due(str, enum.Enum):
    """Why a track is scored on this frame."""

    NEW = "new"
    TIME = "time"
    MOVED = "moved"


@dataclass
class Scored:
    """A track's last score: when (stream time), where, and since when it has been calm (None: it is not)."""

    t: float
    box: np.ndarray
    calm_since: float | None = None


class Cadence:
    def __init__(self, config: JudgeConfig):
        self.interval = 0.0 if config.max_rate_hz is None else 1.0 / config.max_rate_hz
        # with every frame scored (max_rate_hz null) nothing is skimmed: that is what null asks for
        skim = config.min_rate_hz is not None and config.max_rate_hz is not None
        self.calm_interval = 1.0 / config.min_rate_hz if skim else self.interval
        self.max_rate_hz, self.min_rate_hz = config.max_rate_hz, config.min_rate_hz if skim else config.max_rate_hz
        self.calm_after_s = config.calm_after_s
        self.rejudge_iou = config.rejudge_iou
        # a frame's time is rounded to its stream clock; without slack a 30 fps stream scored at
        # 10 Hz would wait 4 frames when 3 are 99.9 % of the interval
        self.slack = 0.005
        self.full_hz, self.full_interval, self.moved_gap = self.max_rate_hz, self.interval, 0.0

    def shed(self, full_hz: float | None, share: float) -> None:
        """Judge tracks at the full rate at ``full_hz`` now (overload), and wait ``share`` (0-1) of
        that interval before a moved box is scored again. ``full_hz`` None: the configured rate."""
        if self.max_rate_hz is None:
            return  # every frame scored: that is what max_rate_hz null asks for, loaded or not
        self.full_hz = self.max_rate_hz if full_hz is None else full_hz
        self.full_interval = 1.0 / self.full_hz
        self.moved_gap = self.full_interval * share

    def skimmed(self, last: Scored, t: float) -> bool:
        return last.calm_since is not None and t - last.calm_since >= self.calm_after_s

    def due(self, last: Scored | None, box: np.ndarray, t: float) -> Due | None:
        if last is None:
            return Due.NEW
        if self.interval == 0.0:
            return Due.TIME
        since = t - last.t
        if since >= self._interval(last, t) - self.slack:
            return Due.TIME
        if since < self.moved_gap:
            return None
        return Due.MOVED if float(iou_matrix(last.box[None], box[None])[0, 0]) < self.rejudge_iou else None

    def _interval(self, last: Scored, t: float) -> float:
        return max(self.calm_interval, self.full_interval) if self.skimmed(last, t) else self.full_interval

    def scored(self, last: Scored | None, box: np.ndarray, t: float, calm: bool) -> Scored:
        """The track's state after a score: calm (the smoother's word: real and far from fake) goes
        on, begins, or ends."""
        since = (last.calm_since if last is not None and last.calm_since is not None else t) if calm else None
        return Scored(t, box.copy(), since)

    def rate_hz(self, scored: Scored, t: float) -> float | None:
        """The rate the track is judged at now (None: every frame)."""
        if self.full_hz is None:
            return None
        if self.skimmed(scored, t) and self.min_rate_hz is not None:
            return min(self.min_rate_hz, self.full_hz)
        return self.full_hz
