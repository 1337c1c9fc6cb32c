"""DeepfakeBench (Yan et al., NeurIPS 2023 datasets track) checkpoints: ``*_best.pth``, a plain
state_dict of the whole detector, every weight under ``backbone.``.

All four share DeepfakeBench's test-time preprocessing: the face crop (1.3x its box), resized to
256x256 with bicubic interpolation, RGB, scaled to [0, 1] then normalised with mean = std = 0.5,
and P(fake) = softmax(logits)[:, 1].

Their MesoNets are not the authors' (``mesonet.py``): no convolution bias, one BatchNorm shared by
two layers, two output classes. They are rebuilt here as DeepfakeBench wrote them, because that is
what its weights were trained through.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.models.checkpoints import load_strict, read_state_dict
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.plugins import register
from pipeline.models.preprocessing import PreprocessingConfig

DEEPFAKEBENCH_PREPROCESSING = PreprocessingConfig(
    input_size=(256, 256),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    channel_order="RGB",
    face_crop_margin=0.15,  # DeepfakeBench crops 1.3x the face: 0.15 of it on each side
    face_crop_align=True,  # ... aligned on five landmarks (its preprocess.py), as its models were trained
)


class DFBMeso4(nn.Module):
    """DeepfakeBench's Meso4: conv → ReLU → BN → pool; ``bn1`` serves the first two layers, ``bn2`` the last two."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(8, 16, 5, padding=2, bias=False)
        self.conv4 = nn.Conv2d(16, 16, 5, padding=2, bias=False)
        self.fc1 = nn.Linear(16 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = nn.functional
        x = f.max_pool2d(self.bn1(f.relu(self.conv1(x))), 2)
        x = f.max_pool2d(self.bn1(f.relu(self.conv2(x))), 2)
        x = f.max_pool2d(self.bn2(f.relu(self.conv3(x))), 2)
        x = f.max_pool2d(self.bn2(f.relu(self.conv4(x))), 4)
        return self.fc2(f.leaky_relu(self.fc1(torch.flatten(x, 1)), 0.1))


class DFBMesoInception4(nn.Module):
    """DeepfakeBench's MesoInception4 (parameter names as published, typo ``Incption`` included)."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        for n, cin, (a, b, c, d) in ((1, 3, (1, 4, 4, 2)), (2, 11, (2, 4, 4, 2))):
            setattr(self, f"Incption{n}_conv1", nn.Conv2d(cin, a, 1, bias=False))
            setattr(self, f"Incption{n}_conv2_1", nn.Conv2d(cin, b, 1, bias=False))
            setattr(self, f"Incption{n}_conv2_2", nn.Conv2d(b, b, 3, padding=1, bias=False))
            setattr(self, f"Incption{n}_conv3_1", nn.Conv2d(cin, c, 1, bias=False))
            setattr(self, f"Incption{n}_conv3_2", nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False))
            setattr(self, f"Incption{n}_conv4_1", nn.Conv2d(cin, d, 1, bias=False))
            setattr(self, f"Incption{n}_conv4_2", nn.Conv2d(d, d, 3, padding=3, dilation=3, bias=False))
            setattr(self, f"Incption{n}_bn", nn.BatchNorm2d(a + b + c + d))
        self.conv1 = nn.Conv2d(12, 16, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 5, padding=2, bias=False)
        self.fc1 = nn.Linear(16 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def _inception(self, n: int, x: torch.Tensor) -> torch.Tensor:
        def layer(name: str) -> nn.Module:
            return getattr(self, f"Incption{n}_{name}")

        y = torch.cat(
            [
                layer("conv1")(x),
                layer("conv2_2")(layer("conv2_1")(x)),
                layer("conv3_2")(layer("conv3_1")(x)),
                layer("conv4_2")(layer("conv4_1")(x)),
            ],
            1,
        )
        return nn.functional.max_pool2d(layer("bn")(y), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = nn.functional
        x = self._inception(2, self._inception(1, x))
        x = f.max_pool2d(self.bn1(f.relu(self.conv1(x))), 2)
        x = f.max_pool2d(self.bn1(f.relu(self.conv2(x))), 4)
        return self.fc2(f.leaky_relu(self.fc1(torch.flatten(x, 1)), 0.1))


class DFBXception(nn.Module):
    """timm's ``legacy_xception`` (the FaceForensics++ / Cadene Xception that DeepfakeBench's
    xception.py also derives from), two classes. DeepfakeBench names the head ``last_linear``
    where timm says ``fc``, and saves an ``adjust_channel`` branch its plain Xception never runs;
    it is kept here so that strict loading accounts for every tensor of the file."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        import timm  # imported late: it costs a second and only the model zoo needs it

        self.net = timm.create_model("legacy_xception", pretrained=False, num_classes=num_classes)
        self.adjust_channel = nn.Sequential(nn.Conv2d(2048, 512, 1, 1), nn.BatchNorm2d(512), nn.ReLU(inplace=True))

    @staticmethod
    def file_key_to_module_key(key: str) -> str:
        if key.startswith("adjust_channel."):
            return key
        return "net.fc." + key.removeprefix("last_linear.") if key.startswith("last_linear.") else "net." + key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DFBEfficientNetB4(nn.Module):
    """DeepfakeBench's EfficientNet-B4: efficientnet_pytorch's network under ``efficientnet.``
    with its stem replaced by a plain 3x3 stride-2 convolution without padding (DeepfakeBench
    swaps it for a configurable input width; the swap drops the TF "same" padding), no ``_fc``,
    and a ``last_layer`` Linear(1792, 2) after global average pooling."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.efficientnet = EfficientNet.from_name("efficientnet-b4")
        self.efficientnet._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
        self.efficientnet._fc = nn.Identity()
        self.last_layer = nn.Linear(1792, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.efficientnet.extract_features(x)
        return self.last_layer(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class DeepfakeBenchDetector(TorchDetector):
    """The shared loading and output of DeepfakeBench detectors."""

    preprocessing = DEEPFAKEBENCH_PREPROCESSING
    license = "CC-BY-NC-4.0"
    prefix = "backbone."

    def load_weights(self, module: nn.Module, path: Path) -> None:
        load_strict(module, read_state_dict(path), path, prefix=self.prefix)

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(output.float(), dim=1)[:, 1]


@register("dfb_xception")
class DFBXceptionDetector(DeepfakeBenchDetector):
    """Xception trained by DeepfakeBench on FaceForensics++ (c23)."""

    architecture = "dfb_xception"
    default_weights = "dfb_xception"

    def build(self) -> nn.Module:
        return DFBXception(num_classes=2)

    def load_weights(self, module: nn.Module, path: Path) -> None:
        load_strict(module, read_state_dict(path), path, prefix=self.prefix, rename=DFBXception.file_key_to_module_key)


@register("dfb_efficientnet_b4")
class DFBEfficientNetB4Detector(DeepfakeBenchDetector):
    """EfficientNet-B4 trained by DeepfakeBench on FaceForensics++ (c23)."""

    architecture = "dfb_efficientnet_b4"
    default_weights = "dfb_efficientnet_b4"

    def build(self) -> nn.Module:
        return DFBEfficientNetB4(num_classes=2)


@register("dfb_meso4")
class DFBMeso4Detector(DeepfakeBenchDetector):
    """DeepfakeBench's MesoNet-4 variant trained on FaceForensics++ (c23)."""

    architecture = "dfb_meso4"
    default_weights = "dfb_meso4"

    def build(self) -> nn.Module:
        return DFBMeso4(num_classes=2)


@register("dfb_meso4inception")
class DFBMesoInception4Detector(DeepfakeBenchDetector):
    """DeepfakeBench's MesoInception-4 variant trained on FaceForensics++ (c23)."""

    architecture = "dfb_meso4inception"
    default_weights = "dfb_meso4inception"

    def build(self) -> nn.Module:
        return DFBMesoInception4(num_classes=2)
