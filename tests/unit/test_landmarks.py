"""The face box drawn from landmarks and the turn measure (``pipeline/models/faces/landmarks.py``), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.faces.landmarks import BOX, FINDER_SCALE, face_box, turn

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
