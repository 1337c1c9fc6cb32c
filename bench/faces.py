"""BlazeFace against MTCNN on the same frames: time per frame, agreement (boxes matched at
IoU >= 0.5 on the face boxes both draw from their landmarks), recall by face size and speed. (The
crops' agreement on real faces, and the face box's fit: ``bench.alarm_crops``.)

    python -m bench.faces [--scenes 40]

Frames: the sample clip (the astronaut sliding), and synthetic scenes: the astronaut's head pasted
at face widths from 24 to 140 px onto a 640x360 background at random places, still or smeared by a
horizontal motion blur of 0, 8 or 16 px (a face moving that far during the exposure). The true box
is the pasted face's MTCNN box. Only one face identity is available offline here: say so.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import torch

from pipeline.models.detections import iou_matrix
from pipeline.models.faces.finder import FaceDetector, FacesConfig
from stream.sample import sample_frames

SIZES = [24, 32, 48, 64, 96, 140]
BLURS = [0, 8, 16]


def scenes(count: int, seed: int = 0):
    """(frame, true box, face width, blur) for each size x blur, ``count`` placements each."""
    from skimage.data import astronaut, coffee

    photo, background = astronaut(), cv2.resize(coffee(), (640, 360))
    background = cv2.GaussianBlur(background, (0, 0), 6)
    face = np.array([181, 62, 268, 172], np.float32)  # MTCNN's box on the photo
    head = photo[30:200, 150:300]  # the head with some context
    origin = np.array([150, 30, 150, 30], np.float32)
    rng = np.random.default_rng(seed)
    for size in SIZES:
        scale = size / (face[2] - face[0])
        small = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for blur in BLURS:
            for _ in range(count):
                frame = background.copy()
                h, w = small.shape[:2]
                x, y = int(rng.integers(0, 640 - w)), int(rng.integers(0, 360 - h))
                frame[y : y + h, x : x + w] = small
                if blur:
                    kernel = np.zeros((1, blur), np.float32) + 1.0 / blur
                    frame = cv2.filter2D(frame, -1, kernel)
                yield frame, (face - origin) * scale + [x, y, x, y], size, blur


def found(boxes: np.ndarray, truth: np.ndarray) -> bool:
    return bool(len(boxes)) and float(iou_matrix(np.asarray(boxes).reshape(-1, 4), truth[None]).max()) >= 0.5


def measure(count: int) -> dict:
    torch.set_num_threads(1)
    mtcnn = FaceDetector(FacesConfig(device="cpu", model="mtcnn", min_face_size=20))
    blazeface = FaceDetector(FacesConfig(device="cpu", model="blazeface"))
    clip = list(sample_frames(90))
    frames = [(f, None, None, None) for f in clip] + list(scenes(count))
    # recall by size and blur, agreement with MTCNN, time
    recall: dict = {}
    agree = total = 0
    t_m = t_b = 0.0
    for frame, truth, size, blur in frames:
        start = time.perf_counter()
        m = mtcnn.detect([frame])[0].xyxy
        t_m += time.perf_counter() - start
        start = time.perf_counter()
        b = blazeface.detect([frame])[0].xyxy
        t_b += time.perf_counter() - start
        if len(m):
            total += len(m)
            agree += int((iou_matrix(m, b).max(axis=1) >= 0.5).sum()) if len(b) else 0
        if truth is not None:
            row = recall.setdefault(str(size), {}).setdefault(str(blur), [0, 0, 0])
            row[0] += found(m, truth)
            row[1] += found(b, truth)
            row[2] += 1
    return {
        "frames": len(frames),
        "ms_per_frame": {"mtcnn": round(1000 * t_m / len(frames), 2), "blazeface": round(1000 * t_b / len(frames), 2)},
        "agreement_with_mtcnn": round(agree / max(total, 1), 3),
        "recall_by_face_px_and_blur": {
            s: {b: {"mtcnn": r[0] / r[2], "blazeface": r[1] / r[2]} for b, r in row.items()}
            for s, row in recall.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faces")
    parser.add_argument("--scenes", type=int, default=10, help="placements per size and blur")
    print(json.dumps(measure(parser.parse_args().scenes), indent=1))


if __name__ == "__main__":
    main()
