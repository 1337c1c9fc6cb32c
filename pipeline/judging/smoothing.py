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

``cusum`` (the default) labels by evidence instead (``evidence.py``): each score's log-likelihood
ratio against the real faces of a baseline fitted on real footage is summed (Page's CUSUM), and the
track is ``fake`` from the moment the sum crosses the threshold that real faces cross
``false_alarms_per_hour`` times an hour, ``real`` again once the evidence is spent (the sum, held at
the threshold while fake, back to 0). ``enter``, ``leave`` and ``min_duration_s`` are the ema's; the
reported P(fake) is the ema's too (what a person reads), the label the evidence's.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from core.errors import ConfigError
from core.strict import StrictModel
from pipeline.judging.evidence import PACKAGED, VOICE, AlarmRule, Evidence, alarm_rule, load_baseline

log = logging.getLogger(__name__)

Label = Literal["real", "fake", "uncertain"]


class SmoothingConfig(StrictModel):
    method: Literal["cusum", "ema", "window", "none"] = "cusum"
    # cusum: how often real faces may raise an alarm, per hour of face tracks ``track_s`` long
    false_alarms_per_hour: float = Field(0.3, gt=0.0, le=3600.0)
    # the rise of a swapped face's scores it is tuned for, in a face's own sd: a face scored near 0.05 swapped
    # for one scored near 0.85 rises about 3.5; chosen on the curve of bench.alarms (4: no real video
    # alarmed with either finder, most splices flagged within 1 s; at 0.3 per hour the same, sooner)
    shift: float = Field(4.0, gt=0.0, le=6.0)
    track_s: float = Field(60.0, gt=0.0)  # the life of a real face track the rate is stated for
    # a real-face baseline (dfstream calibrate --real-only); none: the packaged one, fitted for both
    # MesoNets on the development set's originals
    baseline: str | None = None
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
    calm: bool = False  # real and far from fake: the track may be judged less often (cadence)
    evidence: float | None = None  # cusum: the evidence as a share of the alarm threshold (1: alarm)


class Smoothing:
    """The smoothing a runtime applies to every track: its config and, for cusum, its alarm rule."""

    def __init__(self, config: SmoothingConfig, rule: AlarmRule | None = None):
        self.config, self.rule = config, rule

    @property
    def leave(self) -> float:
        return self.config.leave

    def track(self) -> TrackSmoother:
        return TrackSmoother(self.config, self.rule)

    @classmethod
    def build(
        cls, config: SmoothingConfig, scored: str, detector_types: list[str], fusion: str, packaged: Path = PACKAGED
    ) -> Smoothing:
        """For cusum, the baseline that fits these detectors and what they score (``scored``: the face
        finder, or "voice"). The packaged one (``packaged``) fits only the default models: others
        without their own baseline get the ema's labels, said once; a baseline named in the config
        that does not fit is a config error."""
        if config.method != "cusum":
            return cls(config)
        baseline = load_baseline(config.baseline or packaged)
        real = baseline.real.get(scored)
        if real is None or not baseline.fits(detector_types, fusion):
            why = (
                f"it was fitted for {'+'.join(baseline.detectors)} fused by {baseline.fusion} "
                f"with {', '.join(sorted(baseline.real))}; these are {'+'.join(sorted(detector_types))} "
                f"fused by {fusion} with {scored}"
            )
            if config.baseline is not None:
                raise ConfigError(f"smoothing.baseline {config.baseline}: {why} (dfstream calibrate --real-only)")
            log.warning(
                "smoothing: cusum needs a baseline of real %s for these models (dfstream calibrate "
                "--real-only, then smoothing.baseline); the packaged one does not fit (%s): labels come "
                "from the ema thresholds (enter %.2f, leave %.2f) until then",
                "speech" if scored == VOICE else "faces",
                why,
                config.enter,
                config.leave,
            )
            return cls(config.model_copy(update={"method": "ema"}))
        return cls(config, alarm_rule(real, config.shift, config.false_alarms_per_hour, config.track_s))


class TrackSmoother:
    def __init__(self, config: SmoothingConfig, rule: AlarmRule | None = None):
        if config.method == "cusum" and rule is None:
            raise ConfigError("smoothing method cusum needs its alarm rule (Smoothing.build)")
        self.config = config
        self.rule = rule
        self._evidence = Evidence(rule) if rule is not None else None
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
        dt = None if self._ts is None else max(0.0, ts - self._ts)
        p, u = self._smooth(probability, uncertainty, ts)
        if self.rule is not None:
            return self._accumulate(probability, p, u, ts, dt)
        if self._state == "real":
            if p >= cfg.enter:
                self._above_since = ts if self._above_since is None else self._above_since
                if ts - self._above_since >= cfg.min_duration_s:
                    self._state = "fake"
            else:
                self._above_since = None
        elif p <= cfg.leave:
            self._state, self._above_since = "real", None
        return self._labelled(p, u, ts, self._state == "real" and p <= cfg.leave, None)

    def _accumulate(self, raw: float, p: float, u: float, ts: float, dt: float | None) -> Smoothed:
        evidence = self._evidence
        assert evidence is not None and self.rule is not None
        # a score stands for the time since the one before, up to one period: at a lower rate (a calm
        # track) evidence comes more slowly, never in bigger steps
        period = self.rule.real.period_s
        evidence.add(self.rule.real.z(np.array([raw])), 1.0 if dt is None else dt / period)
        if self._state == "real" and bool(evidence.alarmed()[0]):
            self._state = "fake"
        if self._state == "fake":
            evidence.hold()
            if bool(evidence.spent()[0]):
                self._state = "real"
        calm = self._state == "real" and bool(evidence.calm()[0])
        return self._labelled(p, u, ts, calm, round(float(evidence.share()[0]), 4))

    def _labelled(self, p: float, u: float, ts: float, calm: bool, evidence: float | None) -> Smoothed:
        cfg = self.config
        label: Label = "uncertain" if self._frames < cfg.min_frames or u > cfg.max_uncertainty else self._state
        if label != self._label:
            self._label, self._label_since = label, ts
        return Smoothed(p, u, label, self._label_since, self._frames, calm and label == "real", evidence)

    def _smooth(self, p: float, u: float, ts: float) -> tuple[float, float]:
        cfg = self.config
        # a score's share is the time it stands for; the first stands for one period
        dt = cfg.period_s if self._ts is None else max(0.0, ts - self._ts)
        self._ts = ts
        if cfg.method == "none":
            return p, u
        if cfg.method in ("ema", "cusum"):
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
