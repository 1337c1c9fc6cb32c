"""Per-track temporal smoothing and a hysteresis label.

A single frame's P(fake) is noisy (compression, blur, a turned head). Per track:
1. smooth P(fake) (and the uncertainty) with ``ema`` (s ← a·p + (1-a)·s), a sliding ``window``
   mean, or ``none``. Both weigh a score by the time since the one before, not by counting scores:
   tracks are scored at a rate (``judge.max_rate_hz``), sooner when they move, so scores come at
   uneven intervals. ``alpha`` and ``window`` are stated per ``period_s`` (a frame at 30 fps): a
   score after dt seconds gets a = 1 - (1-alpha)^(dt/period_s), the same smoothing in seconds
   whether a track is scored 30 or 10 times a second; the window spans ``window`` periods;
2. label with hysteresis: ``fake`` once the smoothed value has stayed >= ``enter`` for
   ``min_duration_s``; back to ``real`` when it drops to <= ``leave``. Between the two the label
   holds, so a score hovering at one threshold does not flap;
3. report ``uncertain`` while fewer than ``min_frames`` scores were seen or the smoothed
   uncertainty exceeds ``max_uncertainty`` (the hysteresis state keeps running underneath).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from core.strict import StrictModel

Label = Literal["real", "fake", "uncertain"]


class SmoothingConfig(StrictModel):
    method: Literal["ema", "window", "none"] = "ema"
    alpha: float = Field(0.3, gt=0.0, le=1.0)
    window: int = Field(8, ge=1)
    period_s: float = Field(1 / 30, gt=0.0)  # the interval alpha and window are stated for
    enter: float = Field(0.7, gt=0.0, lt=1.0)
    leave: float = Field(0.4, gt=0.0, lt=1.0)
    min_duration_s: float = Field(0.5, ge=0.0)
    min_frames: int = Field(3, ge=1)
    max_uncertainty: float = Field(0.9, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _verify_thresholds(self) -> SmoothingConfig:
        if self.enter < self.leave:
            raise ValueError(
                f"enter ({self.enter}) must be >= leave ({self.leave}): hysteresis needs enter above leave"
            )
        return self


@dataclass
class Smoothed:
    probability: float
    uncertainty: float
    label: Label
    label_since: float  # when the reported label began, on the clock update() is given (stream or arrival time)
    frames: int


class TrackSmoother:
    def __init__(self, config: SmoothingConfig):
        self.config = config
        self._p: float | None = None
        self._u: float | None = None
        self._window: deque[tuple[float, float, float, float]] = deque()  # (ts, weight, p, u)
        self._ts: float | None = None
        self._frames = 0
        self._state: Literal["real", "fake"] = "real"
        self._above_since: float | None = None
        self._label: Label | None = None
        self._label_since = 0.0

    def update(self, probability: float, uncertainty: float, ts: float) -> Smoothed:
        cfg = self.config
        self._frames += 1
        p, u = self._smooth(probability, uncertainty, ts)
        if self._state == "real":
            if p >= cfg.enter:
                self._above_since = ts if self._above_since is None else self._above_since
                if ts - self._above_since >= cfg.min_duration_s:
                    self._state = "fake"
            else:
                self._above_since = None
        elif p <= cfg.leave:
            self._state, self._above_since = "real", None
        label: Label = "uncertain" if self._frames < cfg.min_frames or u > cfg.max_uncertainty else self._state
        if label != self._label:
            self._label, self._label_since = label, ts
        return Smoothed(p, u, label, self._label_since, self._frames)

    def _smooth(self, p: float, u: float, ts: float) -> tuple[float, float]:
        cfg = self.config
        # a score's share is the time it stands for; the first stands for one period
        dt = cfg.period_s if self._ts is None else max(0.0, ts - self._ts)
        self._ts = ts
        if cfg.method == "none":
            return p, u
        if cfg.method == "ema":
            a = 1.0 - (1.0 - cfg.alpha) ** (dt / cfg.period_s)
            self._p = p if self._p is None else a * p + (1 - a) * self._p
            self._u = u if self._u is None else a * u + (1 - a) * self._u
            return self._p, self._u
        # a score stands for the time since the one before, clipped to the window
        span = cfg.window * cfg.period_s
        self._window.append((ts, min(dt, span), p, u))
        while len(self._window) > 1 and self._window[0][0] <= ts - span:
            self._window.popleft()
        weights = [min(w, t - (ts - span)) for t, w, _, _ in self._window]
        total = sum(weights)
        if total <= 0.0:  # scores at one instant: their plain mean
            weights, total = [1.0] * len(self._window), float(len(self._window))
        return (
            sum(w * x for w, (_, _, x, _) in zip(weights, self._window)) / total,
            sum(w * y for w, (_, _, _, y) in zip(weights, self._window)) / total,
        )
