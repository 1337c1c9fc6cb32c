"""Per-stream IoU tracking, so that smoothing follows a person, not a frame.

Faces are detected every ``detect_every`` frames. On a detection frame, ``update`` matches the
detections to the live tracks greedily by IoU (highest first, at least ``iou_threshold``), each
track's box taken where it was and where its velocity puts it now, whichever overlaps more. Then
what is left is matched by distance: a face of about the same size whose centre moved by at most
``max_jump`` of its width. A stream read at a few frames a second, with faces found on every third,
sees a face move most of its width between detections: without this, every detection would open
a new track and restart its smoothing. Unmatched detections open new tracks; a track unmatched
``max_missed`` detection rounds in a row is closed. Between detections, ``carry`` moves each box by
its last measured velocity, which keeps the crop on a face that walks across the frame; its
landmarks move with the box's centre.
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
    landmarks: np.ndarray  # (4, 2) at the last detection
    missed: int = 0

    def at(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Its box and landmarks moved by its velocity to frame index ``frame``."""
        step = self.velocity * (frame - self.frame)
        return self.box + step, self.landmarks + (step[:2] + step[2:]) / 2


class IouTracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2, max_jump: float = 1.0):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.max_jump = max_jump
        self._tracks: list[_Track] = []
        self._next_id = 1  # per tracker, so ids are stable within a stream and never shared across streams

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def update(self, detections: Detections, frame: int) -> tuple[Detections, list[int]]:
        """Match ``detections`` found on frame index ``frame``; returns them with track ids, and
        the ids of the tracks closed by this round."""
        boxes = detections.xyxy
        ids = np.full(len(boxes), -1, dtype=np.int64)
        matched_tracks: set[int] = set()
        if self._tracks and len(boxes):
            last = np.stack([t.box for t in self._tracks])
            predicted = np.stack([t.at(frame)[0] for t in self._tracks])
            ious = np.maximum(iou_matrix(last, boxes), iou_matrix(predicted, boxes))
            for ti, di in _greedy(-ious, -self.iou_threshold):
                self._match(self._tracks[ti], detections, di, frame)
                ids[di] = self._tracks[ti].track_id
                matched_tracks.add(ti)
            # left over: near enough, of about the same size (in face widths, from the predicted box)
            widths = np.maximum(predicted[:, 2] - predicted[:, 0], 1.0)
            jumps = np.linalg.norm(_centres(predicted)[:, None] - _centres(boxes)[None], axis=2) / widths[:, None]
            sizes = (boxes[:, 2] - boxes[:, 0])[None] / widths[:, None]
            jumps[(sizes < 2 / 3) | (sizes > 3 / 2)] = np.inf
            jumps[sorted(matched_tracks), :] = np.inf
            jumps[:, ids != -1] = np.inf
            for ti, di in _greedy(jumps, self.max_jump):
                self._match(self._tracks[ti], detections, di, frame)
                ids[di] = self._tracks[ti].track_id
                matched_tracks.add(ti)
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
                self._next_id,
                boxes[di].copy(),
                float(detections.scores[di]),
                frame,
                np.zeros(4, np.float32),
                detections.landmarks[di].copy(),
            )
            self._next_id += 1
            self._tracks.append(track)
            ids[di] = track.track_id
        return Detections(boxes, detections.scores, ids, detections.landmarks), closed

    @staticmethod
    def _match(track: _Track, detections: Detections, di: int, frame: int) -> None:
        box = detections.xyxy[di]
        track.velocity = (box - track.box) / max(frame - track.frame, 1)
        track.box, track.score, track.frame, track.missed = box.copy(), float(detections.scores[di]), frame, 0
        track.landmarks = detections.landmarks[di].copy()

    def forget(self) -> None:
        """Every track ends (the picture is another: a new call); ids go on from where they were."""
        self._tracks = []

    def carry(self, frame: int) -> Detections:
        """The live tracks' boxes moved to frame index ``frame`` (tracks missed in the last
        round are not shown: the face may have left)."""
        live = [t for t in self._tracks if t.missed == 0]
        if not live:
            return Detections.empty()
        moved = [t.at(frame) for t in live]
        return Detections(
            np.stack([box for box, _ in moved]),
            np.array([t.score for t in live]),
            np.array([t.track_id for t in live]),
            np.stack([points for _, points in moved]),
        )


def _greedy(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Pairs (row, column) taken cheapest first, each row and column once, while cost <= limit."""
    pairs, rows, columns = [], set(), set()
    for flat in np.argsort(cost, axis=None, kind="stable"):
        ti, di = (int(v) for v in np.unravel_index(flat, cost.shape))
        if cost[ti, di] > limit:
            break
        if ti not in rows and di not in columns:
            pairs.append((ti, di))
            rows.add(ti)
            columns.add(di)
    return pairs


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
