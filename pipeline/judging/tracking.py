"""Per-stream IoU tracking, so that smoothing follows a person, not a frame.

Faces are detected every ``detect_every`` frames. On a detection frame, ``update`` matches the
detections to the live tracks greedily by IoU (highest first, at least ``iou_threshold``);
unmatched detections open new tracks; a track unmatched ``max_missed`` detection rounds in a row
is closed. Between detections, ``carry`` moves each box by its last measured velocity, which
keeps the crop on a face that walks across the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.models.detections import Detections, iou_matrix


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # at the last detection
    score: float
    frame: int  # frame index of the last detection
    velocity: np.ndarray  # box change per frame
    missed: int = 0


class IouTracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1  # per tracker, so ids are stable within a stream and never shared across streams

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def update(self, detections: Detections, frame: int) -> tuple[Detections, list[int]]:
        """Match ``detections`` found on frame index ``frame``; returns them with track ids, and
        the ids of the tracks closed by this round."""
        boxes = detections.xyxy
        ious = iou_matrix(np.stack([t.box for t in self._tracks]) if self._tracks else np.zeros((0, 4)), boxes)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        matched_tracks: set[int] = set()
        if ious.size:
            for flat in np.argsort(-ious, axis=None):
                ti, di = np.unravel_index(flat, ious.shape)
                if ious[ti, di] < self.iou_threshold:
                    break
                if ti in matched_tracks or ids[di] != -1:
                    continue
                track = self._tracks[ti]
                frames = max(frame - track.frame, 1)
                track.velocity = (boxes[di] - track.box) / frames
                track.box, track.score, track.frame, track.missed = (
                    boxes[di].copy(),
                    float(detections.scores[di]),
                    frame,
                    0,
                )
                ids[di] = track.track_id
                matched_tracks.add(int(ti))
        closed = []
        survivors = []
        for i, track in enumerate(self._tracks):
            if i not in matched_tracks:
                track.missed += 1
                if track.missed > self.max_missed:
                    closed.append(track.track_id)
                    continue
            survivors.append(track)
        self._tracks = survivors
        for di in np.flatnonzero(ids == -1):
            track = _Track(
                self._next_id, boxes[di].copy(), float(detections.scores[di]), frame, np.zeros(4, np.float32)
            )
            self._next_id += 1
            self._tracks.append(track)
            ids[di] = track.track_id
        return Detections(boxes, detections.scores, ids), closed

    def forget(self) -> None:
        """Every track ends (the picture is another: a new call); ids go on from where they were."""
        self._tracks = []

    def carry(self, frame: int) -> Detections:
        """The live tracks' boxes moved to frame index ``frame`` (tracks missed in the last
        round are not shown: the face may have left)."""
        live = [t for t in self._tracks if t.missed == 0]
        if not live:
            return Detections.empty()
        boxes = np.stack([t.box + t.velocity * (frame - t.frame) for t in live])
        return Detections(boxes, np.array([t.score for t in live]), np.array([t.track_id for t in live]))
