"""A judged frame drawn for people: each face's box in the colour of its label, with its track id,
label and smoothed P(fake). The colours are told apart without reading the words (red, green,
amber, grey differ in lightness too), and the words are there for whoever cannot tell colours."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from core.errors import InputError
from pipeline.runtime.live import Face

# RGB
COLOURS = {"fake": (220, 38, 38), "real": (22, 163, 74), "uncertain": (245, 158, 11), "pending": (148, 163, 184)}


def draw(image: np.ndarray, faces: Iterable[Face], width: int | None = None) -> np.ndarray:
    """A new BGR image (ready for ``cv2.imencode``), scaled down to ``width`` when it is narrower."""
    height, full = image.shape[:2]
    scale = 1.0
    if width is not None and width < full:
        scale = width / full
        canvas = cv2.resize(image, (width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    else:
        canvas = image.copy()
    canvas = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
    thickness = max(2, round(canvas.shape[1] / 320))
    font_scale = max(0.4, canvas.shape[1] / 1400)
    for face in faces:
        r, g, b = COLOURS.get(face.label, COLOURS["pending"])
        colour = (b, g, r)
        x1, y1, x2, y2 = (round(v * scale) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"#{face.track_id} {face.label}" + (f" {face.probability:.2f}" if face.probability is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - base - 4 if y1 - th - base - 4 >= 0 else y2  # above the box, or below it at the top edge
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 6, top + th + base + 4), colour, cv2.FILLED)
        cv2.putText(
            canvas, text, (x1 + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return canvas


VOICE_WORDS = {
    "fake": "voice: likely synthetic",
    "real": "voice: real",
    "uncertain": "voice: uncertain",
    "no_speech": "voice: no speech",
}


def draw_voice(canvas: np.ndarray, label: str, probability: float | None) -> None:
    """The voice badge in the top-left corner of a BGR canvas, in its label's colour (grey without speech)."""
    r, g, b = COLOURS.get(label, COLOURS["pending"])
    text = VOICE_WORDS.get(label, label) + (
        f" {probability:.2f}" if probability is not None and label != "real" else ""
    )
    font_scale = max(0.45, canvas.shape[1] / 1200)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    margin = max(6, canvas.shape[1] // 100)
    cv2.rectangle(canvas, (margin, margin), (margin + tw + 12, margin + th + base + 10), (b, g, r), cv2.FILLED)
    cv2.putText(
        canvas,
        text,
        (margin + 6, margin + th + 5),
        cv2.FONT_HERSHEY_SIMPLEX,
        font_scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )


def jpeg(bgr: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("JPEG encoding failed")
    return data.tobytes()


class Timeline:
    """A strip along the bottom of an annotated video: P(fake) of the stream over time, each moment
    in the colour of its label, filled in as the video plays, with the playhead."""

    def __init__(self, duration_s: float, width: int, height: int = 28):
        self.duration_s = max(duration_s, 1e-3)
        self.height = height
        self.columns = np.zeros((width, 3), np.uint8)  # BGR per column; black: not reached yet
        self.values = np.full(width, np.nan)
        self._last = -1  # the last column marked: a frame fills the columns since it

    def mark(self, t: float, faces: Iterable[Face]) -> int:
        """Record the frame at ``t`` seconds; returns its column."""
        width = len(self.columns)
        x = min(width - 1, max(0, int(t / self.duration_s * width)))
        span = slice(self._last + 1, x + 1) if x > self._last else slice(x, x + 1)
        self._last = max(self._last, x)
        judged = [f for f in faces if f.probability is not None]
        if judged:
            worst = max(judged, key=lambda f: (_RANK.get(f.label, 0), f.probability or 0.0))
            r, g, b = COLOURS.get(worst.label, COLOURS["pending"])
            self.columns[span] = (b, g, r)
            self.values[span] = worst.probability
        elif not self.columns[x].any():
            self.columns[span] = (90, 90, 90)  # no face
        return x

    def draw(self, canvas: np.ndarray, playhead: int) -> None:
        height, width = canvas.shape[:2]
        top = height - self.height
        strip = canvas[top:, :]
        strip[:] = (strip * 0.35).astype(np.uint8)  # darken what is under it
        band = 5  # the label's colour along the top of the strip; P(fake) as a bar below it
        for x in np.flatnonzero(self.columns.any(axis=1)):
            strip[:band, x] = self.columns[x]
            value = self.values[x]
            if not np.isnan(value):
                bar = max(1, int(value * (self.height - band)))
                strip[self.height - bar :, x] = self.columns[x]
        cv2.line(canvas, (playhead, top), (playhead, height - 1), (255, 255, 255), 1)


_RANK = {"fake": 3, "uncertain": 2, "real": 1, "pending": 0}
