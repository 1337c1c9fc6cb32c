"""Faces in one frame: one array per field, not tuples (x/y order cannot get mixed up)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError

Box = tuple[float, float, float, float]  # one face: x1, y1, x2, y2 in pixels
LANDMARKS = ("eye_left", "eye_right", "nose", "mouth")  # left and right as the image shows them


@dataclass(frozen=True)
class Detections:
    """``xyxy`` (N, 4) x1, y1, x2, y2 in full-frame pixels; ``scores`` (N,) the finder's confidence;
    ``track_ids`` (N,) int, -1 until a tracker assigns one; ``landmarks`` (N, 4, 2) x, y in
    full-frame pixels of the eye on the image's left, the other eye, the nose tip and the mouth's
    centre (``LANDMARKS``), NaN where the finder gave none."""

    xyxy: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray = field(default=None)  # type: ignore[assignment]
    landmarks: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        ids = (
            np.full(n, -1, dtype=np.int64)
            if self.track_ids is None
            else np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        )
        points = (
            np.full((n, len(LANDMARKS), 2), np.nan, dtype=np.float32)
            if self.landmarks is None
            else np.asarray(self.landmarks, dtype=np.float32).reshape(-1, len(LANDMARKS), 2)
        )
        for name, array in (("scores", scores), ("track_ids", ids), ("landmarks", points)):
            if len(array) != n:
                raise InputError(
                    f"Detections.{name} has shape {array.shape}, expected {n} rows to match xyxy {xyxy.shape}"
                )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "track_ids", ids)
        object.__setattr__(self, "landmarks", points)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(self.xyxy[index], self.scores[index], self.track_ids[index], self.landmarks[index])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
