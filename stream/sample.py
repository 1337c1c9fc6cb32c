"""A sample clip generated on the spot from a real photograph, so the main job and the tests need
no downloaded media: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain) drifting
across a 16:9 frame, encoded as H.264 in MP4 without B-frames (live-style, RTSP-friendly)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

PhotoEdit = Callable[[int, np.ndarray], np.ndarray]  # frame index, the scaled photo → the photo shown


def sample_frames(
    count: int, width: int = 640, height: int = 360, period: int = 90, edit: PhotoEdit | None = None
) -> Iterator[np.ndarray]:
    """The photo, scaled to the frame height, sliding left and right once every ``period`` frames;
    ``edit``: changes the photo of a frame (a benchmark's face swap)."""
    from skimage.data import astronaut

    photo = cv2.resize(astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    travel = max(width - height, 0)
    for i in range(count):
        canvas = np.full((height, width, 3), 40, dtype=np.uint8)
        x = round(travel * (0.5 - 0.5 * np.cos(2 * np.pi * i / period)))
        shown = photo if edit is None else edit(i, photo)
        canvas[:, x : x + min(height, width)] = shown[:, : min(height, width)]
        yield canvas


def make_sample_clip(
    path: str | Path,
    seconds: float = 4.0,
    fps: int = 30,
    width: int = 640,
    height: int = 360,
    sweep_s: float = 3.0,
    edit: PhotoEdit | None = None,
) -> Path:
    """Write the sample clip to ``path`` (H.264 yuv420p, one keyframe a second) and return it.
    ``sweep_s``: the face slides across and back once in this time (3 s: a fast pan; 20 s: about a
    person at a desk).

    Written to a temporary name and renamed, so a reader never sees half a clip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.part{path.suffix}")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "20", "g": str(fps)}
        for image in sample_frames(int(seconds * fps), width, height, max(1, round(sweep_s * fps)), edit):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)
    return path


def sample_clip_path(cache_dir: Path | None = None) -> Path:
    """The cached sample clip (generated on first use): what the ``sample://`` URL plays."""
    cache = cache_dir or Path(os.environ.get("DFSTREAM_CACHE_DIR", Path.home() / ".cache" / "dfstream"))
    path = cache / "sample" / "astronaut_360p30.mp4"
    return path if path.is_file() else make_sample_clip(path)
