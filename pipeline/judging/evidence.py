"""Evidence that accumulates: Page's CUSUM on each score's log-likelihood ratio against real faces,
its threshold stated as false alarms per hour of real faces.

A score alone says little (open detectors give real faces P(fake) anywhere from 0.1 to 0.9 on
footage they were not trained on); what a site can know without a single labelled fake is how its
own real faces score. ``RealScores`` is that, fitted on real footage alone (``dfstream calibrate
--real-only``): the quantiles of the fused logit(P(fake)) of real faces, so a score maps to ``z``,
its place among them on a standard normal scale (a Gaussian copula: whatever the detector's score
distribution, real faces' z is N(0, 1)); how much of that spread lies between tracks (a face that
scores high for all its life: ``between``); and how a track's scores wander about its level: a
fast part (``rho`` per ``period_s``) and a slow one (``slow`` of the variance, ``slow_rho``: an
expression, a turn of the head; measured here, real faces' scores are still 0.24 alike 1 s apart,
where one AR(1) fitted on consecutive scores says 0.015, and thresholds drawn from it let the first
grimace through).

Per track, each score adds its log-likelihood ratio of "the scores moved up by ``shift`` standard
deviations" against "a real face": ``shift · (z − shift / 2)`` (Page, 1954; for a Gaussian mean shift
the CUSUM's reference value is half the shift), weighted by the time it stands for, and the sum is
kept at or above 0. An alarm is the sum crossing ``h``. ``h`` is chosen so that real faces, scored
as the fit says they score, cross it ``false_alarms_per_hour`` times per hour of face tracks of
``track_s`` seconds: the average run length, found by simulating that many hours of the fitted real
process (seeded: the same fit gives the same ``h``). A z is bounded by the fitted quantiles, so no
single frame raises an alarm: it takes evidence over time.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

from core.errors import ConfigError, InputError
from pipeline.judging.fusion import logit

# the quantile levels stored: z is bounded by the outermost (±2.58), so a single score adds at most
# shift · (2.58 − shift / 2) to the evidence
LEVELS = np.linspace(0.005, 0.995, 199)
_Z_OF_LEVEL = np.array([NormalDist().inv_cdf(float(q)) for q in LEVELS])
MIN_SCORES = 50  # fewer real scores than this cannot place 199 quantiles honestly


@dataclass(frozen=True)
class RealScores:
    """How real faces score, fitted on real footage (one face finder, one set of detectors)."""

    quantiles: tuple[float, ...]  # logit(P(fake)) of real faces at LEVELS
    between: float  # share of the variance of z between tracks (0-0.9)
    rho: float  # the fast wander's correlation of consecutive scores, ``period_s`` apart
    period_s: float
    tracks: int
    seconds: float  # of real face tracks fitted on
    # a real face's scores also wander slowly (an expression, a turn of the head, light): ``slow`` of
    # the within-track variance is a second AR(1) with ``slow_rho`` per period (0: none, as a file
    # from before says)
    slow: float = 0.0
    slow_rho: float = 0.0

    def z(self, p: float | np.ndarray) -> np.ndarray:
        """Where a P(fake) stands among real faces' scores, as a standard normal value."""
        return np.interp(logit(p), np.asarray(self.quantiles), _Z_OF_LEVEL)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["quantiles"] = [round(q, 5) for q in self.quantiles]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RealScores:
        quantiles = tuple(float(q) for q in data["quantiles"])
        if len(quantiles) != len(LEVELS) or any(b < a for a, b in zip(quantiles, quantiles[1:])):
            raise ConfigError(f"real-face baseline: expected {len(LEVELS)} increasing quantiles")
        return cls(
            quantiles,
            float(data["between"]),
            float(data["rho"]),
            float(data["period_s"]),
            int(data["tracks"]),
            float(data["seconds"]),
            float(data.get("slow", 0.0)),
            float(data.get("slow_rho", 0.0)),
        )

    def correlation(self, lags: np.ndarray) -> np.ndarray:
        """The fitted correlation of a track's scores ``lags`` periods apart."""
        return self.slow * self.slow_rho**lags + (1.0 - self.slow) * self.rho**lags


Track = Sequence[tuple[float, float]]  # (stream second, P(fake)) of each score of one track


LAGS = np.array([1, 2, 5, 10, 20, 50])  # periods: the correlations a fit matches (0.1 s to 5 s at 10 Hz)


