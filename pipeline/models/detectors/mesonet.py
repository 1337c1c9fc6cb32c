"""MesoNet (Afchar et al., "MesoNet: a Compact Facial Video Forgery Detection Network", WIFS 2018)
in PyTorch, loading the authors' published Keras weights (github.com/DariusAf/MesoNet, Apache-2.0).

Facts the port relies on: 256x256 RGB input scaled to [0, 1] (Keras' nearest-neighbour resize);
conv layers with bias, ReLU *before* BatchNorm (epsilon 1e-3); max-pooling with padding "same";
Flatten sees (H, W, C) order; the single sigmoid output is P(real), so P(fake) = 1 - output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelLoadError
from pipeline.models.detectors.keras_h5 import KerasLayer, read_keras_layers
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.plugins import register
from pipeline.models.preprocessing import PreprocessingConfig

KERAS_BN_EPS = 1e-3

MESONET_PREPROCESSING = PreprocessingConfig(
    input_size=(256, 256),
    normalize=False,
    interpolation="nearest",
    channel_order="RGB",
    face_crop_margin=0.15,  # the authors' aligned crops span ~1.3x the face
)


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)  # Keras "same"


class _Head(nn.Module):
    """Flatten (in Keras' H, W, C order) → Dropout → Dense 16 → LeakyReLU 0.1 → Dropout → Dense 1."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x.permute(0, 2, 3, 1), 1)
        x = F.leaky_relu(self.fc1(self.dropout(x)), 0.1)
        return self.fc2(self.dropout(x)).squeeze(1)


class Meso4(nn.Module):
    """Returns the logit of P(real), shape (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([_conv(3, 8, 3), _conv(8, 8, 5), _conv(8, 16, 5), _conv(16, 16, 5)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(c, eps=KERAS_BN_EPS) for c in (8, 8, 16, 16)])
        self.pools = (2, 2, 2, 4)
        self.head = _Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn, pool in zip(self.convs, self.bns, self.pools):
            x = F.max_pool2d(bn(F.relu(conv(x), inplace=True)), pool, ceil_mode=True)  # ceil_mode = Keras "same"
        return self.head(x)

    def keras_order(self) -> dict[str, list[nn.Module]]:
        return {
            "conv2d": list(self.convs),
            "batch_normalization": list(self.bns),
            "dense": [self.head.fc1, self.head.fc2],
        }


class _Inception(nn.Module):
    """Four ReLU branches concatenated: 1x1 (a); 1x1 → 3x3 (b); 1x1 → 3x3 dilation 2 (c);
    1x1 → 3x3 dilation 3 (d)."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                nn.ModuleList([_conv(cin, a, 1)]),
                nn.ModuleList([_conv(cin, b, 1), _conv(b, b, 3)]),
                nn.ModuleList([_conv(cin, c, 1), _conv(c, c, 3, dilation=2)]),
                nn.ModuleList([_conv(cin, d, 1), _conv(d, d, 3, dilation=3)]),
            ]
        )
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for branch in self.branches:
            y = x
            for conv in branch:
                y = F.relu(conv(y), inplace=True)
            outputs.append(y)
        return torch.cat(outputs, dim=1)

    def convs(self) -> list[nn.Module]:
        return [conv for branch in self.branches for conv in branch]


class MesoInception4(nn.Module):
    """Returns the logit of P(real), shape (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.inceptions = nn.ModuleList([_Inception(3, 1, 4, 4, 2), _Inception(11, 2, 4, 4, 2)])
        self.convs = nn.ModuleList([_conv(12, 16, 5), _conv(16, 16, 5)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(c, eps=KERAS_BN_EPS) for c in (11, 12, 16, 16)])
        self.head = _Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bns[0](self.inceptions[0](x)), 2, ceil_mode=True)
        x = F.max_pool2d(self.bns[1](self.inceptions[1](x)), 2, ceil_mode=True)
        x = F.max_pool2d(self.bns[2](F.relu(self.convs[0](x), inplace=True)), 2, ceil_mode=True)
        x = F.max_pool2d(self.bns[3](F.relu(self.convs[1](x), inplace=True)), 4, ceil_mode=True)
        return self.head(x)

    def keras_order(self) -> dict[str, list[nn.Module]]:
        convs = self.inceptions[0].convs() + self.inceptions[1].convs() + list(self.convs)
        return {"conv2d": convs, "batch_normalization": list(self.bns), "dense": [self.head.fc1, self.head.fc2]}


def load_keras_weights(module: Meso4 | MesoInception4, path: Path) -> None:
    """Copy every weight of the Keras file into ``module``: counts, names and shapes must all
    match, else ``ModelLoadError`` names the file and the layer. Nothing is left random."""
    layers = read_keras_layers(path)
    expected = module.keras_order()
    arch = type(module).__name__
    unexpected = sorted(set(layers) - set(expected))
    if unexpected:
        raise ModelLoadError(f"{path.name}: layers of kind {unexpected} have no place in {arch}")
    for kind, targets in expected.items():
        found = layers.get(kind, [])
        if len(found) != len(targets):
            raise ModelLoadError(
                f"{path.name}: {arch} has {len(targets)} {kind} layers, the file has {len(found)} — weights of "
                "another architecture?"
            )
        for layer, target in zip(found, targets):
            _copy(kind, layer, target, path)


def _copy(kind: str, layer: KerasLayer, target: nn.Module, path: Path) -> None:
    if kind == "conv2d":
        pairs = {"kernel": ("weight", (3, 2, 0, 1)), "bias": ("bias", None)}
    elif kind == "dense":
        pairs = {"kernel": ("weight", (1, 0)), "bias": ("bias", None)}
    else:
        pairs = {
            n: (t, None)
            for n, t in (
                ("gamma", "weight"),
                ("beta", "bias"),
                ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"),
            )
        }
    if set(layer.weights) != set(pairs):
        raise ModelLoadError(f"{path.name}: layer {layer.name} holds {sorted(layer.weights)}, expected {sorted(pairs)}")
    for keras_name, (torch_name, permutation) in pairs.items():
        array = layer.weights[keras_name]
        if permutation is not None:
            array = np.transpose(array, permutation)
        tensor = getattr(target, torch_name)
        if tuple(array.shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"{path.name}: layer {layer.name} {keras_name} has shape {layer.weights[keras_name].shape}, "
                f"the model needs {tuple(tensor.shape)} (after Keras→PyTorch transpose)"
            )
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))


@register("meso4")
class Meso4Detector(TorchDetector):
    """MesoNet-4: a 28k-parameter CNN looking at mesoscopic face texture."""

    architecture = "meso4"
    default_weights = "meso4_df"
    preprocessing = MESONET_PREPROCESSING
    license = "Apache-2.0"

    def build(self) -> nn.Module:
        return Meso4()

    def load_weights(self, module: nn.Module, path: Path) -> None:
        load_keras_weights(module, path)  # type: ignore[arg-type]

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-output)  # the network outputs P(real): 1 - σ(z) = σ(-z)


@register("mesoinception4")
class MesoInception4Detector(Meso4Detector):
    """MesoInception-4: MesoNet with two dilated inception blocks."""

    architecture = "mesoinception4"
    default_weights = "mesoinception4_df"

    def build(self) -> nn.Module:
        return MesoInception4()
