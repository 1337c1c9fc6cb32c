"""Shared fixtures: the real MesoNet weights of ../shared, a real face photo, a loaded detector."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_weights() -> Path:
    """$DFSTREAM_TEST_WEIGHTS, else shared/models/mesonet beside the checkout or beside a parent of it."""
    if os.environ.get("DFSTREAM_TEST_WEIGHTS"):
        return Path(os.environ["DFSTREAM_TEST_WEIGHTS"])
    for parent in REPO.parents:
        candidate = parent / "shared" / "models" / "mesonet"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "models" / "mesonet"


SHARED_WEIGHTS = _shared_weights()
WEIGHT_FILES = ["Meso4_DF.h5", "Meso4_F2F.h5", "MesoInception_DF.h5", "MesoInception_F2F.h5"]


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    if not all((SHARED_WEIGHTS / f).is_file() for f in WEIGHT_FILES):
        reason = f"MesoNet weights not found in {SHARED_WEIGHTS} (set DFSTREAM_TEST_WEIGHTS)"
        if os.environ.get("DFSTREAM_REQUIRE_WEIGHTS") == "1":
            pytest.fail(reason + "; CI requires them")
        pytest.skip(reason)
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as photo

    return photo()


@pytest.fixture(scope="session")
def face_crop(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's face as MTCNN finds it (x1 181, y1 62, x2 268, y2 172), with MesoNet's margin."""
    from pipeline.preprocessing import crop_with_margin

    return crop_with_margin(astronaut, (181.05, 62.16, 267.75, 172.05), 0.15)
