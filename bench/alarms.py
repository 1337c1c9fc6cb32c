"""Alarms on real footage: AUC, false alarms per hour of real faces, share of fakes flagged and time
to flag a face swapped mid-shot, for the old smoothing (ema, enter 0.7) and for the cusum along its
curve, with BlazeFace and with MTCNN.

    python -m bench.alarm_scores --devset DEVSET/video --out SCORES   # the runtime over every video (slow)
    python -m bench.alarms --scores SCORES [--out bench/alarms_results.json]

The scores are each track's fused P(fake) at 10 Hz through the whole runtime (``bench.alarm_scores``);
here they are replayed through the judge's cadence (a calm track skimmed at 2 Hz) and the smoother
of each configuration, so the curve costs seconds. A face swapped mid-shot: the FaceForensics++
fakes are frame for frame their original's scene, so the original's track up to the cut and the
fake's after it is what a camera would show if the face were swapped at the cut (cut half way).

The cusum's baseline is fitted on real footage only, and never on the scene it is judged on: the
originals are split in five folds; each real video and each fake of an original is judged with the
baseline fitted on the other folds' originals (a site's own footage is its own, not these faces).

Figures: false alarms per hour = alarm episodes on real tracks / hours of real tracks; "real videos
alarmed" and "fakes flagged" count videos with any track labelled fake.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.evaluation.metrics import roc_auc
from pipeline.judging.cadence import Cadence, JudgeConfig
from pipeline.judging.evidence import AlarmRule, Baseline, alarm_rule, fit_real_scores, save_baseline
from pipeline.judging.fusion import logit
from pipeline.judging.quality import Quality, QualityConfig
from pipeline.judging.smoothing import SmoothingConfig, TrackSmoother

FOLDS = 5
SHIFTS = (2.0, 3.0, 4.0)
RATES = (0.03, 0.1, 0.3, 1.0, 3.0)
OLD = SmoothingConfig(method="ema", alpha=0.3, enter=0.7, leave=0.4, min_duration_s=0.5)


def scene(path: str) -> str:
    """The original a video shows: ``183.mp4`` and its fakes ``183_253.mp4``; actors' clips by name."""
    return Path(path).stem.split("_")[0] if "/original/" not in path else Path(path).stem


def original_of(fake: dict, originals: dict[str, dict]) -> dict | None:
    """The original whose scene a fake shows: named first or second, the same length."""
    a, _, b = Path(fake["path"]).stem.partition("_")
    for name in (a, b):
        original = originals.get(name)
        if original is not None and abs(original["seconds"] - fake["seconds"]) < 0.05:
            return original
    return None


def main_track(video: dict) -> list:
    tracks = list(video["tracks"].values())
    return max(tracks, key=len) if tracks else []


def replay(
    track: list,
    smoothing: SmoothingConfig,
    rule: AlarmRule | None,
    judge: JudgeConfig,
    quality: QualityConfig | None = None,
) -> list[tuple[float, str]]:
    """(stream second, label) of each score the cadence asks for, through the smoother; with
    ``quality`` (scores measured by ``bench.alarm_quality``), faces too poor to judge are left out."""
    cadence, smoother, last, out = Cadence(judge), TrackSmoother(smoothing, rule), None, []
    for t, p, _, box, *measured in track:
        box = np.asarray(box, dtype=float)
        if cadence.due(last, box, t) is None:
            continue
        if quality is not None and measured and measured[0] is not None and Quality(*measured[0]).reason(quality):
            out.append((t, "uncertain"))
            continue
        s = smoother.update(p, 0.0, t)
        last = cadence.scored(last, box, t, s.calm)
        out.append((t, s.label))
    return out


def episodes(labels: list[tuple[float, str]]) -> int:
    count, before = 0, "real"
    for _, label in labels:
        if label == "fake" and before != "fake":
            count += 1
        before = label if label != "uncertain" else before
    return count


def flag_after(labels: list[tuple[float, str]], cut: float) -> float | str:
    """Seconds from the cut to the first fake label after it; "before" if fake at the cut already; "never"."""
    before = [label for t, label in labels if t < cut]
    if before and before[-1] == "fake":
        return "before"
    return next((round(t - cut, 3) for t, label in labels if t >= cut and label == "fake"), "never")


