"""The face box drawn from landmarks, the turn measure and the aligned crop
(``pipeline/models/faces/landmarks.py``), by hand."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.models.faces.landmarks import BOX, FINDER_SCALE, TEMPLATE, align_matrix, face_box, turn
from pipeline.models.preprocessing import ALIGNED_SIDE, PreprocessingConfig, UnifiedPreprocessor

# eyes 10 px apart on a level line, the nose tip below their midpoint, the mouth 12 px below it
FRONTAL = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 6.0], [5.0, 12.0]]])


def test_a_level_face_box_by_hand():
    # landmarks' scale: max(2 x 10, 1.8 x 12) = 21.6; a BlazeFace box of 27.8 x 27.8 px scales to
    # 0.777 x 27.8 = 21.6 too, so the frame's scale is 21.6
    side = 21.6 / FINDER_SCALE["blazeface"][0]
    box = face_box(FRONTAL, np.array([[0.0, 0.0, side, side]]), "blazeface")[0]
    cx, cy = 5 + BOX["across"] * 21.6, 0 + BOX["down"] * 21.6
    w, h = BOX["width"] * 21.6, BOX["height"] * 21.6
    assert box == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1e-3)


def test_the_box_is_the_mean_of_the_two_scales_and_follows_the_landmarks():
    small = face_box(FRONTAL, np.array([[0.0, 0.0, 0.0, 0.0]]), "mtcnn")[0]
    assert small[2] - small[0] == pytest.approx(BOX["width"] * 21.6 / 2, abs=1e-3)  # half: the box gave 0
    moved = face_box(FRONTAL + [100.0, 50.0], np.array([[0.0, 0.0, 0.0, 0.0]]), "mtcnn")[0]
    assert moved == pytest.approx(small + [100, 50, 100, 50], abs=1e-3)


def test_a_rolled_face_keeps_its_size():
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = FRONTAL @ rotation.T
    upright = face_box(FRONTAL, np.zeros((1, 4)), "mtcnn")[0]
    box = face_box(rolled, np.zeros((1, 4)), "mtcnn")[0]
    assert box[2] - box[0] == pytest.approx(upright[2] - upright[0], rel=1e-4)


def test_turn_is_the_nose_off_the_midline_in_eye_distances():
    assert turn(FRONTAL)[0] == pytest.approx(0.0, abs=1e-9)
    turned = FRONTAL.copy()
    turned[0, 2] = [8.0, 6.0]  # the nose 3 px off the eyes-mouth line, eyes 10 px apart
    assert turn(turned)[0] == pytest.approx(0.3)
    profile = turned.copy()
    profile[0, 1] = [2.0, 0.0]  # the far eye behind the nose: eyes 2 px apart
    assert turn(profile)[0] > 1.0
    assert np.isnan(turn(np.full((1, 4, 2), np.nan))[0])


def _similar(points: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    angle = np.radians(angle_deg)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T + shift


def test_the_aligned_crop_puts_the_landmarks_on_deepfakebenchs_template():
    """Landmarks that are the template turned 25 degrees, scaled 3x and moved land exactly on it (a
    similarity, fitted in least squares); the margin shrinks the face into the crop's middle."""
    landmarks = _similar(TEMPLATE * 112, 25.0, 3.0, (140.0, 60.0))
    matrix = align_matrix(landmarks, 256, 0.15)
    placed = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert placed == pytest.approx((TEMPLATE + 0.15) / 1.3 * 256, abs=1e-6)
    assert np.linalg.det(matrix[:, :2]) > 0  # turned and scaled, never mirrored
    # the eyes level and 0.315 of the template apart, whatever the face's own size and roll
    eyes = placed[1] - placed[0]
    assert abs(eyes[1]) < 0.5 and eyes[0] == pytest.approx((73.5318 - 38.2946) / 112 / 1.3 * 256, abs=0.01)


def test_a_detector_trained_on_aligned_faces_sees_the_same_crop_of_a_rolled_face():
    """A picture turned 30 degrees gives the same aligned crop as upright (to the resampling's
    error), where the box crop of the same face holds the turned picture; a face without landmarks
    (NaN) gets the box crop; a profile that does not align ignores them."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, (400, 400, 3)), (0, 0), 3)
    image = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # smooth, full contrast
    upright = _similar(TEMPLATE * 112, 0.0, 1.5, (116.0, 116.0))
    turn_about = cv2.getRotationMatrix2D((200.0, 200.0), -30.0, 1.0)  # 30 degrees clockwise on screen
    rolled_image = cv2.warpAffine(image, turn_about, (400, 400))
    rolled = upright @ turn_about[:, :2].T + turn_about[:, 2]
    box = (150.0, 150.0, 250.0, 250.0)
    aligned = UnifiedPreprocessor(PreprocessingConfig(face_crop_margin=0.15, face_crop_align=True))
    a, b = aligned.crop(image, box, upright), aligned.crop(rolled_image, box, rolled)
    assert a.shape == b.shape == (ALIGNED_SIDE, ALIGNED_SIDE, 3)
    middle = (slice(64, 192), slice(64, 192))
    same = np.abs(a[middle].astype(int) - b[middle].astype(int)).mean()
    boxed = UnifiedPreprocessor(PreprocessingConfig(face_crop_margin=0.15))
    c, d = boxed.crop(image, box, upright), boxed.crop(rolled_image, box, rolled)
    turned = np.abs(c.astype(int) - d.astype(int)).mean()  # the box crop holds the turn
    assert same < 3 and turned > 5 * same, (same, turned)
    unknown = np.full((4, 2), np.nan)
    assert aligned.crop(image, box, unknown).shape == c.shape and (aligned.crop(image, box, unknown) == c).all()


def test_each_detector_states_its_crop_and_only_an_aligned_one_is_given_the_landmarks():
    from pipeline import BaseDetector, DetectionResult, ModelInfo
    from pipeline.models.detectors import (
        CLIP_PREPROCESSING,
        DEEPFAKEBENCH_PREPROCESSING,
        EFFORT_PREPROCESSING,
        MESONET_PREPROCESSING,
    )
    from pipeline.models.detectors.clip.gend import GEND_PREPROCESSING

    # trained on DeepfakeBench's aligned faces; MesoNet (its authors' crops) and UnivFD (whole images) not
    assert DEEPFAKEBENCH_PREPROCESSING.face_crop_align and EFFORT_PREPROCESSING.face_crop_align
    assert GEND_PREPROCESSING.face_crop_align
    assert not MESONET_PREPROCESSING.face_crop_align and not CLIP_PREPROCESSING.face_crop_align

    class Boxes(BaseDetector):
        """A detector written before landmarks existed: its score_crops takes (frame, box)."""

        def __init__(self) -> None:
            super().__init__("boxes", "cpu")
            self.is_model_loaded, self.seen = True, []

        def load_model(self, model_path=None) -> bool:  # noqa: ANN001
            return True

        def preprocess(self, image):  # noqa: ANN001, ANN201
            return image

        def predict(self, image) -> DetectionResult:  # noqa: ANN001
            return DetectionResult.from_probability(0.5, self.model_name)

        def get_model_info(self) -> ModelInfo:
            return ModelInfo(name=self.model_name, architecture="boxes")

        def score_crops(self, items):  # noqa: ANN001, ANN201
            self.seen = [len(item) for item in items]
            return [0.5 for image, box in items]

    detector = Boxes()
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    assert detector.score_found([(frame, (8.0, 8.0, 40.0, 40.0), TEMPLATE * 40)]) == [0.5] and detector.seen == [2]
