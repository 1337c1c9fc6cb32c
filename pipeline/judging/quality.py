"""Faces too poor to judge are not judged: too small, too blurred, too dark, too bright or turned away.

A detector's P(fake) on a face of a few dozen pixels, smeared by motion or lost in shadow says more
about the picture than about the face, and evidence that accumulates would accumulate that too. A
face that fails is left unscored: its verdict is ``uncertain`` with the reason (as commercial
services say FaceTooBlurry / FaceTooDark), counted per reason, and the track's evidence is left
where it was until a face good enough to judge comes back.

Measured on the face itself, cheaply (a grey copy at ``SIDE`` px, the same for any frame size):
- ``too_small``: the box's shorter side in frame pixels;
- ``too_blurry``: the variance of the Laplacian (Pech-Pacheco et al., 2000), the classic
  focus measure, on that copy; it falls with motion blur and defocus;
- ``too_dark`` / ``too_bright``: its mean grey level (0-255);
- ``turned_away``: the nose tip's distance from the line through the eyes and the mouth, in eye
  distances (``landmarks.turn``: about tan(yaw) / 2), where the finder gave landmarks. The models
  were trained on faces towards the camera; a profile shows them half a face and a stretched crop.
The defaults are measured on the development set (``python -m bench.alarm_quality``, README "Alarms").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from core.strict import StrictModel
from pipeline.models.faces.landmarks import turn

Reason = Literal["too_small", "too_blurry", "too_dark", "too_bright", "turned_away"]
SIDE = 64  # the grey copy's side: the measures mean the same for a face of any size


class QualityConfig(StrictModel):
    enabled: bool = True
    min_face_px: float = Field(40.0, ge=0.0)  # the face box's shorter side, frame pixels
    min_sharpness: float = Field(20.0, ge=0.0)  # variance of the Laplacian at SIDE px
    min_brightness: float = Field(35.0, ge=0.0, le=255.0)  # mean grey level
    max_brightness: float = Field(225.0, ge=0.0, le=255.0)
    # the nose off the face's midline, in eye distances: 0.6 is a yaw of ~50°; 1 in 100 faces of
    # the development set (FF++ news and actors) turn further
    max_turn: float = Field(0.6, gt=0.0)


@dataclass(frozen=True)
class Quality:
    size: float
    sharpness: float
    brightness: float
    turn: float = float("nan")  # NaN: unknown (no landmarks), never a reason

    def reason(self, config: QualityConfig) -> Reason | None:
        """Why this face is too poor to judge (the first failing measure), or None."""
        if not config.enabled:
            return None
        if self.size < config.min_face_px:
            return "too_small"
        if self.brightness < config.min_brightness:
            return "too_dark"
        if self.brightness > config.max_brightness:
            return "too_bright"
        if self.turn > config.max_turn:
            return "turned_away"
        if self.sharpness < config.min_sharpness:
            return "too_blurry"
        return None


def measure(image: np.ndarray, box: tuple[float, float, float, float], landmarks: np.ndarray | None = None) -> Quality:
    """The face's measures in an RGB frame (box x1, y1, x2, y2 in its pixels; landmarks (4, 2) as
    ``Detections`` carries them, or None)."""
    turned = float("nan") if landmarks is None else float(turn(np.asarray(landmarks)[None])[0])
    height, width = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    size = float(min(box[2] - box[0], box[3] - box[1]))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return Quality(size, 0.0, 0.0, turned)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(small, cv2.CV_64F).var())
    return Quality(size, sharpness, float(small.mean()), turned)
