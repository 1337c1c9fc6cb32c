"""ONNX Runtime and OpenVINO run a detector only after agreeing with PyTorch on a fixed input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import ModelLoadError
from pipeline.models.detectors import Meso4Detector, TorchDetector
from pipeline.models.preprocessing import PreprocessingConfig
from pipeline.models.weights import model_dir


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_backend_scores_crops_as_pytorch_does_and_its_export_is_cached(weights_dir, face_crop, backend):
    reference = Meso4Detector(device="cpu")
    reference.load_model(str(weights_dir / "Meso4_DF.h5"))
    detector = Meso4Detector(device="cpu", backend=backend)
    detector.load_model(str(weights_dir / "Meso4_DF.h5"))
    assert detector.backend_error is not None and detector.backend_error <= 1e-4
    [exported] = (model_dir() / "compiled").glob("*.onnx")
    items = [(face_crop, (10.0, 10.0, face_crop.shape[1] - 10.0, face_crop.shape[0] - 10.0))] * 3
    assert np.allclose(detector.score_crops(items), reference.score_crops(items), atol=1e-4)
    again = Meso4Detector(device="cpu", backend=backend)
    again.load_model(str(weights_dir / "Meso4_DF.h5"))
    assert list((model_dir() / "compiled").glob("*.onnx")) == [exported]  # loaded from the cache


def test_a_stale_cached_export_is_replaced(weights_dir):
    """An export of other weights under this model's name (a cache copied between machines, a
    hand-edited file) disagrees with PyTorch at the load check: it is exported again."""
    other = Meso4Detector(device="cpu", backend="openvino")
    other.load_model(str(weights_dir / "Meso4_F2F.h5"))
    [f2f] = (model_dir() / "compiled").glob("*.onnx")
    Meso4Detector(device="cpu", backend="openvino").load_model(str(weights_dir / "Meso4_DF.h5"))
    [df] = [p for p in (model_dir() / "compiled").glob("*.onnx") if p != f2f]
    shutil.copy(f2f, df)
    detector = Meso4Detector(device="cpu", backend="openvino")
    detector.load_model(str(weights_dir / "Meso4_DF.h5"))
    assert detector.backend_error <= 1e-4 and df.read_bytes() != f2f.read_bytes()


class _Branchy(nn.Module):
    """Takes a branch on the data: an ONNX export records the branch its sample input took."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(self.conv(x).mean(dim=(2, 3))).squeeze(1) + 3.0
        return z if float(x.mean()) > 0.25 else -z


class BranchyDetector(TorchDetector):
    """A plugin whose model cannot be exported faithfully."""

    architecture = "branchy"
    default_weights = "branchy.pt"
    preprocessing = PreprocessingConfig(input_size=(32, 32), normalize=False)

    def build(self) -> nn.Module:
        return _Branchy()

    def load_weights(self, module: nn.Module, path: Path) -> None:
        module.load_state_dict(torch.load(path))

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_backend_that_disagrees_with_pytorch_is_refused(tmp_path, backend):
    torch.manual_seed(0)
    torch.save(_Branchy().state_dict(), weights := tmp_path / "branchy.pt")
    detector = BranchyDetector(device="cpu", backend=backend)
    with pytest.raises(
        ModelLoadError,
        match=rf"branchy: backend {backend} gives P\(fake\) up to 0\.\d+ away from PyTorch .* use backend: torch",
    ):
        detector.load_model(str(weights))
    assert not detector.is_model_loaded
    BranchyDetector(device="cpu").load_model(str(weights))  # PyTorch itself runs it


def test_the_config_default_picks_onnxruntime_on_the_cpu(weights_dir):
    from pipeline.models.config import DetectorConfig
    from pipeline.models.registry import ModelRegistry

    [detector] = (
        ModelRegistry()
        .load_configured(
            [DetectorConfig(name="m", type="meso4", weights=str(weights_dir / "Meso4_DF.h5"), device="cpu")]
        )
        .values()
    )
    assert detector.backend == "onnxruntime" and detector.get_model_info().metadata["backend"] == "onnxruntime"
