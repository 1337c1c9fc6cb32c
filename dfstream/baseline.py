"""``dfstream calibrate --real-only``: how a site's real faces (or voices) score, from its own footage,
without a single labelled fake.

The footage goes through the runtime exactly as a stream would (decode, the face finder, the
tracker, the detectors, fusion): files read as fast as they decode, on their own clock, a live
stream watched for a while. Every track is scored at the judge's full rate and never skimmed, and
nothing is smoothed: what is kept is each track's raw fused P(fake) over time, the input of the
cusum's evidence (``pipeline.judging.evidence``). With labels (a CSV or real/ and fake/ folders),
only the real items are fitted on; the fakes measure what the fitted threshold detects. A voice's
baseline (``--audio-detectors``) is fitted on files' sound, judged window by window as a stream's is
(``pipeline.evaluation.voice``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.lifecycle import Lifecycle
from pipeline.evaluation.datasets import AUDIO_SUFFIXES, VIDEO_SUFFIXES, Item, load_dataset
from pipeline.evaluation.voice import VoiceScores
from pipeline.judging.evidence import (
    VOICE,
    AlarmRule,
    Baseline,
    Evidence,
    RealScores,
    Track,
    alarm_rule,
    fit_real_scores,
)
from pipeline.judging.fusion import logit
from pipeline.judging.listening import VoiceConfig
from pipeline.models.audio.config import AudioDetectorConfig
from pipeline.models.detector import BaseDetector
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.events import Verdict
from pipeline.runtime.runtime import Runtime
from stream import StreamConfig
from stream.urls import classify, file_path


@dataclass(frozen=True)
class Footage:
    """One source to watch: a file (read to its end) or a live URL (watched for ``seconds``)."""

    url: str
    label: int = 0  # 1: a labelled fake (measured against, never fitted on)
    live: bool = False


@dataclass
class Watched:
    """Each source's tracks: (stream second, fused P(fake)) of every score, and each model's."""

    tracks: dict[str, dict[int, list[tuple[float, float]]]] = field(default_factory=dict)
    models: dict[str, list[float]] = field(default_factory=dict)

    def of(self, footage: Sequence[Footage], label: int) -> list[Track]:
        return [t for f in footage if f.label == label for t in self.tracks.get(f.url, {}).values() if t]


class _Keep(Lifecycle):
    """A sink that keeps the scored verdicts."""

    def __init__(self) -> None:
        super().__init__("real-faces")
        self.verdicts: list[Verdict] = []

    async def publish(self, event: object) -> None:
        if isinstance(event, Verdict) and event.scored and event.frame_pts is not None:
            self.verdicts.append(event)


def watch(
    footage: Sequence[Footage],
    config: PipelineConfig,
    detectors: dict[str, BaseDetector],
    seconds: float | None = None,
    batch: int = 6,
    progress: Callable[[int, int], None] | None = None,
) -> Watched:
    """Run ``footage`` through the runtime of ``config`` (its faces, detectors and ensemble), at most
    ``batch`` sources at a time; live sources are stopped after ``seconds``."""
    judged = config.model_copy(
        update={
            "judge": config.judge.model_copy(update={"min_rate_hz": None}),
            "smoothing": config.smoothing.model_copy(update={"method": "none"}),
            "audio_detectors": [],
        }
    )
    watched = Watched()
    for start in range(0, len(footage), batch):
        chunk = list(footage[start : start + batch])
        ids = {f"real{start + i}-{_slug(f.url)}": f for i, f in enumerate(chunk)}
        streams = [
            StreamConfig(id=sid, url=f.url, **({} if f.live else {"pace": "asap"}), audio="off")
            for sid, f in ids.items()
        ]
        keep = _Keep()
        runtime = Runtime(judged.model_copy(update={"streams": streams}), detectors, [keep])
        asyncio.run(_run(runtime, seconds if any(f.live for f in chunk) else None))
        for sid, f in ids.items():
            tracks: dict[int, list[tuple[float, float]]] = {}
            for v in keep.verdicts:
                if v.stream == sid:
                    tracks.setdefault(v.track_id, []).append((float(v.frame_pts), v.raw_probability))  # type: ignore[arg-type]
                    if f.label == 0:
                        for name, p in v.models.items():
                            watched.models.setdefault(name, []).append(p)
            watched.tracks[f.url] = tracks
        if progress is not None:
            progress(min(start + batch, len(footage)), len(footage))
    return watched


async def _run(runtime: Runtime, seconds: float | None) -> None:
    if seconds is None:
        await runtime.run()
        return
    task = asyncio.create_task(runtime.run())
    try:
        await asyncio.wait_for(asyncio.shield(task), seconds)
    except TimeoutError:
        runtime.stop.set()
        await task


def _slug(url: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", url.rstrip("/").rsplit("/", 1)[-1])[:40] or "source"


@dataclass(frozen=True)
class Detection:
    """What a fitted threshold does on labelled footage: tracks of fakes that alarm, real tracks that
    do, and how long each fake track took (stream seconds from its first score)."""

    fake_tracks: int
    fake_flagged: int
    real_tracks: int
    real_flagged: int
    flag_s: list[float]


def detection(rule: AlarmRule, fakes: Sequence[Track], reals: Sequence[Track]) -> Detection:
    """The evidence as the smoother accumulates it (``evidence.py``), on each labelled track."""

    def first_alarm(track: Track) -> float | None:
        evidence, last = Evidence(rule), None
        for t, p in track:
            evidence.add(rule.real.z(np.array([p])), 1.0 if last is None else (t - last) / rule.real.period_s)
            last = t
            if evidence.alarmed()[0]:
                return t - track[0][0]
        return None

    fake_alarms = [first_alarm(t) for t in fakes]
    real_alarms = [first_alarm(t) for t in reals]
    return Detection(
        len(fakes),
        sum(a is not None for a in fake_alarms),
        len(reals),
        sum(a is not None for a in real_alarms),
        sorted(a for a in fake_alarms if a is not None),
    )


def fit(watched: Watched, footage: Sequence[Footage], period_s: float) -> RealScores:
    return fit_real_scores(watched.of(footage, 0), period_s)


def model_quantiles(watched: Watched) -> dict[str, dict[str, float]]:
    """Each detector's real-face logit quartiles (for the record: how each model sees these faces)."""
    out = {}
    for name, scores in sorted(watched.models.items()):
        q = np.quantile(logit(np.array(scores)), [0.25, 0.5, 0.75])
        out[name] = {"q25": round(float(q[0]), 4), "median": round(float(q[1]), 4), "q75": round(float(q[2]), 4)}
    return out


