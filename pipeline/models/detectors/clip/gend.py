"""GenD (Yermakov, Cech, Matas, Fritz: "Deepfake Detection that Generalizes Across Benchmarks",
WACV 2026, arXiv 2508.06248): CLIP's ViT-L/14 image encoder with only its LayerNorms tuned on
FaceForensics++, and a linear head on the CLS feature (L2-normalised first with the ``LinearNorm``
head).

The released checkpoint (Hugging Face ``yermandy/GenD_CLIP_L_14``) is a folder: ``config.json``
(``model_type: GenD``, the backbone's name, the head) and ``model.safetensors`` whose keys are
``feature_extractor.vision_model.*`` (transformers' CLIP vision tower: the file uses
transformers' layout — ``embeddings.patch_embedding``, ``encoder.layers.N.self_attn.q_proj`` —
not open_clip's ``visual.transformer.resblocks.N.attn.in_proj_weight``, so transformers' module
is the one that takes it unchanged), ``feature_extractor.visual_projection.weight`` (CLIP's
projection, in the file though the head reads the feature before it) and ``model.linear.*``
(two classes; index 1 is fake). The encoder's size is read from the tensors (width, depth, patch
and image size; 64-wide attention heads, as every CLIP ViT), so no download of the backbone's
config is needed. Input: CLIP's preprocessing (224 px, bicubic, CLIP's mean and std) of a face
grown 1.3x and aligned on the face's landmarks (the authors' crops: DeepfakeBench's five-point
alignment).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from core.errors import ModelLoadError, one_line
from pipeline.models.checkpoints import load_strict
from pipeline.models.detectors.clip.towers import (
    CLIP_PREPROCESSING,
    transformers_vision_config,
    transformers_vision_tower,
)
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.plugins import register

GEND_PREPROCESSING = CLIP_PREPROCESSING.model_copy(update={"face_crop_align": True})

HEADS = ("linear", "LinearNorm")
ENCODER = "feature_extractor.vision_model."


class GenDNetwork(nn.Module):
    """``feature_extractor`` (CLIP's vision tower and projection) → CLS feature → ``model.linear``."""

    def __init__(self, vision_config, projection_dim: int, normalize: bool):
        super().__init__()
        self.feature_extractor = nn.Module()
        self.feature_extractor.vision_model = transformers_vision_tower(vision_config)
        self.feature_extractor.visual_projection = nn.Linear(vision_config.hidden_size, projection_dim, bias=False)
        self.model = nn.Module()
        self.model.linear = nn.Linear(vision_config.hidden_size, 2)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.feature_extractor.vision_model(pixel_values=x).pooler_output
        if self.normalize:
            features = F.normalize(features, p=2, dim=1)
        return self.model.linear(features)


@register("gend")
class GenDDetector(TorchDetector):
    """GenD: CLIP ViT-L/14, LayerNorm-tuned on FaceForensics++ (WACV 2026)."""

    architecture = "gend"
    default_weights = "gend_clip_l14"
    preprocessing = GEND_PREPROCESSING
    license = "MIT"
    _state: dict[str, torch.Tensor] | None = None  # the checkpoint, between build_for and load_weights

    def build(self) -> nn.Module:
        raise ModelLoadError("gend: the network's size is read from its checkpoint: load it (load_model)")

    def build_for(self, path: Path) -> nn.Module:
        self._state, head = _read_checkpoint(path)
        vision = transformers_vision_config(self._state, ENCODER, path, "GenD")
        return GenDNetwork(vision, _projection(self._state), normalize=head == "LinearNorm")

    def load_weights(self, module: nn.Module, path: Path) -> None:
        state, self._state = self._state, None
        load_strict(module, state, path)

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(output.float(), dim=1)[:, 1]


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of ``model.safetensors`` and the head named by the ``config.json`` beside it."""
    from safetensors.torch import load_file

    weights, config_file = path, path.parent / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{weights}: GenD's config.json (its head: linear or LinearNorm) must sit beside it "
            "(`dfstream models pull gend_clip_l14` fetches both)"
        )
    try:
        config = json.loads(config_file.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"{config_file}: not JSON: {exc}") from None
    head = config.get("head")
    if config.get("model_type") != "GenD" or head not in HEADS:
        raise ModelLoadError(
            f"{config_file}: not a GenD checkpoint (model_type {config.get('model_type')!r}, head {head!r}; "
            f"expected GenD and one of {', '.join(HEADS)})"
        )
    if "clip" not in str(config.get("backbone", "")).lower():
        raise ModelLoadError(f"{config_file}: backbone {config.get('backbone')!r}; dfstream loads GenD's CLIP variant")
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file: {one_line(exc)}") from exc
    return state, head


def _projection(state: dict[str, torch.Tensor]) -> int:
    projection = state.get("feature_extractor.visual_projection.weight")
    return int(projection.shape[0]) if projection is not None else 768