def fit_real_scores(tracks: Sequence[Track], period_s: float = 0.1) -> RealScores:
    """The fit on real faces' tracks: the quantiles, the share between tracks, and how a track's
    scores wander about its level: the correlations of scores ``LAGS`` periods apart (each pair
    within half a period of its lag) matched by two AR(1) parts, a fast one and a slow one."""
    scores = np.array([p for track in tracks for _, p in track], dtype=np.float64)
    if len(scores) < MIN_SCORES:
        raise InputError(f"a real-face baseline needs at least {MIN_SCORES} scores of real faces, got {len(scores)}")
    quantiles = np.quantile(logit(scores), LEVELS)
    quantiles = np.maximum.accumulate(quantiles)
    real = RealScores(tuple(float(q) for q in quantiles), 0.0, 0.0, period_s, len(tracks), 0.0)
    means, weights, seconds = [], [], 0.0  # weights: each track's number of scores
    pairs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {int(k): [] for k in LAGS}
    for track in tracks:
        if len(track) < 2:
            continue
        t = np.array([s for s, _ in track])
        z = real.z(np.array([p for _, p in track]))
        seconds += float(t[-1] - t[0]) + period_s
        means.append(float(z.mean()))
        weights.append(len(z))
        deviation = z - z.mean()
        for lag in pairs:
            later = np.searchsorted(t, t + lag * period_s - period_s / 2)
            found = later < len(t)
            found[found] &= np.abs(t[later[found]] - t[found] - lag * period_s) <= period_s / 2
            pairs[lag].append((deviation[found], deviation[later[found]]))
    # between-track share: the (length-weighted) variance of track means, itself inflated by the
    # within-track noise of short tracks, so it errs on the high side (higher thresholds: fewer alarms)
    between = float(np.average(np.square(means), weights=weights)) if means else 0.0
    measured = {}
    for lag, parts in pairs.items():
        x = np.concatenate([a for a, _ in parts]) if parts else np.zeros(0)
        y = np.concatenate([b for _, b in parts]) if parts else np.zeros(0)
        if len(x) > 10 and np.std(x) > 0 and np.std(y) > 0:
            measured[lag] = float(np.corrcoef(x, y)[0, 1])
    slow, slow_rho, rho = _two_wanders(measured, weights)
    return RealScores(
        real.quantiles,
        min(0.9, max(0.0, between)),
        rho,
        period_s,
        len(tracks),
        round(seconds, 2),
        slow,
        slow_rho,
    )


def _two_wanders(measured: dict[int, float], lengths: Sequence[int]) -> tuple[float, float, float]:
    """(slow share, slow rho, fast rho) whose correlations at the measured lags are nearest (least
    squares, on a grid) to the measured ones; none measured: no wander. The measured ones are about
    each track's own mean, which takes in part of a slow wander (a 20 s track's mean moves with an
    expression): each candidate is compared as it would measure on tracks of ``lengths`` scores,
    (rho(k) - m) / (1 - m), m the variance of a track's mean as a share of the wander's."""
    if not measured:
        return 0.0, 0.0, 0.0
    lags = np.array(list(measured), dtype=float)
    target = np.clip(np.array(list(measured.values())), -0.5, 0.99)
    share = np.linspace(0.0, 0.9, 91)[:, None, None, None]
    slow_rho = (1.0 - np.geomspace(0.001, 0.5, 60))[None, :, None, None]
    fast_rho = np.linspace(0.0, 0.95, 96)[None, None, :, None]
    mean_share = share * _mean_variance(slow_rho, lengths) + (1.0 - share) * _mean_variance(fast_rho, lengths)
    model = share * slow_rho**lags + (1.0 - share) * fast_rho**lags
    error = np.square((model - mean_share) / (1.0 - mean_share) - target).sum(axis=-1)
    i, j, k = np.unravel_index(int(np.argmin(error)), error.shape)
    return float(share[i, 0, 0, 0]), round(float(slow_rho[0, j, 0, 0]), 5), float(fast_rho[0, 0, k, 0])


