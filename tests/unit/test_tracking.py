"""The IoU tracker on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.judging.tracking import IouTracker
from pipeline.models.detections import Detections, iou_matrix


def dets(*boxes) -> Detections:
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.full(len(boxes), 0.99))


def test_iou_of_hand_made_boxes():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[3, 0, 13, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    # overlap 7 x 10 = 70, union 100 + 100 - 70 = 130
    assert iou_matrix(a, b) == pytest.approx(np.array([[70 / 130, 0.0, 1.0]]))


def test_tracks_keep_their_ids_move_and_close():
    tracker = IouTracker(iou_threshold=0.3, max_missed=1)
    first, closed = tracker.update(dets([0, 0, 10, 10], [100, 100, 120, 120]), frame=0)
    assert first.track_ids.tolist() == [1, 2] and closed == []

    # frame 3: A moved 3 px right (IoU 0.54), B is gone, C appears
    second, closed = tracker.update(dets([200, 200, 210, 210], [3, 0, 13, 10]), frame=3)
    assert second.track_ids.tolist() == [3, 1] and closed == []

    # between detections A keeps moving 1 px a frame; B (missed once) is not shown
    carried = tracker.carry(frame=4)
    assert carried.track_ids.tolist() == [1, 3]
    assert carried.xyxy[0] == pytest.approx([4, 0, 14, 10])

    # frame 6: only A; B misses a second round (> max_missed): closed; C misses its first
    third, closed = tracker.update(dets([6, 0, 16, 10]), frame=6)
    assert third.track_ids.tolist() == [1] and closed == [2]
    _, closed = tracker.update(dets([9, 0, 19, 10]), frame=9)
    assert closed == [3] and tracker.track_ids == [1]


def test_greedy_matching_prefers_the_best_overlap():
    tracker = IouTracker(iou_threshold=0.1)
    tracker.update(dets([0, 0, 10, 10], [8, 0, 18, 10]), frame=0)  # ids 1, 2
    matched, _ = tracker.update(dets([7, 0, 17, 10]), frame=1)  # IoU 0.18 with 1, 0.82 with 2
    assert matched.track_ids.tolist() == [2]


def test_a_face_that_jumps_away_is_a_new_track():
    tracker = IouTracker(iou_threshold=0.3)
    tracker.update(dets([0, 0, 10, 10]), frame=0)
    jumped, _ = tracker.update(dets([50, 50, 60, 60]), frame=1)
    assert jumped.track_ids.tolist() == [2]


def test_detections_validate_shapes():
    with pytest.raises(ValueError, match=r"Detections.scores has shape \(3,\), expected \(2,\)"):
        Detections(np.zeros((2, 4)), np.zeros(3))
