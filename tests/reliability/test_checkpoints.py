"""Broken checkpoints never become silently random weights: `dfstream run` refuses to start, with
one error naming the file and, where the file is readable, the mismatched layer."""

from __future__ import annotations

import random
import shutil

import pytest
import yaml

from dfstream.cli import main
from tests.broken_checkpoints import empty, missing_bias, random_bytes, reshaped_layer, truncated

pytestmark = pytest.mark.weights


def _nan_weight(src, dst):
    import h5py
    import numpy as np

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        kernel = h5["conv2d_6/conv2d_6/kernel:0"]
        values = kernel[()]
        values[0, 0, 0, 0] = np.nan
        kernel[...] = values


def run_with(tmp_path, weights_dir, broken, detector_type="meso4", capsys=None):
    config = {
        "streams": [{"id": "clip", "url": "sample://astronaut", "pace": "asap"}],
        "detectors": [
            {"name": "good", "type": "mesoinception4", "weights": str(weights_dir / "MesoInception_DF.h5")},
            {"name": "suspect", "type": detector_type, "weights": str(broken)},
        ],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["run", str(path), "--offline"])
    return code, capsys.readouterr()


@pytest.mark.timeout(120)  # a checkpoint that wrongly loads would start watching the stream
@pytest.mark.parametrize(
    "corrupt, detector_type, message",
    [
        (truncated, "meso4", "not a readable Keras HDF5"),
        (random_bytes, "meso4", "not a readable Keras HDF5"),
        (empty, "meso4", "not a readable Keras HDF5"),
        (reshaped_layer, "meso4", "layer conv2d_6 kernel has shape (3, 3, 8, 8)"),
        (missing_bias, "meso4", "layer dense_4 holds ['kernel']"),
        (_nan_weight, "meso4", "layer conv2d_6 kernel holds 1 non-finite values"),
        (lambda src, dst: shutil.copy(src, dst), "mesoinception4", "has 16 conv2d layers, the file has 4"),
    ],
    ids=["truncated", "random-bytes", "empty", "wrong-shape", "missing-weight", "nan-weight", "other-architecture"],
)
def test_run_refuses_a_broken_checkpoint(weights_dir, tmp_path, capsys, corrupt, detector_type, message):
    broken = tmp_path / "suspect.h5"
    corrupt(weights_dir / "Meso4_DF.h5", broken)
    code, out = run_with(tmp_path, weights_dir, broken, detector_type, capsys)
    assert code == 2 and out.out == ""  # not one verdict
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfstream: error: ")
    assert message in lines[0] and "suspect.h5" in lines[0]


@pytest.mark.timeout(300)
def test_truncated_anywhere_is_refused(weights_dir, tmp_path, capsys, figures):
    """Twenty cuts at random offsets of the real file: each one refused, none loads."""
    data = (weights_dir / "Meso4_DF.h5").read_bytes()
    rng = random.Random(7)
    refused = 0
    for _ in range(20):
        broken = tmp_path / "suspect.h5"
        broken.write_bytes(data[: rng.randrange(1, len(data))])
        code, out = run_with(tmp_path, weights_dir, broken, capsys=capsys)
        assert code == 2 and out.out == "" and "suspect.h5" in out.err, out.err
        refused += 1
    figures(cuts=20, refused=refused)