def _mean_variance(rho: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """The variance of the mean of n consecutive values of a unit AR(1) with ``rho``, averaged over
    the tracks' lengths n weighted by n (as their pairs weigh in the measured correlations)."""
    r = np.minimum(rho, 1.0 - 1e-9)
    total, weight = np.zeros_like(rho), 0.0
    for n in lengths:
        if n < 2:
            continue
        # n x the variance of the mean: (1 + r) / (1 - r) - 2 r (1 - r^n) / (n (1 - r)^2)
        total += (1 + r) / (1 - r) - 2 * r * (1 - r**n) / (n * (1 - r) ** 2)
        weight += n
    return total / weight if weight else np.zeros_like(rho)


@dataclass(frozen=True)
class AlarmRule:
    """Two of Page's CUSUMs per track on a real-face baseline: ``absolute`` (the scores against real
    faces in general: a face fake from its first frame) and ``change`` (the scores against the
    track's own level so far: a face swapped mid-shot), each crossing its threshold at half the
    stated false-alarm rate."""

    real: RealScores
    shift: float
    absolute: float  # the absolute evidence's threshold
    change: float  # the change evidence's threshold
    reference_s: float = 20.0  # a track's own level is its scores' mean over about this long
    warmup_s: float = 2.0  # scores of its own before a track's level is trusted (no change test before)
    max_step: float = 6.0  # a change score is bounded: no single frame raises an alarm
    hold: float = 0.5  # the track's level is held while the change evidence is past this share of its threshold


class Evidence:
    """The two CUSUMs of any number of tracks at once (numpy arrays, one entry per track): the
    smoother runs one track through it, the threshold fit runs thousands of simulated ones, so both
    are the same arithmetic."""

    def __init__(self, rule: AlarmRule, tracks: int = 1):
        self.rule = rule
        self.within = math.sqrt(max(1e-6, 1.0 - rule.real.between))  # a track's scores' spread about its level
        self.level = np.zeros(tracks)
        self.learned = np.zeros(tracks)  # scores (weighted) the level was learned from
        self.learned_s = np.zeros(tracks)  # ... and the seconds of the track they stand for
        self.watched = np.zeros(tracks)  # seconds of the track seen (each score's time, up to a second)
        self.absolute = np.zeros(tracks)
        self.change = np.zeros(tracks)

    def add(self, z: np.ndarray, weight: np.ndarray | float = 1.0) -> None:
        """Each track's next z, standing for ``weight`` periods (at most 1: a score after a pause is
        one score, not several)."""
        rule, shift = self.rule, self.rule.shift
        w = np.minimum(weight, 1.0)
        self.absolute = np.maximum(0.0, self.absolute + w * shift * (z - shift / 2))
        # the level is trusted after ``warmup_s`` of the track, however often it was scored (a calm
        # track is scored twice a second), and a few scores
        seconds = np.minimum(np.asarray(weight) * rule.real.period_s, 1.0)
        self.watched = self.watched + seconds
        ready = (self.watched >= rule.warmup_s) & (self.learned >= 5)
        step = np.clip((z - self.level) / self.within, -rule.max_step, rule.max_step)
        self.change = np.where(ready, np.maximum(0.0, self.change + w * shift * (step - shift / 2)), 0.0)
        # the level learns all the time, slowly, except while the change evidence is past half its
        # threshold: a swapped face is measured against the face before it, not absorbed into its
        # level, while a level learned a little off in the first seconds is mended as it goes on
        learn = self.change < rule.hold * rule.change
        self.learned = self.learned + np.where(learn, w, 0.0)
        self.learned_s = self.learned_s + np.where(learn, seconds, 0.0)
        # the level is the mean of the track's scores by the time each stands for, not by their count:
        # a calm track scored twice a second has as firm a level after 6 s as one scored ten times a
        # second, and a swap after a calm stretch moves it no faster (at first 1 / scores, so a few
        # calm scores would let the swapped face into its own level within a second)
        rate = np.maximum(seconds / np.maximum(self.learned_s, seconds), seconds / rule.reference_s)
        self.level = np.where(learn, self.level + rate * (z - self.level), self.level)

    def alarmed(self) -> np.ndarray:
        return (self.absolute >= self.rule.absolute) | (self.change >= self.rule.change)

    def hold(self) -> None:
        """While a track is fake: each evidence held at its threshold, so leaving takes as much
        evidence against as entering took for."""
        self.absolute = np.minimum(self.absolute, self.rule.absolute)
        self.change = np.minimum(self.change, self.rule.change)

    def spent(self) -> np.ndarray:
        return (self.absolute <= 0.0) & (self.change <= 0.0)

    def calm(self) -> np.ndarray:
        """No sign of a change, and little absolute evidence: a track that may be judged less often.
        The first score that adds change evidence ends it, so the full rate is back at once."""
        return (self.change <= 0.0) & (self.absolute <= 0.25 * self.rule.absolute)

    def share(self) -> np.ndarray:
        """The evidence as a share of its threshold, the nearer of the two."""
        return np.maximum(self.absolute / self.rule.absolute, self.change / self.rule.change)


def simulated_maxima(
    rule: AlarmRule, track_s: float, tracks: int = 20000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The highest absolute and change evidence each of ``tracks`` simulated real tracks of
    ``track_s`` reaches: z is the fitted process (a track's own level, N(0, between), plus a fast
    and a slow AR(1) wander), bounded as the quantile map bounds it."""
    real = rule.real
    rng = np.random.default_rng(seed)
    steps = max(1, round(track_s / real.period_s))
    level = rng.normal(0.0, math.sqrt(real.between), tracks)
    within = 1.0 - real.between
    parts = [(real.rho, (1.0 - real.slow) * within), (real.slow_rho, real.slow * within)]  # (rho, variance)
    noise = [rng.normal(0.0, math.sqrt(v), tracks) for _, v in parts]
    low, high = _Z_OF_LEVEL[0], _Z_OF_LEVEL[-1]
    evidence = Evidence(rule, tracks)
    absolute, change = np.zeros(tracks), np.zeros(tracks)
    for _ in range(steps):
        evidence.add(np.clip(level + noise[0] + noise[1], low, high))
        np.maximum(absolute, evidence.absolute, out=absolute)
        np.maximum(change, evidence.change, out=change)
        noise = [r * n + math.sqrt(v * (1.0 - r**2)) * rng.normal(0.0, 1.0, tracks) for (r, v), n in zip(parts, noise)]
    return absolute, change


def _threshold(highest: np.ndarray, per_hour: float, track_s: float, floor: float) -> float:
    ordered = np.sort(highest)[::-1]
    allowed = int(per_hour * len(ordered) * track_s / 3600.0)
    if allowed >= len(ordered):
        return floor
    return max(float(ordered[allowed]), floor) + 1e-9


@functools.lru_cache(maxsize=32)
def alarm_rule(real: RealScores, shift: float, false_alarms_per_hour: float, track_s: float) -> AlarmRule:
    """The thresholds at which simulated real faces raise ``false_alarms_per_hour`` alarms an hour of
    tracks of ``track_s`` seconds, half of them from each evidence."""
    # never less than two of the largest steps a score can add: no single frame raises an alarm
    high = _Z_OF_LEVEL[-1]
    absolute_floor = 2 * shift * (high - shift / 2)
    change_floor = 2 * shift * (AlarmRule.max_step - shift / 2)
    half = false_alarms_per_hour / 2
    # the level is held near the change threshold, which depends on how the level is held: a few
    # rounds settle it (the first with a level never held)
    rule = AlarmRule(real, shift, math.inf, math.inf)
    for _ in range(3):
        absolute, change = simulated_maxima(rule, track_s)
        rule = AlarmRule(
            real,
            shift,
            _threshold(absolute, half, track_s, absolute_floor),
            _threshold(change, half, track_s, change_floor),
        )
    return rule


def false_alarms_per_hour(rule: AlarmRule, track_s: float) -> float:
    """What ``rule`` costs in false alarms per hour of simulated real tracks (another seed)."""
    absolute, change = simulated_maxima(rule, track_s, seed=1)
    alarms = (absolute >= rule.absolute) | (change >= rule.change)
    return float(np.sum(alarms)) / (len(alarms) * track_s / 3600.0)


# ---- a baseline file: the fit per face finder (or the voice), with what it was fitted for ------------------------
@dataclass(frozen=True)
class Baseline:
    """How real faces score per face finder (or real speech, "voice"), for one set of detectors fused
    one way."""

    detectors: tuple[str, ...]  # the detector types, sorted: a baseline fits only these
    fusion: str
    real: dict[str, RealScores]  # per face finder ("blazeface", "mtcnn"), or "voice": a stream's voice
    fitted_on: str  # what footage, said in words
    # per finder, each detector's real-face logit quartiles: how each model sees these faces (a record)
    models: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "detectors": list(self.detectors),
            "fusion": self.fusion,
            "fitted_on": self.fitted_on,
            "real": {name: real.to_dict() for name, real in sorted(self.real.items())},
            "models": self.models,
        }

    def fits(self, detector_types: Sequence[str], fusion: str) -> bool:
        return tuple(sorted(detector_types)) == self.detectors and fusion == self.fusion


def save_baseline(baseline: Baseline, path: str | Path) -> None:
    Path(path).write_text(json.dumps(baseline.to_dict(), indent=1) + "\n")


def load_baseline(path: str | Path) -> Baseline:
    try:
        data = json.loads(Path(path).read_text())
        return Baseline(
            tuple(sorted(data["detectors"])),
            str(data["fusion"]),
            # "finders": a baseline written before the voice had one
            {name: RealScores.from_dict(entry) for name, entry in data.get("real", data.get("finders", {})).items()},
            str(data.get("fitted_on", "")),
            dict(data.get("models", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"real-face baseline {path}: {exc}") from exc


VOICE = "voice"  # a baseline's fit of a stream's voice (beside the face finders' fits)
# the defaults' baselines: both MesoNets, weighted average, fitted on the development set's originals;
# AASIST, fitted on its real recordings
PACKAGED = Path(__file__).resolve().parent / "baselines" / "mesonet.json"
PACKAGED_VOICE = Path(__file__).resolve().parent / "baselines" / "aasist.json"