def evaluate(
    data: dict,
    smoothing: SmoothingConfig,
    rules: dict[str, AlarmRule | None],
    judge: JudgeConfig,
    quality: QualityConfig | None = None,
) -> dict:
    """``rules``: per scene, the alarm rule whose baseline never saw it (None for ema)."""
    videos = data["videos"]
    originals = {Path(v["path"]).stem: v for v in videos.values() if v["label"] == "real"}
    real_alarms, real_s, real_videos_alarmed, real_scores = 0, 0.0, 0, 0
    for v in videos.values():
        if v["label"] != "real":
            continue
        alarmed = 0
        for track in v["tracks"].values():
            real_s += track[-1][0] - track[0][0] + 0.1
            labels = replay(track, smoothing, rules.get(scene(v["path"])), judge, quality)
            real_scores += len(labels)
            alarmed += episodes(labels)
        real_alarms += alarmed
        real_videos_alarmed += alarmed > 0
    fakes_flagged, fakes, flags = 0, 0, []
    for v in videos.values():
        if v["label"] != "fake":
            continue
        fakes += 1
        rule = rules.get(scene(v["path"]))
        fakes_flagged += any(episodes(replay(track, smoothing, rule, judge)) for track in v["tracks"].values())
        original = original_of(v, originals)
        if original is None:
            continue
        cut = round(original["seconds"] / 2, 1)
        before = [s for s in main_track(original) if s[0] < cut]
        after = [s for s in main_track(v) if s[0] >= cut]
        if before and after:
            flags.append(
                {"video": v["path"], "flag_s": flag_after(replay(before + after, smoothing, rule, judge), cut)}
            )
    timed = sorted(f["flag_s"] for f in flags if isinstance(f["flag_s"], float))
    hours = real_s / 3600.0
    return {
        "false_alarms_per_hour": round(real_alarms / hours, 2) if hours else None,
        "real_alarms": real_alarms,
        "real_hours": round(hours, 4),
        "real_videos_alarmed": real_videos_alarmed,
        "real_videos": sum(v["label"] == "real" for v in videos.values()),
        # scores asked for on real faces against every track at the full rate: what skimming saves
        "real_score_share": round(real_scores / (real_s * (judge.max_rate_hz or 30.0)), 3) if real_s else None,
        "fakes_flagged": fakes_flagged,
        "fakes": fakes,
        "splices": len(flags),
        "splices_flagged": len(timed),
        "splices_within_1s": sum(f <= 1.0 for f in timed),
        "splices_flagged_before_cut": sum(f["flag_s"] == "before" for f in flags),
        "flag_s_median": round(float(np.median(timed)), 3) if timed else None,
        "flag_s_worst": round(max(timed), 3) if timed else None,
        "flag_s_by_method": _by_method(flags),
    }


def _by_method(flags: list[dict]) -> dict:
    out: dict[str, list] = {}
    for f in flags:
        out.setdefault(f["video"].split("/manipulate/")[-1].split("/")[0], []).append(f["flag_s"])
    return out


def folds(data: dict) -> dict[str, int]:
    """Each scene's fold: originals sorted by name, dealt round robin."""
    names = sorted({scene(v["path"]) for v in data["videos"].values() if v["label"] == "real"})
    return {name: i % FOLDS for i, name in enumerate(names)}


def rules_for(data: dict, shift: float, rate: float, track_s: float) -> dict[str, AlarmRule]:
    fold_of = folds(data)
    reals = [v for v in data["videos"].values() if v["label"] == "real"]
    rules = {}
    for fold in range(FOLDS):
        tracks = [
            [(t, p) for t, p, *_ in track]
            for v in reals
            if fold_of[scene(v["path"])] != fold
            for track in v["tracks"].values()
        ]
        real = fit_real_scores(tracks, 1.0 / data["meta"]["rate_hz"])
        rule = alarm_rule(real, shift, rate, track_s)
        for name, f in fold_of.items():
            if f == fold:
                rules[name] = rule
    return rules


def aucs(data: dict) -> dict:
    rows = [(v["label"] == "fake", s) for v in data["videos"].values() for track in v["tracks"].values() for s in track]
    labels = [int(fake) for fake, _ in rows]
    out = {"fused": roc_auc(labels, [s[1] for _, s in rows])}
    for name in sorted(rows[0][1][2]) if rows else []:
        out[name] = roc_auc(labels, [s[2][name] for _, s in rows])
    return {k: round(v, 3) if v is not None else None for k, v in out.items()}


def write_baseline(scores: Path, out: Path) -> None:
    """What ``dfstream calibrate --real-only`` fits, from the same runtime scores of the originals."""
    finders, models, reals = {}, {}, 0
    for path in sorted(scores.glob("*.json")):
        data = json.loads(path.read_text())
        originals = [v for v in data["videos"].values() if v["label"] == "real"]
        reals = len(originals)
        tracks = [[(t, p) for t, p, *_ in track] for v in originals for track in v["tracks"].values()]
        finders[data["meta"]["finder"]] = fit_real_scores(tracks, 1.0 / data["meta"]["rate_hz"])
        per_model: dict[str, list[float]] = {}
        for v in originals:
            for track in v["tracks"].values():
                for _, _, scored, *_ in track:
                    for name, p in scored.items():
                        per_model.setdefault(name, []).append(p)
        models[data["meta"]["finder"]] = {
            name: dict(
                zip(
                    ("q25", "median", "q75"),
                    (round(float(q), 4) for q in np.quantile(logit(values), [0.25, 0.5, 0.75])),
                )
            )
            for name, values in sorted(per_model.items())
        }
    baseline = Baseline(
        ("meso4", "mesoinception4"),
        "weighted_average",
        finders,
        f"the development set's {reals} FaceForensics++ c40 originals (10 YouTube, 10 DFD actors), through the "
        "runtime with both MesoNets (Meso4_DF, MesoInception_DF) fused by weighted average, 10 scores a second",
        models,
    )
    save_baseline(baseline, out)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.tracks} tracks, {v.seconds:.0f} s" for k, v in finders.items()))


