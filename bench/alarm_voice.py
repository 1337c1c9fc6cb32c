"""The voice's alarms on real recordings: false alarms per hour of real speech and the share of TTS /
vocoder files flagged, with the voice's ema thresholds and with its evidence (cusum) against a
real-speech baseline.

    python -m bench.alarm_voice --devset DEVSET/speech [--model aasist=../shared/models/aasist/AASIST.pth]
        [--scores voice_scores.json] [--write-baseline pipeline/judging/baselines/aasist.json]

Each file is judged as a stream's sound is (``pipeline.evaluation.voice``: the same decoder,
speech gate, windows every ``voice.hop_s``, the voice ensemble); ``--scores`` keeps those windows
(read back when the file exists). Its judged windows then go through the voice's smoother in order;
a file "alarms" when any window is labelled fake. Hours of real speech: the real files' judged
windows' seconds of sound (``hop_s`` each, the first its own length).

The cusum's baseline is never fitted on the recording it is measured on: each real file is judged
against a baseline fitted on the other real files (leave one out), the fakes against the one fitted
on all of them (``--write-baseline`` writes that one: the packaged default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.evaluation.datasets import load_dataset
from pipeline.evaluation.metrics import roc_auc
from pipeline.evaluation.scoring import parse_audio_detector_spec
from pipeline.judging.evidence import VOICE, Baseline, RealScores, alarm_rule, fit_real_scores, save_baseline
from pipeline.judging.listening import VoiceConfig
from pipeline.judging.smoothing import SmoothingConfig, TrackSmoother

RATES = (0.1, 0.3, 1.0, 10.0)  # false alarms per hour of speech the cusum is asked for


def scored_windows(devset: Path, model: str, cache: Path | None, voice: VoiceConfig) -> dict:
    """path → {label, windows: [(start, end, P(spoof) or None)]}, from ``cache`` when it exists."""
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    from pipeline.evaluation.voice import score_voice_items
    from pipeline.judging.ensemble import build_ensemble
    from pipeline.models.audio.loading import load_voice_models

    configs = [parse_audio_detector_spec(model)]
    items = load_dataset(devset / "labels.csv")
    scores = score_voice_items(items, load_voice_models(configs), build_ensemble(voice.ensemble, configs, None), voice)
    out = {
        path: {"label": scores.labels[path], "windows": [(w.start, w.end, w.spoof_probability) for w in windows]}
        for path, windows in scores.windows.items()
    }
    if cache is not None:
        cache.write_text(json.dumps(out))
    return out


def judged(entry: dict) -> list[tuple[float, float]]:
    """A file's judged windows as a track: (the window's end, P(spoof))."""
    return [(end, p) for _, end, p in entry["windows"] if p is not None]


def episodes(track: list[tuple[float, float]], config: SmoothingConfig, real: RealScores | None) -> int:
    """How many times the voice's label turns fake along ``track``."""
    rule = None if real is None else alarm_rule(real, config.shift, config.false_alarms_per_hour, config.track_s)
    smoother, before, count = TrackSmoother(config, rule), "real", 0
    for t, p in track:
        label = smoother.update(p, 0.0, t).label
        count += label == "fake" and before != "fake"
        before = label if label != "uncertain" else before
    return count


def alarms(files: dict, config: SmoothingConfig, period_s: float, hop_s: float) -> dict:
    reals = [judged(e) for e in files.values() if not e["label"]]
    fakes = [judged(e) for e in files.values() if e["label"]]
    cusum = config.method == "cusum"
    everything = fit_real_scores(reals, period_s) if cusum else None
    real_alarms, real_alarmed, seconds = 0, 0, 0.0
    for i, track in enumerate(reals):
        held_out = fit_real_scores(reals[:i] + reals[i + 1 :], period_s) if cusum else None
        n = episodes(track, config, held_out)
        real_alarms, real_alarmed = real_alarms + n, real_alarmed + (n > 0)
        seconds += track[-1][0] - track[0][0] + hop_s
    flagged = sum(episodes(track, config, everything) > 0 for track in fakes)
    return {
        "real_alarmed": real_alarmed,
        "real_files": len(reals),
        "false_alarms_per_hour": round(real_alarms / (seconds / 3600.0), 1),
        "fakes_flagged": flagged,
        "fake_files": len(fakes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, required=True, help="the development set's speech folder (labels.csv)")
    parser.add_argument("--model", default="aasist=../shared/models/aasist/AASIST.pth")
    parser.add_argument("--scores", type=Path, help="keep the scored windows here (read back when it exists)")
    parser.add_argument("--write-baseline", type=Path, help="write the real-speech baseline fitted on every real file")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("alarm_voice_results.json"))
    args = parser.parse_args()
    voice = VoiceConfig()
    files = scored_windows(args.devset, args.model, args.scores, voice)
    period = voice.hop_s
    reals = [judged(e) for e in files.values() if not e["label"]]
    windows = [(e["label"], p) for e in files.values() for p in (q for _, _, q in e["windows"]) if p is not None]
    out: dict = {
        "files": len(files),
        "real_speech_hours": round(sum(t[-1][0] - t[0][0] + voice.hop_s for t in reals) / 3600, 4),
        "window_auc": round(roc_auc([y for y, _ in windows], [p for _, p in windows]) or 0.0, 3),
        "smoothing": {},
    }
    ema = voice.smoothing.model_copy(update={"method": "ema"})
    out["smoothing"]["ema, enter 0.7"] = alarms(files, ema, period, voice.hop_s)
    for rate in RATES:
        config = voice.smoothing.model_copy(update={"false_alarms_per_hour": rate})
        out["smoothing"][f"cusum, {rate:g}/h"] = alarms(files, config, period, voice.hop_s)
    for name, figures in out["smoothing"].items():
        print(
            f"{name}: {figures['real_alarmed']} of {figures['real_files']} real recordings alarmed "
            f"({figures['false_alarms_per_hour']}/h of real speech), {figures['fakes_flagged']} of "
            f"{figures['fake_files']} TTS / vocoder files flagged"
        )
    print(f"window AUC (fused) {out['window_auc']}, {out['real_speech_hours']} h of real speech")
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    if args.write_baseline is not None:
        real = fit_real_scores(reals, period)
        configs = [parse_audio_detector_spec(args.model)]
        fitted_on = (
            f"the development set's {len(reals)} real recordings (LJSpeech and VCTK ground truth from the "
            f"VITS and HiFi-GAN demo pages), {real.seconds:.0f} s of speech, a window every {period:g} s"
        )
        baseline = Baseline(
            tuple(sorted(c.type for c in configs)), voice.ensemble.fusion_method.value, {VOICE: real}, fitted_on
        )
        save_baseline(baseline, args.write_baseline)
        print(f"wrote {args.write_baseline}: {real.tracks} recordings, {real.seconds:.0f} s")


if __name__ == "__main__":
    main()