def footage_of(source: str) -> list[Footage]:
    """A live URL (watched), a labelled set (a CSV, real/ and fake/ folders, a FaceForensics++ tree),
    a folder of videos (all taken as real: a site's normal footage) or one video."""
    try:
        kind = classify(source)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if kind not in ("file", "sample"):
        return [Footage(source, 0, live=True)]
    if kind == "sample":
        return [Footage(source)]
    path = file_path(source)
    labelled = path.suffix.lower() == ".csv" or any((path / d).is_dir() for d in ("real", "original_sequences"))
    if labelled:
        return [Footage(str(item.path), item.label) for item in load_dataset(path) if item.is_video]
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise ConfigError(f"{source}: no videos found (suffixes {', '.join(sorted(VIDEO_SUFFIXES))})")
        return [Footage(str(p)) for p in videos]
    if path.is_file():
        return [Footage(str(path))]
    raise ConfigError(f"{source}: not a file, a folder, a CSV of path,label or a stream URL")


def sounds_of(source: str) -> list[Item]:
    """The files whose sound a voice baseline is fitted on: a labelled set (its real items; its fakes
    measure), a folder of recordings or videos (all real) or one file. A stream's voice is fitted
    from a recording of it."""
    path = Path(source)
    if path.suffix.lower() == ".csv" or any((path / d).is_dir() for d in ("real", "original_sequences")):
        return [item for item in load_dataset(path) if item.is_video or item.is_audio]
    if path.is_dir():
        found = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES | AUDIO_SUFFIXES
        )
        if not found:
            raise ConfigError(f"{source}: no recordings or videos found")
        return [Item(p, 0) for p in found]
    if path.is_file():
        return [Item(path, 0)]
    raise ConfigError(
        f"{source}: the voice's baseline is fitted on files (a folder, a CSV of path,label, one file); "
        "record a stream's sound to a file first"
    )


