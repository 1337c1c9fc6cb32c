"""Each stage alone, in-process: the ceilings the pipeline is measured against."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

from pipeline.models.detectors import TorchDetector
from pipeline.models.faces.finder import FaceDetector


def best_of(fn: Callable[[], int], seconds: float) -> float:
    """Items per second of ``fn`` (which returns how many items it did), repeated for ``seconds``."""
    fn()  # warm-up: first calls allocate
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start)


def decode_fps(clip: Path) -> float:
    """PyAV decode to RGB arrays, the way sources do it."""
    start, frames = time.perf_counter(), 0
    with av.open(str(clip)) as container:
        for frame in container.decode(container.streams.video[0]):
            frame.to_ndarray(format="rgb24")
            frames += 1
    return frames / (time.perf_counter() - start)


def faces_fps(
    detector: FaceDetector, frames: Sequence[np.ndarray], batches: Sequence[int], seconds: float
) -> dict[int, float]:
    out = {}
    for batch in batches:
        chunk = list(frames[:batch])
        out[batch] = best_of(lambda: len(detector.detect(chunk)), seconds)
    return out


def detector_fps(detector: TorchDetector, items: Sequence, batches: Sequence[int], seconds: float) -> dict[int, float]:
    out = {}
    for batch in batches:
        chunk = [items[i % len(items)] for i in range(batch)]
        out[batch] = best_of(lambda: len(detector.score_crops(chunk)), seconds)
    return out


def weights_argument() -> dict:
    """``--weights DIR``: the MesoNet weight files, by default from $DFSTREAM_TEST_WEIGHTS (as the tests read them)."""
    folder = os.environ.get("DFSTREAM_TEST_WEIGHTS")
    if folder:
        return {"default": Path(folder), "help": f"MesoNet weights folder (default $DFSTREAM_TEST_WEIGHTS: {folder})"}
    return {"required": True, "help": "MesoNet weights folder (or set $DFSTREAM_TEST_WEIGHTS)"}
