"""Faces too poor to judge (``pipeline/judging/quality.py``): each measure, and the reason it gives."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.judging.quality import Quality, QualityConfig, measure

BOX = (100.0, 50.0, 228.0, 178.0)  # 128 px


@pytest.fixture
def face(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut photograph's face region pasted into a grey frame at BOX."""
    frame = np.full((360, 640, 3), 128, np.uint8)
    frame[50:178, 100:228] = cv2.resize(astronaut[30:230, 160:360], (128, 128), interpolation=cv2.INTER_AREA)
    return frame


def test_a_clear_face_passes_and_each_poor_one_says_why(face):
    config = QualityConfig()
    clear = measure(face, BOX)
    assert clear.size == 128 and clear.reason(config) is None
    blurred = face.copy()
    blurred[50:178, 100:228] = cv2.GaussianBlur(face[50:178, 100:228], (0, 0), 6)
    assert measure(blurred, BOX).sharpness < clear.sharpness / 4
    assert measure(blurred, BOX).reason(config) == "too_blurry"
    assert measure((face * 0.1).astype(np.uint8), BOX).reason(config) == "too_dark"
    assert measure(np.clip(face.astype(int) + 200, 0, 255).astype(np.uint8), BOX).reason(config) == "too_bright"
    assert measure(face, (100.0, 50.0, 130.0, 80.0)).reason(config) == "too_small"
    # the nose far off the line through the eyes and the mouth: a profile
    profile = np.array([[130.0, 100.0], [150.0, 100.0], [175.0, 125.0], [140.0, 150.0]])
    assert measure(face, BOX, profile).reason(config) == "turned_away"


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (Quality(30, 100, 120), "too_small"),  # size first: nothing else is measured honestly on 30 px
        (Quality(80, 5, 10), "too_dark"),  # a dark face is also flat: dark is the cause
        (Quality(80, 5, 240), "too_bright"),
        (Quality(80, 5, 120), "too_blurry"),
        (Quality(80, 5, 120, turn=0.9), "turned_away"),  # a profile: its blur says little
        (Quality(80, 100, 120, turn=0.2), None),
        (Quality(80, 100, 120), None),  # no landmarks: the turn is unknown, never a reason
    ],
)
def test_the_first_failing_measure_is_the_reason(quality, expected):
    assert quality.reason(QualityConfig()) == expected
    assert quality.reason(QualityConfig(enabled=False)) is None


def test_a_box_outside_the_frame_is_too_small_to_measure(face):
    q = measure(face, (700.0, 400.0, 800.0, 500.0))
    assert (q.sharpness, q.brightness) == (0.0, 0.0)
