"""Time to flag a fake onset through the whole path: decode, the face finder, tracking, both
MesoNets, fusion and smoothing, with BlazeFace (the default) and with MTCNN.

    python -m bench.onset --weights ../shared/models/mesonet [--seconds 24 --onset 14]

The clip is the sample photograph drifting across the frame (``make_sample_clip``); from
``--onset`` seconds on, its face is blended toward a retouched version of itself (a Gaussian blur
of ``sigma`` px, mixed in at ``alpha`` under a feathered ellipse, as a face swap's blend is): the
face a detector sees changes in the middle of a continuous shot, and the face finder has to find it
and cut the crop as it would any other. Several strengths, two paces of movement and two frame
sizes; each configuration sees the same clips. Read as fast as it decodes, so the judge rate and
the smoothing run on the clip's clock: the figures are in stream seconds, the same as live minus
the processing latency.

Per configuration and clip: ``flag_s`` (onset → the first ``fake`` verdict; None: never flagged),
``false_alarm_s`` (stream seconds labelled fake before the onset), and the mean fused P(fake) of
the scored verdicts over the 5 s before the onset and from 1 s after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bench.rtsp_latency import Collect, new_runtime
from bench.stages import weights_argument
from dfstream.config import parse_config
from stream import make_sample_clip

# where the face is in the sample photograph, as shares of its side (MTCNN's box on it, padded)
FACE = (0.33, 0.09, 0.54, 0.37)
FINDERS = {"blazeface": {"model": "blazeface"}, "mtcnn": {"model": "mtcnn"}}
STRENGTHS = ((1.0, 0.6), (1.5, 0.8), (2.5, 1.0))  # (sigma px at 480 px, alpha): mild to plain


def retouch(onset_frame: int, sigma: float, alpha: float):
    """A PhotoEdit: from ``onset_frame`` on, the face blended toward its blurred self."""
    cache: dict[int, np.ndarray] = {}

    def edit(index: int, photo: np.ndarray) -> np.ndarray:
        if index < onset_frame:
            return photo
        side = photo.shape[0]
        if side not in cache:
            x1, y1, x2, y2 = (round(v * side) for v in FACE)
            mask = np.zeros(photo.shape[:2], np.float32)
            cv2.ellipse(mask, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, side / 160))[..., None] * alpha
            blurred = cv2.GaussianBlur(photo, (0, 0), sigma * side / 480).astype(np.float32)
            cache[side] = (photo * (1 - mask) + blurred * mask).round().astype(np.uint8)
        return cache[side]

    return edit


def judge_clip(clip: Path, onset_s: float, faces: dict, weights: Path, extra: dict | None = None) -> dict:
    config = parse_config(
        {
            "streams": [{"id": "clip", "url": str(clip)}],
            "faces": faces,
            "detectors": [
                {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")},
                {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5")},
            ],
            **(extra or {}),
        }
    )
    sink = Collect()
    runtime = new_runtime(config, sink)
    asyncio.run(runtime.run())
    verdicts = [v for v in sink.verdicts if v.frame_pts is not None]
    flagged = [v.frame_pts for v in verdicts if v.label == "fake" and v.frame_pts >= onset_s]
    before = [v for v in verdicts if v.frame_pts < onset_s]
    frame_s = float(np.median(np.diff(sorted({v.frame_pts for v in verdicts})))) if len(verdicts) > 1 else 0.0
    false_alarm_s = len({v.frame_pts for v in before if v.label == "fake"}) * frame_s
    scored = [v for v in verdicts if v.scored]
    p_before = [v.raw_probability for v in scored if onset_s - 5 <= v.frame_pts < onset_s]
    p_after = [v.raw_probability for v in scored if v.frame_pts >= onset_s + 1]
    return {
        "flag_s": round(flagged[0] - onset_s, 3) if flagged else None,
        "false_alarm_s": round(false_alarm_s, 2),
        "p_before": round(float(np.mean(p_before)), 3) if p_before else None,
        "p_after": round(float(np.mean(p_after)), 3) if p_after else None,
        "tracks": len({v.track_id for v in verdicts}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--seconds", type=float, default=24.0)
    parser.add_argument("--onset", type=float, default=14.0)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in FINDERS}
    with tempfile.TemporaryDirectory() as tmp:
        for height in (480, 360):
            for sweep_s in (20.0, 6.0):
                for sigma, alpha in STRENGTHS:
                    clip = Path(tmp) / f"onset_{height}_{sweep_s}_{sigma}_{alpha}.mp4"
                    edit = retouch(round(args.onset * args.fps), sigma, alpha)
                    make_sample_clip(clip, args.seconds, args.fps, 640, height, sweep_s, edit)
                    for name, faces in FINDERS.items():
                        row = {"height": height, "sweep_s": sweep_s, "sigma": sigma, "alpha": alpha}
                        row |= judge_clip(clip, args.onset, faces, args.weights)
                        results[name].append(row)
                        print(json.dumps({"finder": name, **row}), flush=True)
    summary = {}
    for name, rows in results.items():
        flags = [r["flag_s"] for r in rows if r["flag_s"] is not None]
        summary[name] = {
            "clips": len(rows),
            "flagged": len(flags),
            "flag_s_mean": round(float(np.mean(flags)), 3) if flags else None,
            "flag_s_max": round(max(flags), 3) if flags else None,
            "false_alarm_s": round(sum(r["false_alarm_s"] for r in rows), 2),
            "p_before_mean": round(float(np.mean([r["p_before"] for r in rows if r["p_before"] is not None])), 3),
            "p_after_mean": round(float(np.mean([r["p_after"] for r in rows if r["p_after"] is not None])), 3),
        }
    paired = [
        b["flag_s"] - m["flag_s"]
        for b, m in zip(results["blazeface"], results["mtcnn"])
        if b["flag_s"] is not None and m["flag_s"] is not None
    ]
    summary["blazeface_minus_mtcnn_flag_s"] = {
        "mean": round(float(np.mean(paired)), 3) if paired else None,
        "max": round(max(paired), 3) if paired else None,
    }
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