@dataclass
class Calibrated:
    baseline: Baseline
    thresholds: dict[str, dict[float, AlarmRule]]  # per finder: false alarms per hour → the rule
    detection: dict[str, Detection]  # per finder, when fakes were labelled


RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # false alarms per hour printed beside the fit


def calibrate_real_only(
    footage: Sequence[Footage],
    config: PipelineConfig,
    detectors: dict[str, BaseDetector],
    finders: Sequence[str],
    seconds: float | None,
    fitted_on: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> Calibrated:
    """The baseline of ``config``'s detectors and fusion, per face finder, fitted on the real footage."""
    if not any(f.label == 0 for f in footage):
        raise ConfigError("calibrate --real-only: no real footage among the sources")
    period_s = 1.0 / (config.judge.max_rate_hz or 10.0)
    fits, quartiles, thresholds, detected = {}, {}, {}, {}
    smoothing = config.smoothing
    for finder in finders:
        faces = config.faces.model_copy(update={"model": finder})
        watched = watch(
            footage,
            config.model_copy(update={"faces": faces}),
            detectors,
            seconds,
            progress=None if progress is None else (lambda done, total, f=finder: progress(f, done, total)),
        )
        real = fits[finder] = fit(watched, footage, period_s)
        quartiles[finder] = model_quantiles(watched)
        thresholds[finder] = {r: alarm_rule(real, smoothing.shift, r, smoothing.track_s) for r in RATES}
        if any(f.label == 1 for f in footage):
            rule = alarm_rule(real, smoothing.shift, smoothing.false_alarms_per_hour, smoothing.track_s)
            detected[finder] = detection(rule, watched.of(footage, 1), watched.of(footage, 0))
    baseline = Baseline(
        tuple(sorted(d.type for d in config.detectors)),
        config.ensemble.fusion_method.value,
        fits,
        fitted_on,
        quartiles,
    )
    return Calibrated(baseline, thresholds, detected)


def calibrate_voice_real_only(
    scores: VoiceScores, voice: VoiceConfig, detectors: Sequence[AudioDetectorConfig], fitted_on: str
) -> Calibrated:
    """The voice's baseline (``VOICE``) for ``detectors`` fused by ``voice.ensemble``, fitted on the
    real files' judged windows (each file one stream's voice, a window every ``voice.hop_s``)."""
    tracks = {
        label: [
            [(w.end, w.spoof_probability) for w in windows if w.judged]
            for path, windows in scores.windows.items()
            if scores.labels[path] == label
        ]
        for label in (0, 1)
    }
    if not tracks[0]:
        raise ConfigError("calibrate --real-only: no real recording whose voice could be judged")
    smoothing = voice.smoothing
    real = fit_real_scores(tracks[0], voice.hop_s)
    thresholds = {VOICE: {r: alarm_rule(real, smoothing.shift, r, smoothing.track_s) for r in RATES}}
    detected = {}
    if tracks[1]:
        rule = alarm_rule(real, smoothing.shift, smoothing.false_alarms_per_hour, smoothing.track_s)
        detected[VOICE] = detection(rule, tracks[1], tracks[0])
    baseline = Baseline(
        tuple(sorted(d.type for d in detectors)), voice.ensemble.fusion_method.value, {VOICE: real}, fitted_on
    )
    return Calibrated(baseline, thresholds, detected)
