"""The same faces through BlazeFace and MTCNN: do the detectors see the same crop, and give the
same P(fake)? From ``bench.alarm_scores``' two files (each video's tracks scored at 10 Hz on the
stream clock, so a frame scored with both finders is a pair).

    python -m bench.alarm_crops --scores SCORES

Prints, over every frame both finders scored one overlapping face on (IoU >= 0.3): the median |ΔP|
of each detector and fused, its signed mean (BlazeFace minus MTCNN), and BlazeFace's mapped box
against MTCNN's (width and height ratio, centre offset in MTCNN's width and height), on all scenes
and on each half of them (scenes dealt alternately): what ``pipeline/models/blazeface.py``'s
``TO_MTCNN`` is fitted to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def pairs(blaze: dict, mtcnn: dict) -> dict[str, list[tuple]]:
    """Per scene: (width ratio, height ratio, x offset, y offset, {model: P_b - P_m}) of each pair."""
    out: dict[str, list[tuple]] = {}
    for path, video in blaze["videos"].items():
        other = mtcnn["videos"].get(path)
        if other is None:
            continue
        scene = Path(path).stem.split("_")[0]
        by_b = {round(s[0], 2): s for t in video["tracks"].values() for s in t}
        by_m = {round(s[0], 2): s for t in other["tracks"].values() for s in t}
        for t in sorted(set(by_b) & set(by_m)):
            sb, sm = by_b[t], by_m[t]
            b, m = np.asarray(sb[3]), np.asarray(sm[3])
            wm, hm = m[2] - m[0], m[3] - m[1]
            inter = max(0, min(b[2], m[2]) - max(b[0], m[0])) * max(0, min(b[3], m[3]) - max(b[1], m[1]))
            union = (b[2] - b[0]) * (b[3] - b[1]) + wm * hm - inter
            if wm <= 0 or hm <= 0 or inter / union < 0.3:
                continue
            delta = {name: sb[2][name] - sm[2][name] for name in sb[2]} | {"fused": sb[1] - sm[1]}
            geometry = (
                (b[2] - b[0]) / wm,
                (b[3] - b[1]) / hm,
                ((b[0] + b[2]) - (m[0] + m[2])) / 2 / wm,
                ((b[1] + b[3]) - (m[1] + m[3])) / 2 / hm,
            )
            out.setdefault(scene, []).append((*geometry, delta))
    return out


def summary(rows: list[tuple]) -> dict:
    geometry = np.array([r[:4] for r in rows])
    names = sorted(rows[0][4])
    return {
        "pairs": len(rows),
        "median_abs_dp": {n: round(float(np.median([abs(r[4][n]) for r in rows])), 4) for n in names},
        "mean_dp": {n: round(float(np.mean([r[4][n] for r in rows])), 4) for n in names},
        "box": dict(zip(("width_ratio", "height_ratio", "dx", "dy"), np.median(geometry, axis=0).round(4).tolist())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("alarm_crops_results.json"))
    args = parser.parse_args()
    blaze = json.loads((args.scores / "blazeface.json").read_text())
    mtcnn = json.loads((args.scores / "mtcnn.json").read_text())
    scenes = pairs(blaze, mtcnn)
    names = sorted(scenes)
    result = {
        "all": summary([r for n in names for r in scenes[n]]),
        "half_a": summary([r for n in names[::2] for r in scenes[n]]),
        "half_b": summary([r for n in names[1::2] for r in scenes[n]]),
    }
    for key, value in result.items():
        print(key, json.dumps(value))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