GATES = {
    "none": QualityConfig(enabled=False),
    "defaults": QualityConfig(),
    "size only (40 px)": QualityConfig(min_sharpness=0, min_brightness=0, max_brightness=255),
    "sharpness only (20)": QualityConfig(min_face_px=0, min_brightness=0, max_brightness=255),
    "sharpness only (40)": QualityConfig(min_face_px=0, min_sharpness=40, min_brightness=0, max_brightness=255),
    "brightness only (35-225)": QualityConfig(min_face_px=0, min_sharpness=0),
    "size 64 px": QualityConfig(min_face_px=64, min_sharpness=0, min_brightness=0, max_brightness=255),
}


def quality_gates(scores: Path, out: Path, track_s: float) -> None:
    """The defaults (cusum, shift 4, 0.1/h) and the old ema, with each quality gate."""
    judge, results = JudgeConfig(), {}
    for path in sorted(scores.glob("*.json")):
        data = json.loads(path.read_text())
        finder = data["meta"]["finder"]
        measured = [
            (v["label"], s[4]) for v in data["videos"].values() for t in v["tracks"].values() for s in t if len(s) > 4
        ]
        default = SmoothingConfig(track_s=track_s)
        rules = rules_for(data, default.shift, default.false_alarms_per_hour, track_s)
        for name, gate in GATES.items():
            unjudged = {
                label: float(
                    np.mean(
                        [q is not None and Quality(*q).reason(gate) is not None for lab, q in measured if lab == label]
                    )
                )
                for label in ("real", "fake")
            }
            entry = {
                "unjudged_share": {k: round(v, 3) for k, v in unjudged.items()},
                "new": evaluate(data, default, rules, judge, gate),
                "old": evaluate(data, OLD, {}, judge, gate),
            }
            results.setdefault(finder, {})[name] = entry
            brief = {
                k: {
                    m: entry[k][m]
                    for m in ("real_alarms", "real_videos_alarmed", "fakes_flagged", "splices_flagged", "flag_s_median")
                }
                for k in ("new", "old")
            }
            print(f"{finder} {name}: unjudged {entry['unjudged_share']} {json.dumps(brief)}", flush=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, required=True, help="bench.alarm_scores' folder (<finder>.json)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("alarms_results.json"))
    parser.add_argument("--track-s", type=float, default=60.0, help="the real track life the rate is stated for")
    parser.add_argument(
        "--write-baseline",
        type=Path,
        help="also fit every original of every finder into this baseline file (the packaged one: "
        "pipeline/judging/baselines/mesonet.json)",
    )
    parser.add_argument(
        "--quality",
        action="store_true",
        help="the scores carry bench.alarm_quality's measures: replay the defaults with each quality gate",
    )
    args = parser.parse_args()
    if args.quality:
        quality_gates(args.scores, args.out.with_name("alarm_quality_results.json"), args.track_s)
        return
    if args.write_baseline is not None:
        write_baseline(args.scores, args.write_baseline)
    judge = JudgeConfig()
    results: dict = {}
    for path in sorted(args.scores.glob("*.json")):
        data = json.loads(path.read_text())
        finder = data["meta"]["finder"]
        entry = results[finder] = {"auc_frame": aucs(data), "old": evaluate(data, OLD, {}, judge), "cusum": []}
        print(f"{finder}: AUC {entry['auc_frame']}")
        print(
            f"  old (ema, enter 0.7): {json.dumps({k: v for k, v in entry['old'].items() if k != 'flag_s_by_method'})}"
        )
        for shift in SHIFTS:
            for rate in RATES:
                smoothing = SmoothingConfig(shift=shift, false_alarms_per_hour=rate, track_s=args.track_s)
                point = evaluate(data, smoothing, rules_for(data, shift, rate, args.track_s), judge)
                entry["cusum"].append({"shift": shift, "target_per_hour": rate, **point})
                brief = {k: v for k, v in point.items() if k != "flag_s_by_method"}
                print(f"  cusum shift {shift} at {rate}/h: {json.dumps(brief)}", flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
