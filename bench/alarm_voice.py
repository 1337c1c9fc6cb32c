"""The voice's alarms on real recordings: false alarms per hour of real speech and the share of TTS /
vocoder files flagged, with the voice's smoothing (``voice.smoothing``, ema) and its incidents.

    python -m bench.alarm_voice --devset DEVSET/speech [--model aasist=../shared/models/aasist/AASIST.pth]

Each file is judged as a stream's sound is (``pipeline.evaluation.voice``: the same decoder,
speech gate, windows every ``voice.hop_s``, the voice ensemble), then its judged windows go through
the voice smoother in order; a file "alarms" when any window is labelled fake. Hours of real speech:
the real files' judged windows' seconds of sound (``hop_s`` each, the first its own length).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.evaluation.datasets import load_dataset
from pipeline.evaluation.scoring import parse_audio_detector_spec
from pipeline.evaluation.voice import score_voice_items
from pipeline.judging.ensemble import build_ensemble
from pipeline.judging.listening import VoiceConfig
from pipeline.judging.smoothing import TrackSmoother
from pipeline.models.audio.loading import load_voice_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, required=True, help="the development set's speech folder (labels.csv)")
    parser.add_argument("--model", default="aasist=../shared/models/aasist/AASIST.pth")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("alarm_voice_results.json"))
    args = parser.parse_args()
    items = load_dataset(args.devset / "labels.csv")
    configs = [parse_audio_detector_spec(args.model)]
    voice = VoiceConfig()
    scores = score_voice_items(items, load_voice_models(configs), build_ensemble(voice.ensemble, configs, None), voice)
    real_s, out = 0.0, {"real": {"files": 0, "alarmed": 0, "episodes": 0}, "fake": {"files": 0, "alarmed": 0}}
    for path, windows in scores.windows.items():
        kind = "fake" if scores.labels[path] else "real"
        smoother, before, episodes = TrackSmoother(voice.smoothing), "real", 0
        for window in windows:
            if not window.judged:
                continue  # a pause in the speech leaves the smoothing where it is
            label = smoother.update(window.spoof_probability, 0.0, window.end).label
            episodes += label == "fake" and before != "fake"
            before = label if label != "uncertain" else before
            if kind == "real":
                real_s += window.end - window.start if window is windows[0] else voice.hop_s
        out[kind]["files"] += 1
        out[kind]["alarmed"] += episodes > 0
        if kind == "real":
            out[kind]["episodes"] += episodes
    out["real"]["hours"] = round(real_s / 3600, 4)
    out["real"]["false_alarms_per_hour"] = round(out["real"]["episodes"] / (real_s / 3600), 1) if real_s else None
    out["skipped"] = len(scores.skipped)
    print(json.dumps(out))
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
