"""The same faces through BlazeFace and MTCNN: do the detectors see the same crop, and give the
same P(fake)? From ``bench.alarm_scores``' two files (each video's tracks scored at 10 Hz on the
stream clock, so a frame scored with both finders is a pair).

    python -m bench.alarm_crops --scores SCORES [--fit DEVSET/video]

Prints, over every frame both finders scored one overlapping face on (IoU >= 0.3): the median |ΔP|
of each detector and fused, its signed mean (BlazeFace minus MTCNN), and BlazeFace's face box
against MTCNN's (width and height ratio, centre offset in MTCNN's width and height), on all scenes
and on each half of them (scenes dealt alternately).

``--fit``: the face box's constants (``pipeline/models/faces/landmarks.py``: ``BOX``,
``FINDER_SCALE``) from the finders' own boxes and landmarks on every 12th frame of every video
(the largest face both found), with how far the two finders' landmarks are apart and how far the
faces turn (``turn``'s quantiles: what ``quality.max_turn`` is set against).
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


def fit(folder: Path, every: int = 12) -> dict:
    """The face box's constants from both finders' raw output on the development set's frames."""
    import csv

    import av
    import torch
    from facenet_pytorch import MTCNN

    from pipeline.models.faces.blazeface import BlazeFace
    from pipeline.models.faces.finder import downscale
    from pipeline.models.faces.landmarks import frame, turn

    torch.set_num_threads(2)
    blazeface, mtcnn = BlazeFace(threads=2), MTCNN(keep_all=True, min_face_size=40, device="cpu")
    faces = []  # (BlazeFace box, its landmarks, MTCNN box, its landmarks), full-frame pixels
    with open(folder / "labels.csv", newline="") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    for path in paths:
        with av.open(str(folder / path)) as container:
            for k, picture in enumerate(container.decode(video=0)):
                if k % every:
                    continue
                small, factor = downscale(picture.to_ndarray(format="rgb24"), 640)
                b_boxes, _, b_points = blazeface.detect(small, 0.5)
                m_boxes, _, m_five = mtcnn.detect(small, landmarks=True)
                if not len(b_boxes) or m_boxes is None:
                    continue
                m_boxes = np.asarray(m_boxes, np.float32).reshape(-1, 4)
                m_five = np.asarray(m_five, np.float32).reshape(-1, 5, 2)
                i, j = (int(np.argmax((x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1]))) for x in (b_boxes, m_boxes))
                m_points = np.concatenate([m_five[j, :3], m_five[j, 3:].mean(0, keepdims=True)])
                if m_points[0, 0] > m_points[1, 0]:
                    m_points[:2] = m_points[1::-1]
                b_box, m_box = b_boxes[i] / factor, m_boxes[j] / factor
                inter = np.clip(np.minimum(b_box[2:], m_box[2:]) - np.maximum(b_box[:2], m_box[:2]), 0, None).prod()
                union = np.prod(b_box[2:] - b_box[:2]) + np.prod(m_box[2:] - m_box[:2]) - inter
                if inter / union >= 0.3:
                    faces.append((b_box, b_points[i] / factor, m_box, m_points / factor))
    b_box, b_points, m_box, m_points = (np.array([f[k] for f in faces]) for k in range(4))
    eyes, across, down, scale = frame(m_points)
    centre = (m_box[:, :2] + m_box[:, 2:]) / 2 - eyes
    box = {
        "across": np.median((centre * across).sum(1) / scale),
        "down": np.median((centre * down).sum(1) / scale),
        "width": np.median((m_box[:, 2] - m_box[:, 0]) / scale),
        "height": np.median((m_box[:, 3] - m_box[:, 1]) / scale),
    }
    finder_scale = {}
    for name, boxes, points in (("blazeface", b_box, b_points), ("mtcnn", m_box, m_points)):
        own = frame(points)[3]
        finder_scale[name] = [
            round(float(np.median(own / (boxes[:, 2] - boxes[:, 0]))), 3),
            round(float(np.median(own / (boxes[:, 3] - boxes[:, 1]))), 3),
        ]
    width = m_box[:, 2] - m_box[:, 0]
    apart = np.abs(b_points - m_points) / width[:, None, None]
    return {
        "faces": len(faces),
        "BOX": {k: round(float(v), 3) for k, v in box.items()},
        "FINDER_SCALE": finder_scale,
        "landmarks_apart_median_of_width": dict(
            zip(
                ("eye_left", "eye_right", "nose", "mouth"),
                np.median(apart.max(axis=2), axis=0).astype(float).round(4).tolist(),
            )
        ),
        "turn_quantiles_50_90_99": {
            name: np.quantile(turn(points), [0.5, 0.9, 0.99]).astype(float).round(3).tolist()
            for name, points in (("blazeface", b_points), ("mtcnn", m_points))
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("alarm_crops_results.json"))
    parser.add_argument("--fit", type=Path, help="the development set's video folder: fit the face box too")
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
    if args.fit is not None:
        result["face_box_fit"] = fit(args.fit)
    for key, value in result.items():
        print(key, json.dumps(value))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
