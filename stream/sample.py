"""A sample clip generated on the spot from a real photograph, so the main job and the tests need
no downloaded media: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain) drifting
across a 16:9 frame, encoded as H.264 in MP4."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def sample_frames(count: int, width: int = 640, height: int = 360) -> list[np.ndarray]:
    from skimage.data import astronaut

    photo = cv2.resize(astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    frames = []
    travel = width - height
    for i in range(count):
        canvas = np.full((height, width, 3), 40, dtype=np.uint8)
        x = int(round(travel * (0.5 - 0.5 * np.cos(2 * np.pi * i / max(count, 1)))))
        canvas[:, x : x + height] = photo
        frames.append(canvas)
    return frames


def make_sample_clip(path: str | Path, seconds: float = 2.0, fps: int = 15, width: int = 640, height: int = 360) -> Path:
    """Write the sample clip to ``path`` (H.264, yuv420p) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for image in sample_frames(int(seconds * fps), width, height):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
