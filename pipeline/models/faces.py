"""Face detection for the runtime: MTCNN on downscaled copies of frames from every stream, batched.

Measured on the 2-core development machine: MTCNN costs ~50 ms on a 360p frame with
min_face_size 20 and ~23 ms with 40; the image pyramid dominates, so batching helps little and
downscaling plus ``detect_every`` (tracking in between) is what buys speed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from pydantic import Field

from pipeline.models.detections import Detections
from pipeline.models.devices import DeviceName, resolve_device
from stream.config import StrictModel


class FacesConfig(StrictModel):
    detect_every: int = Field(3, ge=1)  # run MTCNN on every k-th frame of a stream; track in between
    detect_max_side: int | None = Field(640, ge=64)  # frames are downscaled so their longest side is at most this (None: never)
    min_face_size: int = Field(40, ge=12)  # in pixels of the downscaled image
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN's P-, R- and O-net thresholds
    min_probability: float = Field(0.9, ge=0.0, le=1.0)  # faces below it are ignored
    max_faces: int = Field(8, ge=1)  # per frame, largest first
    max_batch: int = Field(8, ge=1)
    # 0: no idle wait; batches still form from every stream while the worker is busy (measured: a
    # 5 ms wait cost a single stream 20 % of its throughput and bought nothing)
    max_wait_ms: float = Field(0.0, ge=0.0)
    iou_threshold: float = Field(0.3, gt=0.0, lt=1.0)  # tracker: minimum overlap to continue a track
    max_missed: int = Field(2, ge=0)  # tracker: detection rounds a track survives without its face
    device: DeviceName = "auto"


class FaceDetector:
    """Synchronous and thread-confined: the runtime calls ``detect`` from one worker thread."""

    def __init__(self, config: FacesConfig):
        from facenet_pytorch import MTCNN

        self.config = config
        self._mtcnn = MTCNN(
            keep_all=True,
            min_face_size=config.min_face_size,
            thresholds=list(config.thresholds),
            device=torch.device(resolve_device(config.device)),
        )
        # measured here: channels_last takes MTCNN on a 640x360 frame from 24.5 to 16.0 ms, same boxes
        for net in (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet):
            net.to(memory_format=torch.channels_last)
        self._lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in each full-resolution RGB image, boxes in full-resolution pixels."""
        scaled = [self._downscale(image) for image in images]
        results: dict[int, Detections] = {}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (small, _) in enumerate(scaled):
            groups.setdefault(small.shape, []).append(i)  # MTCNN batches only equal sizes
        with self._lock:
            for indices in groups.values():
                stack = np.stack([scaled[i][0] for i in indices])
                boxes, probs = self._mtcnn.detect(stack)
                for i, b, p in zip(indices, boxes, probs):
                    results[i] = self._to_detections(b, p, scaled[i][1])
        return [results[i] for i in range(len(images))]

    def _downscale(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        side, limit = max(image.shape[:2]), self.config.detect_max_side
        if limit is None or side <= limit:
            return image, 1.0
        factor = limit / side
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor

    def _to_detections(self, boxes: object, probs: object, factor: float) -> Detections:
        if boxes is None:
            return Detections.empty()
        # facenet-pytorch 2.5.3 with numpy 2 hands back object arrays
        xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / factor
        scores = np.asarray(probs, dtype=np.float32).reshape(-1)
        keep = scores >= self.config.min_probability
        xyxy, scores = xyxy[keep], scores[keep]
        order = np.argsort(-(xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]))[: self.config.max_faces]
        return Detections(xyxy[order], scores[order])
