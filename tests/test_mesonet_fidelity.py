"""MesoNet in PyTorch must compute what the authors' Keras model computes.

The reference below is written from the Keras layer definitions (Conv2D "same" with bias,
BatchNormalization with epsilon 1e-3, MaxPooling2D "same", Flatten in H, W, C order, Dense,
LeakyReLU 0.1, sigmoid), in NumPy and in NHWC, and reads the HDF5 file by itself: it shares no
code with ``pipeline.detectors``.
"""

from __future__ import annotations

import math
import shutil

import h5py
import numpy as np
import pytest
import torch

from core.errors import ModelLoadError
from pipeline.models.detectors import Meso4Detector, MesoInception4Detector
from pipeline.models.detectors.mesonet import MESONET_PREPROCESSING
from pipeline.models.preprocessing import UnifiedPreprocessor
from tests.broken_checkpoints import empty, missing_bias, random_bytes, reshaped_layer, truncated

pytestmark = pytest.mark.weights

TOLERANCE = 1e-5


# ---- the NumPy reference ------------------------------------------------------------------------
def keras_weights(path) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as h5:
        for layer in h5.attrs["layer_names"]:
            layer = layer.decode()
            for weight in h5[layer].attrs.get("weight_names", []):
                weight = weight.decode()
                out.setdefault(layer, {})[weight.split("/")[-1].split(":")[0]] = np.array(
                    h5[layer][weight], dtype=np.float64
                )
    return out


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int = 1) -> np.ndarray:
    """x (N, H, W, C), kernel (kh, kw, C, O): TensorFlow's "same" padding, stride 1."""
    kh, kw = kernel.shape[:2]
    eff_h, eff_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    top, left = (eff_h - 1) // 2, (eff_w - 1) // 2
    padded = np.pad(x, ((0, 0), (top, eff_h - 1 - top), (left, eff_w - 1 - left), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, i * dilation : i * dilation + h, j * dilation : j * dilation + w, :]
            out += patch @ kernel[i, j]
    return out + bias


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def batchnorm(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + 1e-3) * w["gamma"] + w["beta"]


def maxpool_same(x: np.ndarray, k: int) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = math.ceil(h / k), math.ceil(w / k)
    padded = np.full((n, oh * k, ow * k, c), -np.inf)
    padded[:, :h, :w] = x
    return padded.reshape(n, oh, k, ow, k, c).max(axis=(2, 4))


def head(x: np.ndarray, dense1: dict, dense2: dict) -> np.ndarray:
    x = x.reshape(len(x), -1) @ dense1["kernel"] + dense1["bias"]
    x = np.where(x > 0, x, 0.1 * x)
    return (x @ dense2["kernel"] + dense2["bias"])[:, 0]  # the logit; Keras then applies a sigmoid


def numbered(weights: dict, kind: str) -> list[dict]:
    names = sorted((n for n in weights if n.startswith(kind + "_")), key=lambda n: int(n.rsplit("_", 1)[1]))
    return [weights[n] for n in names]


def meso4_reference(weights: dict, x: np.ndarray) -> np.ndarray:
    convs, bns, dense = (
        numbered(weights, "conv2d"),
        numbered(weights, "batch_normalization"),
        numbered(weights, "dense"),
    )
    for conv, bn, pool in zip(convs, bns, (2, 2, 2, 4)):
        x = maxpool_same(batchnorm(relu(conv_same(x, conv["kernel"], conv["bias"])), bn), pool)
    return head(x, *dense)


def mesoinception_reference(weights: dict, x: np.ndarray) -> np.ndarray:
    convs, bns, dense = (
        numbered(weights, "conv2d"),
        numbered(weights, "batch_normalization"),
        numbered(weights, "dense"),
    )

    def inception(x: np.ndarray, c: list[dict]) -> np.ndarray:
        x1 = relu(conv_same(x, c[0]["kernel"], c[0]["bias"]))
        x2 = relu(conv_same(relu(conv_same(x, c[1]["kernel"], c[1]["bias"])), c[2]["kernel"], c[2]["bias"]))
        x3 = relu(conv_same(relu(conv_same(x, c[3]["kernel"], c[3]["bias"])), c[4]["kernel"], c[4]["bias"], dilation=2))
        x4 = relu(conv_same(relu(conv_same(x, c[5]["kernel"], c[5]["bias"])), c[6]["kernel"], c[6]["bias"], dilation=3))
        return np.concatenate([x1, x2, x3, x4], axis=-1)

    x = maxpool_same(batchnorm(inception(x, convs[0:7]), bns[0]), 2)
    x = maxpool_same(batchnorm(inception(x, convs[7:14]), bns[1]), 2)
    x = maxpool_same(batchnorm(relu(conv_same(x, convs[14]["kernel"], convs[14]["bias"])), bns[2]), 2)
    x = maxpool_same(batchnorm(relu(conv_same(x, convs[15]["kernel"], convs[15]["bias"])), bns[3]), 4)
    return head(x, *dense)


CASES = [
    ("Meso4_DF.h5", Meso4Detector, meso4_reference),
    ("Meso4_F2F.h5", Meso4Detector, meso4_reference),
    ("MesoInception_DF.h5", MesoInception4Detector, mesoinception_reference),
    ("MesoInception_F2F.h5", MesoInception4Detector, mesoinception_reference),
]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
@pytest.mark.parametrize("filename, detector_cls, reference", CASES, ids=[c[0] for c in CASES])
def test_pytorch_matches_the_keras_reference(weights_dir, face_crop, filename, detector_cls, reference, backend):
    detector = detector_cls(device="cpu", backend=backend)
    detector.load_model(str(weights_dir / filename))
    rng = np.random.default_rng(7)
    random_images = rng.random((3, 256, 256, 3), dtype=np.float64)
    face = UnifiedPreprocessor(MESONET_PREPROCESSING).prepare(face_crop).astype(np.float64) / 255.0
    batch = np.concatenate([random_images, face[None]])

    tensor = torch.from_numpy(batch.transpose(0, 3, 1, 2)).float()
    z_reference = reference(keras_weights(weights_dir / filename), batch)
    p_real_reference = 1.0 / (1.0 + np.exp(-z_reference))
    p_fake = detector.score_tensor(tensor)
    with torch.inference_mode():
        z_torch = detector.module(tensor).double().numpy()

    error = np.max(np.abs((1.0 - p_real_reference) - p_fake))
    logit_error = np.max(np.abs(z_torch - z_reference) / np.maximum(1.0, np.abs(z_reference)))
    print(f"{filename} ({backend}): max |P(fake) - reference| = {error:.2e}, relative logit error {logit_error:.2e}")
    assert error < TOLERANCE
    # the sigmoid saturates for confident inputs: compare before it as well
    assert logit_error < TOLERANCE
    # and the detector's own path (resize, scale) gives the same score for the real face
    result = detector.predict(face_crop)
    assert abs(result.fake_probability - (1.0 - p_real_reference[-1])) < TOLERANCE
    assert result.is_deepfake == (result.fake_probability >= 0.5)


def test_nearest_resize_matches_keras_pil_nearest(face_crop):
    from PIL import Image

    ours = UnifiedPreprocessor(MESONET_PREPROCESSING).prepare(face_crop)
    keras_like = np.asarray(Image.fromarray(face_crop).resize((256, 256), Image.NEAREST))
    assert np.array_equal(ours, keras_like)


# ---- strict loading: a wrong file fails loudly, naming the file and the layer ----------------
@pytest.mark.parametrize(
    "corrupt, detector_cls, message",
    [
        (truncated, Meso4Detector, "not a readable Keras HDF5"),
        (random_bytes, Meso4Detector, "not a readable Keras HDF5"),
        (empty, Meso4Detector, "not a readable Keras HDF5"),
        (reshaped_layer, Meso4Detector, "layer conv2d_6 kernel has shape (3, 3, 8, 8)"),
        (missing_bias, Meso4Detector, "layer dense_4 holds ['kernel']"),
        (lambda src, dst: shutil.copy(src, dst), MesoInception4Detector, "has 16 conv2d layers, the file has 4"),
    ],
    ids=["truncated", "random-bytes", "empty", "wrong-shape", "missing-weight", "other-architecture"],
)
def test_a_broken_checkpoint_is_refused(weights_dir, tmp_path, corrupt, detector_cls, message):
    bad = tmp_path / "broken.h5"
    corrupt(weights_dir / "Meso4_DF.h5", bad)
    detector = detector_cls(device="cpu")
    with pytest.raises(ModelLoadError) as info:
        detector.load_model(str(bad))
    assert message in str(info.value)
    assert "broken.h5" in str(info.value)
    assert not detector.is_model_loaded
