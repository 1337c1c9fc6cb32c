"""The voice of a file, judged the way the runtime judges a stream's: its first audio track decoded
and resampled by the same ``AudioDecoder``, cut into the same windows by the same ``Listener``
(speech gate, ``voice.hop_s``, a last window over the end), each window with speech scored by every
voice model and fused by the voice ensemble. ``dfstream eval --audio-detectors``, uploads through
the API and ``dfstream annotate`` all use it, so one file gets the same numbers from each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from core.errors import DfstreamError, InputError, one_line
from pipeline.evaluation.datasets import Item
from pipeline.evaluation.metrics import classification_report
from pipeline.judging.ensemble import EnsembleManager
from pipeline.judging.listening import Listener, VoiceConfig, Window
from pipeline.judging.speech import SileroGate
from pipeline.models.audio.scorer import VoiceModel
from stream.audio import AudioDecoder

FUSED = "fused"
BATCH = 4  # windows scored together


@dataclass(frozen=True)
class WindowScore:
    """One window of a file's sound: where it is, how much of it is speech, and (when it was judged)
    each voice model's P(spoof) and their fusion."""

    start: float  # seconds into the file
    end: float
    speech: float
    models: dict[str, float]
    spoof_probability: float | None  # None: not speech enough to judge

    @property
    def judged(self) -> bool:
        return self.spoof_probability is not None


def listen(path: Path, config: VoiceConfig, options: dict[str, str] | None = None, max_seconds: float | None = None):
    """The windows of ``path``'s first audio track (none when it has no sound). More than
    ``max_seconds`` of sound raises InputError."""
    listener = Listener(config, SileroGate(config.vad_threshold))
    windows: list[Window] = []
    errors = 0

    def failed() -> None:
        nonlocal errors
        errors += 1

    with av.open(str(path), options=options or {}) as container:
        if not container.streams.audio:
            return []
        decoder = AudioDecoder(str(path), failed)
        heard = 0.0
        last = None
        for packet in container.demux(container.streams.audio[0]):
            chunks = decoder.decode(packet) + ([] if packet.size else decoder.flush())
            for chunk in chunks:
                heard += chunk.seconds
                if max_seconds is not None and heard > max_seconds:
                    raise InputError(f"the sound is longer than {max_seconds:g} s")
                last = chunk
                if (window := listener.hear(chunk)) is not None:
                    windows.append(window)
        if last is not None and (window := listener.finish(last.arrival_ts, last.arrival_mono)) is not None:
            windows.append(window)
    if not windows and errors:
        raise InputError(f"its audio track could not be decoded ({errors} packets failed)")
    return windows


def score_windows(
    windows: Sequence[Window],
    voices: Mapping[str, VoiceModel],
    ensemble: EnsembleManager,
    min_speech: float,
    between: Callable[[], None] | None = None,
) -> list[WindowScore]:
    """Each window with speech scored by every voice model, ``BATCH`` at a time; ``between()`` is
    called before each batch (a caller's limits: it may raise to stop)."""
    speaking = [w for w in windows if w.speech >= min_speech]
    per_model: dict[str, list[np.ndarray]] = {name: [] for name in voices}
    for i in range(0, len(speaking), BATCH):
        if between is not None:
            between()
        batch = [w.samples for w in speaking[i : i + BATCH]]
        for name, voice in voices.items():
            per_model[name].append(voice.score(batch))
    joined = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in per_model.items()}
    scored = {id(w): {name: float(values[j]) for name, values in joined.items()} for j, w in enumerate(speaking)}
    out = []
    for w in windows:
        models = scored.get(id(w), {})
        fused = float(ensemble.fuse(models).fake_probability) if models else None
        start = 0.0 if w.pts_start is None else w.pts_start
        out.append(WindowScore(round(start, 3), round(start + w.seconds, 3), round(w.speech, 4), models, fused))
    return out


