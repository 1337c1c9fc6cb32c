"""The loop a user would write without dfstream: OpenCV reads each frame, MTCNN runs on every
frame, every face goes through every detector one at a time, the scores are averaged."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.models.detectors import TorchDetector


def naive_fps(clip: Path, mtcnn, detectors: list[TorchDetector], max_frames: int | None = None) -> tuple[float, int]:
    """(frames per second, faces judged)."""
    capture = cv2.VideoCapture(str(clip))
    frames = faces = 0
    start = time.perf_counter()
    while max_frames is None or frames < max_frames:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        boxes, _ = mtcnn.detect(rgb)
        frames += 1
        if boxes is None:
            continue
        for box in np.asarray(boxes, dtype=np.float32):
            scores = []
            for detector in detectors:
                crop = detector.preprocessor.crop(rgb, tuple(box))
                scores.append(detector.predict(crop).fake_probability)
            _ = float(np.mean(scores))
            faces += 1
    capture.release()
    return frames / (time.perf_counter() - start), faces
