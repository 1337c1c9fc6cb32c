"""A small *synthetic* labelled set for `dfstream eval` tests: clips of scikit-image's astronaut
photo, panned and zoomed differently per clip. "Fake" clips have the face re-rendered (shrunk to a
quarter, enlarged back, colour-shifted and blended in with a soft mask), a crude stand-in for the
resampling and blending traces of a face swap. It exercises the whole evaluation path; it says
nothing about how a detector fares on real deepfakes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FACE = (181, 62, 268, 172)  # the astronaut's face in the 512x512 photo (x1, y1, x2, y2)


def fake_photo(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x1, y1, x2, y2 = FACE
    face = photo[y1:y2, x1:x2]
    small = cv2.resize(face, (face.shape[1] // 4, face.shape[0] // 4), interpolation=cv2.INTER_AREA)
    redone = cv2.resize(small, (face.shape[1], face.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    redone = np.clip(redone * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-10, 10), 0, 255)
    mask = np.zeros(face.shape[:2], np.float32)
    cv2.ellipse(
        mask,
        (face.shape[1] // 2, face.shape[0] // 2),
        (face.shape[1] // 2 - 4, face.shape[0] // 2 - 4),
        0,
        0,
        360,
        1.0,
        -1,
    )
    mask = cv2.GaussianBlur(mask, (0, 0), 5)[..., None]
    out = photo.copy()
    out[y1:y2, x1:x2] = (mask * redone + (1 - mask) * face).astype(np.uint8)
    return out


def write_clip(
    path: Path, photo: np.ndarray, rng: np.random.Generator, frames: int, size: tuple[int, int] = (480, 360)
) -> Path:
    width, height = size
    zoom = rng.uniform(0.8, 1.1)
    side = int(height * zoom)
    scaled = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    start, end = rng.uniform(0, max(width - side, 1), size=2)
    brightness = rng.uniform(0.85, 1.15)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "g": "25"}
        for i in range(frames):
            canvas = np.full((height, width, 3), 50, np.uint8)
            x = int(start + (end - start) * i / max(frames - 1, 1))
            top = (height - side) // 2
            visible = scaled[max(-top, 0) : max(-top, 0) + height, : width - x]
            canvas[max(top, 0) : max(top, 0) + visible.shape[0], x : x + visible.shape[1]] = visible
            canvas = np.clip(canvas.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_labelled_set(root: Path, per_class: int = 4, frames: int = 12, seed: int = 0) -> Path:
    """root/real/*.mp4 and root/fake/*.mp4; the same seed gives the same files."""
    from skimage.data import astronaut

    rng = np.random.default_rng(seed)
    photo = astronaut()
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            source = fake_photo(photo, rng) if label == "fake" else photo
            write_clip(root / label / f"{label}_{i:02d}.mp4", source, rng, frames)
    return root
