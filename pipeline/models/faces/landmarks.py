"""The face box every detector's crop is cut from, drawn from the face's landmarks, and how far the
face is turned away.

BlazeFace's box is a square from the brows to the chin, MTCNN's taller, reaching the hairline, and
neither is stable against the other from face to face: mapping one onto the other by a fixed scale
and shift left the MesoNets' fused P(fake) of the same face 0.038 apart (median, development set).
The eyes, nose and mouth both finders give agree far better (1-2 % of the face's width), so the box
is built from them, the same way for either finder: a frame on the face, centred and turned by its
landmarks, and a box placed in it as MTCNN's boxes sit on average (``BOX``). The frame's scale is the
mean of two measures: the landmarks' (the larger of 2x the eyes' distance and 1.8x the eyes-to-mouth
distance, as FFHQ's alignment does, so a profile or a nod keeps its size) and the finder's own box
(its width and height scaled by ``FINDER_SCALE``): on a small face BlazeFace's key points are
coarse (a 60 px face's eyes 20 % closer than MTCNN's), and on a large one the boxes' conventions
differ. On the development set (``python -m bench.alarm_crops``, 2,616 faces both finders found)
the fused P(fake) of the same face differs by 0.023 (median; 0.024 from the landmarks alone, 0.026
with the boxes' scale alone). Turning the crop upright on the eyes (roll) made it 0.028: the
MesoNets were not trained on aligned faces. The detectors' crop margins were set on MTCNN's boxes
and stay as they are.
"""

from __future__ import annotations

import numpy as np

# MTCNN's box in the face's frame, in units of its scale: centre across and down from the eyes'
# midpoint, width, height (medians over 2,616 faces of the development set both finders found)
BOX = {"across": -0.020, "down": 0.151, "width": 1.068, "height": 1.435}
# the landmarks' scale per pixel of each finder's box width and height (medians, same faces)
FINDER_SCALE = {"blazeface": (0.777, 0.777), "mtcnn": (0.936, 0.697)}


def frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, 4, 2) landmarks → the eyes' midpoints (N, 2), the face's across and down unit vectors
    (N, 2 each) and the landmarks' scale (N,)."""
    eye_l, eye_r, mouth = landmarks[:, 0], landmarks[:, 1], landmarks[:, 3]
    eyes = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = mouth - eyes
    # across: the eyes' direction blended with the mouth's axis turned a quarter (robust to either)
    across = eye_to_eye + np.stack([eye_to_mouth[:, 1], -eye_to_mouth[:, 0]], axis=1)
    across = across / np.maximum(np.linalg.norm(across, axis=1, keepdims=True), 1e-6)
    down = np.stack([-across[:, 1], across[:, 0]], axis=1)
    scale = np.maximum(2.0 * np.linalg.norm(eye_to_eye, axis=1), 1.8 * np.linalg.norm(eye_to_mouth, axis=1))
    return eyes, across, down, scale


def face_box(landmarks: np.ndarray, found: np.ndarray, finder: str) -> np.ndarray:
    """(N, 4, 2) landmarks and (N, 4) the finder's boxes → (N, 4) boxes x1, y1, x2, y2, upright."""
    eyes, across, down, scale = frame(np.asarray(landmarks, dtype=np.float64))
    sx, sy = FINDER_SCALE[finder]
    width, height = found[:, 2] - found[:, 0], found[:, 3] - found[:, 1]
    scale = (scale + np.sqrt(np.maximum(sx * width * sy * height, 0.0))) / 2
    centre = eyes + (BOX["across"] * across + BOX["down"] * down) * scale[:, None]
    half = np.stack([BOX["width"] * scale, BOX["height"] * scale], axis=1) / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def turn(landmarks: np.ndarray) -> np.ndarray:
    """(N, 4, 2) landmarks → (N,) how far each face is turned away: the nose tip's distance from the
    line through the eyes' midpoint and the mouth, in eye distances. About tan(yaw) / 2: 0 facing
    the camera, 0.5 at ~45°, growing fast towards a profile (NaN without landmarks)."""
    points = np.asarray(landmarks, dtype=np.float64)
    eye_l, eye_r, nose, mouth = points[:, 0], points[:, 1], points[:, 2], points[:, 3]
    eyes = (eye_l + eye_r) / 2
    axis = mouth - eyes
    axis = axis / np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-6)
    off = np.abs((nose - eyes)[:, 0] * axis[:, 1] - (nose - eyes)[:, 1] * axis[:, 0])
    return off / np.maximum(np.linalg.norm(eye_r - eye_l, axis=1), 1e-6)


# Where a face's eyes, nose tip and mouth centre sit in an aligned crop, as fractions of its side:
# the five-point template of ArcFace (112 x 112, the eyes at y 51.6) that DeepfakeBench aligns its
# training faces on, its two mouth corners replaced by their midpoint (the finders give the centre)
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [56.1396, 92.2848]]) / 112.0


def align_matrix(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(4, 2) landmarks of one face → the 2 x 3 similarity (turn, scale, shift; never a shear) that
    takes them nearest, in least squares, to ``TEMPLATE`` in a ``size`` px square whose face is
    shrunk to leave ``margin`` of it on each side (DeepfakeBench's ``scale`` 1.3: margin 0.15)."""
    target = (TEMPLATE + margin) / (1.0 + 2.0 * margin) * size
    source = np.asarray(landmarks, dtype=np.float64)
    # Umeyama's closed form, without reflection: the rotation and scale of the centred points
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - src_mean, target - dst_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(src))
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src**2).sum() / len(src)
    scale = float((singular * sign).sum() / max(variance, 1e-12))
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix
