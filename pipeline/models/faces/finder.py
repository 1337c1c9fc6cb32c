"""Face detection for the runtime: BlazeFace or MTCNN on downscaled copies of frames from every
stream, batched.

Measured on the 2-core development machine: MTCNN costs ~50 ms on a 360p frame with
min_face_size 20 and ~23 ms with 40; the image pyramid dominates, so batching helps little and
downscaling plus ``detect_every`` (tracking in between) is what buys speed. BlazeFace
(``blazeface.py``) costs ~4 ms, but misses faces below ~48 px on a 640 px frame (``python -m
bench.faces``); ``fallback: mtcnn`` has MTCNN look at frames where it found nothing. Either way a
face's box is built from its landmarks (``landmarks.py``), so the crops do not depend on the finder.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from core.strict import StrictModel
from pipeline.models.detections import Detections
from pipeline.models.devices import DeviceName, resolve_device
from pipeline.models.faces.landmarks import face_box


class FacesConfig(StrictModel):
    model: Literal["blazeface", "mtcnn"] = "blazeface"
    fallback: Literal["mtcnn", "none"] = "none"  # mtcnn: MTCNN looks at frames where BlazeFace found no face
    detect_every: int = Field(3, ge=1)  # find faces on every k-th frame of a stream; track in between
    detect_max_side: int | None = Field(
        640, ge=64
    )  # frames are downscaled so their longest side is at most this (None: never)
    min_face_size: int = Field(40, ge=12)  # in pixels of the downscaled image
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN's P-, R- and O-net thresholds
    min_probability: float = Field(0.9, ge=0.0, le=1.0)  # MTCNN's faces below it are ignored
    blazeface_min_score: float = Field(0.5, ge=0.0, le=1.0)  # BlazeFace's (MediaPipe's default)
    max_faces: int = Field(8, ge=1)  # per frame, largest first
    max_batch: int = Field(8, ge=1)
    # 0: no idle wait; batches still form from every stream while the worker is busy (measured: a
    # 5 ms wait cost a single stream 20 % of its throughput and bought nothing)
    max_wait_ms: float = Field(0.0, ge=0.0)
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0)  # tracker: minimum overlap to continue a track
    max_missed: int = Field(2, ge=0)  # tracker: detection rounds a track survives without its face
    # tracker: a face that overlaps no track continues the one whose face (of about its size) was at
    # most this many widths away, predicted by its velocity; 0: overlap only
    max_jump: float = Field(1.0, ge=0.0)
    device: DeviceName = "auto"


class FaceDetector:
    """Synchronous and thread-confined: the runtime calls ``detect`` from one worker thread."""

    def __init__(self, config: FacesConfig):
        self.config = config
        self._blazeface = None
        if config.model == "blazeface":
            from pipeline.models.faces.blazeface import BlazeFace

            self._blazeface = BlazeFace(threads=torch.get_num_threads())
        self._mtcnn = self._load_mtcnn() if config.model == "mtcnn" or config.fallback == "mtcnn" else None
        self._lock = threading.Lock()

    def _load_mtcnn(self):  # noqa: ANN202 (facenet-pytorch is untyped)
        from facenet_pytorch import MTCNN

        config = self.config
        mtcnn = MTCNN(
            keep_all=True,
            min_face_size=config.min_face_size,
            thresholds=list(config.thresholds),
            device=torch.device(resolve_device(config.device)),
        )
        # measured here: channels_last takes MTCNN on a 640x360 frame from 24.5 to 16.0 ms, same boxes
        for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
            net.to(memory_format=torch.channels_last)
        return mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in each full-resolution RGB image, boxes in full-resolution pixels."""
        scaled = [downscale(image, self.config.detect_max_side) for image in images]
        with self._lock:
            if self._blazeface is None:
                return self._with_mtcnn(scaled)
            found = [self._blazeface_faces(small, factor) for small, factor in scaled]
            if self._mtcnn is not None:  # the fallback, for the frames where BlazeFace saw no face
                empty = [i for i, d in enumerate(found) if not len(d)]
                for i, d in zip(empty, self._with_mtcnn([scaled[i] for i in empty]) if empty else []):
                    found[i] = d
            return found

    def _with_mtcnn(self, scaled: list[tuple[np.ndarray, float]]) -> list[Detections]:
        assert self._mtcnn is not None
        results: dict[int, Detections] = {}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (small, _) in enumerate(scaled):
            groups.setdefault(small.shape, []).append(i)  # MTCNN batches only equal sizes
        for indices in groups.values():
            stack = np.stack([scaled[i][0] for i in indices])
            boxes, probs, points = self._mtcnn.detect(stack, landmarks=True)
            for i, b, p, m in zip(indices, boxes, probs, points):
                results[i] = self._from_mtcnn(b, p, m, scaled[i][1])
        return [results[i] for i in range(len(scaled))]

    def _blazeface_faces(self, small: np.ndarray, factor: float) -> Detections:
        assert self._blazeface is not None
        return self._keep(*self._blazeface.detect(small, self.config.blazeface_min_score), factor, "blazeface")

    def _from_mtcnn(self, boxes: object, probs: object, points: object, factor: float) -> Detections:
        if boxes is None:
            return Detections.empty()
        # facenet-pytorch 2.5.3 with numpy 2 hands back object arrays
        xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(probs, dtype=np.float32).reshape(-1)
        five = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)  # eyes, nose, mouth's corners
        landmarks = np.concatenate([five[:, :3], five[:, 3:].mean(axis=1, keepdims=True)], axis=1)
        keep = scores >= self.config.min_probability
        return self._keep(xyxy[keep], scores[keep], landmarks[keep], factor, "mtcnn")

    def _keep(
        self, found: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, factor: float, finder: str
    ) -> Detections:
        """Faces in full-resolution pixels, their boxes drawn from their landmarks and the finder's
        boxes (``landmarks.face_box``), the ``max_faces`` largest."""
        landmarks = landmarks / factor
        eyes = landmarks[:, :2]
        swap = eyes[:, 0, 0] > eyes[:, 1, 0]  # the image's left eye first, whatever the finder's order
        landmarks[swap, :2] = eyes[swap, ::-1]
        xyxy = face_box(landmarks, found / factor, finder)
        order = np.argsort(-(xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]))[: self.config.max_faces]
        return Detections(xyxy[order], scores[order], landmarks=landmarks[order])


def downscale(image: np.ndarray, limit: int | None) -> tuple[np.ndarray, float]:
    """``image`` shrunk so its longest side is at most ``limit`` (never enlarged), and the factor used:
    faces are found on this copy, and a remote face finder is sent only this copy."""
    side = max(image.shape[:2])
    if limit is None or side <= limit:
        return image, 1.0
    factor = limit / side
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor
