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
    with pytest.raises(ValueError, match=r"Detections.scores has shape \(3,\), expected 2 rows"):
        Detections(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match=r"Detections.landmarks has shape \(1, 4, 2\), expected 2 rows"):
        Detections(np.zeros((2, 4)), np.zeros(2), landmarks=np.zeros((1, 4, 2)))


def test_landmarks_move_with_the_box_between_detections():
    tracker = IouTracker()
    points = np.array([[[110.0, 120.0], [130.0, 120.0], [120.0, 130.0], [120.0, 140.0]]])
    tracker.update(Detections(np.array([[100.0, 100.0, 140.0, 150.0]]), np.ones(1), landmarks=points), frame=0)
    tracked, _ = tracker.update(
        Detections(np.array([[106.0, 100.0, 146.0, 150.0]]), np.ones(1), landmarks=points + [6.0, 0.0]), frame=3
    )
    assert np.allclose(tracked.landmarks, points + [6.0, 0.0])
    carried = tracker.carry(frame=4)  # 2 px a frame to the right
    assert np.allclose(carried.xyxy, [[108.0, 100.0, 148.0, 150.0]])
    assert np.allclose(carried.landmarks, points + [8.0, 0.0])


def test_a_face_that_moves_most_of_its_width_between_detections_keeps_its_track():
    """A stream at 10 fps with faces found on every third frame: a face crossing the picture moves
    90 px between detections, more than its overlap can follow."""
    tracker = IouTracker(iou_threshold=0.3, max_missed=2)
    ids = [
        tracker.update(dets([x, 100, x + 120, 220]), frame=3 * i)[0].track_ids.tolist()
        for i, x in enumerate(range(0, 540, 90))
    ]
    assert ids == [[1]] * 6
    # another face of another size where the first was: a new track, and the first goes on
    both, _ = tracker.update(dets([540, 100, 660, 220], [430, 90, 480, 140]), frame=18)
    assert both.track_ids.tolist() == [1, 2]


def test_overlap_wins_over_distance_and_a_jump_past_max_jump_is_a_new_track():
    tracker = IouTracker(iou_threshold=0.3, max_jump=1.0)
    tracker.update(dets([0, 0, 100, 100], [300, 0, 400, 100]), frame=0)  # 1, 2
    # 1 moved 80 px (IoU 0.11 with its old box): matched by distance; 2 by its overlap
    moved, _ = tracker.update(dets([310, 0, 410, 100], [80, 0, 180, 100]), frame=3)
    assert moved.track_ids.tolist() == [2, 1]
    # 1's predicted box is at 160..260 and 2's at 320..420: 4.9 and 3.3 widths away
    far, _ = tracker.update(dets([700, 0, 800, 100]), frame=6)
    assert far.track_ids.tolist() == [3]
    never = IouTracker(iou_threshold=0.3, max_jump=0.0)
    never.update(dets([0, 0, 100, 100]), frame=0)
    assert never.update(dets([80, 0, 180, 100]), frame=3)[0].track_ids.tolist() == [2]
