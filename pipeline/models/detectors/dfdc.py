"""The Deepfake Detection Challenge winner (Selim Seferbekov, 2020): EfficientNet-B7 Noisy Student
(timm's ``tf_efficientnet_b7``, TF "same" padding) with a linear head.

Its files (``final_*_DeepFakeClassifier_tf_efficientnet_b7_ns_*``) are a training dict whose
``state_dict`` holds ``module.encoder.*`` (the whole timm network, its unused ImageNet classifier
included) and ``module.fc.*``. At test time: the face box, truncated to whole pixels, grown by a
third of its width and height (truncated) on each side, the longest side scaled to 380 px and the
rest padded black to a centred square, RGB
scaled to [0, 1] and normalised with ImageNet's mean and std; P(fake) = sigmoid(logit).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.models.checkpoints import load_strict, read_state_dict
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.plugins import register
from pipeline.models.preprocessing import PreprocessingConfig

DFDC_WINNER_PREPROCESSING = PreprocessingConfig(
    input_size=(380, 380),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize_mode="longest_side_pad",
    channel_order="RGB",
    face_crop_margin=1 / 3,
    face_crop_rounding="integer",
)


class DeepFakeClassifierB7(nn.Module):
    """``encoder`` (timm tf_efficientnet_b7) → global average pool → ``fc`` Linear(2560, 1)."""

    def __init__(self) -> None:
        super().__init__()
        import timm  # imported late: it costs a second and only this detector needs it

        self.encoder = timm.create_model("tf_efficientnet_b7", pretrained=False)
        self.fc = nn.Linear(2560, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder.forward_features(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@register("dfdc_b7")
class DFDCWinnerB7Detector(TorchDetector):
    """EfficientNet-B7 from the DFDC winning solution (selimsef/dfdc_deepfake_challenge)."""

    architecture = "dfdc_b7"
    default_weights = "dfdc_b7_111"
    preprocessing = DFDC_WINNER_PREPROCESSING
    license = "MIT"

    def build(self) -> nn.Module:
        return DeepFakeClassifierB7()

    def load_weights(self, module: nn.Module, path: Path) -> None:
        load_strict(module, read_state_dict(path), path)

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output.float()[:, 0])