def file_score(windows: Sequence[WindowScore], key: str = FUSED) -> float | None:
    """A file's P(spoof): the mean over its judged windows (None when none held speech)."""
    values = [w.spoof_probability if key == FUSED else w.models[key] for w in windows if w.judged]
    return float(np.mean(values)) if values else None


@dataclass
class VoiceScores:
    """Every window of every item, and the items whose voice could not be judged (with why)."""

    windows: dict[str, list[WindowScore]] = field(default_factory=dict)  # path → windows
    labels: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)


def score_voice_items(
    items: list[Item],
    voices: Mapping[str, VoiceModel],
    ensemble: EnsembleManager,
    config: VoiceConfig,
    progress: Callable[[int, int], None] | None = None,
) -> VoiceScores:
    scores = VoiceScores()
    for done, item in enumerate(items, start=1):
        try:
            windows = score_windows(listen(item.path, config), voices, ensemble, config.min_speech)
            if not windows:
                raise InputError("no audio track")
            if not any(w.judged for w in windows):
                raise InputError(f"no window held speech (voice.min_speech {config.min_speech:g})")
        except (DfstreamError, av.error.FFmpegError, OSError, ValueError) as exc:  # one bad file is a line
            scores.skipped.append({"path": str(item.path), "label": item.label, "reason": one_line(exc)})
        else:
            scores.windows[str(item.path)] = windows
            scores.labels[str(item.path)] = item.label
        if progress is not None:
            progress(done, len(items))
    return scores


def voice_report(scores: VoiceScores, names: list[str]) -> dict:
    """AUC and EER per voice model and fused, per judged window and per file (mean of its windows)."""
    result: dict = {"items_scored": len(scores.windows), "skipped": scores.skipped, "models": {}}
    judged = [(scores.labels[p], w) for p, ws in scores.windows.items() for w in ws if w.judged]
    result["windows_judged"] = len(judged)
    result["windows_without_speech"] = sum(not w.judged for ws in scores.windows.values() for w in ws)
    for name in [*names, FUSED]:
        window_scores = [w.spoof_probability if name == FUSED else w.models[name] for _, w in judged]
        files = [(scores.labels[p], file_score(ws, name)) for p, ws in scores.windows.items()]
        result["models"][name] = {
            "window": classification_report([label for label, _ in judged], window_scores),
            "file": classification_report([label for label, _ in files], [s for _, s in files]),
        }
    return result


def voice_curves(scores: VoiceScores, names: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """Per model and fused: (labels, file scores), for a ROC plot."""
    paths = list(scores.windows)
    return {
        name: ([scores.labels[p] for p in paths], [file_score(scores.windows[p], name) or 0.0 for p in paths])
        for name in [*names, FUSED]
    }


def write_voice_outputs(out: Path, result: dict, scores: VoiceScores, names: list[str], meta: dict) -> list[Path]:
    """voice_report.json, voice_windows.csv (every window of every file) and roc_voice.png (per file)."""
    import csv
    import json

    from pipeline.evaluation.scoring import plot_roc

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "voice_report.json", out / "voice_windows.csv", out / "roc_voice.png"]
    (out / "voice_report.json").write_text(json.dumps({**meta, **result}, indent=2, sort_keys=True))
    with open(out / "voice_windows.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "start", "end", "speech", *names, FUSED])
        writer.writeheader()
        for path, windows in scores.windows.items():
            for w in windows:
                writer.writerow(
                    {
                        "path": path,
                        "label": scores.labels[path],
                        "start": w.start,
                        "end": w.end,
                        "speech": w.speech,
                        **w.models,
                        FUSED: "" if w.spoof_probability is None else w.spoof_probability,
                    }
                )
    aucs = {name: result["models"][name]["file"]["auc"] for name in [*names, FUSED]}
    plot_roc(out / "roc_voice.png", "voice, per file (mean of its windows)", voice_curves(scores, names), aucs)
    return written
