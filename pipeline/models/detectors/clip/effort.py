"""Effort (Yan et al.: "Orthogonal Subspace Decomposition for Generalizable AI-Generated Image
Detection", ICML 2025): CLIP ViT-L/14 whose attention projections were split by SVD into a frozen
principal part and a trained residual, and a two-class linear head on the pooled CLS feature.

The released checkpoint (``effort_clip_L14_trainOn_FaceForensic.pth``, a DeepfakeBench state dict)
holds ``backbone.*`` (transformers' CLIP vision transformer: ``embeddings``, ``pre_layrnorm``,
``encoder.layers.N``, ``post_layernorm`` — transformers' layout, so transformers' module is the one
that takes it) and ``head.*``. Each ``self_attn.{q,k,v,out}_proj`` is stored as its SVD parts:
``weight_main`` (U_r diag(S_r) V_r, frozen), the residual ``U_residual``, ``S_residual``,
``V_residual`` (trained) and ``bias``; the authors' layer computes with weight_main + U_residual
diag(S_residual) V_residual on every call. dfstream forms that sum once at load (in float64, then
stored in the module's precision) into a plain linear layer, which computes the same function;
``U_r``, ``S_r``, ``V_r`` (the principal factors, already inside ``weight_main``) are not used, and a
layer saved without a residual (the authors' code stores none when r covers every singular value)
is its ``weight_main``. Input: CLIP's mean and std at 224 px, resized bilinearly (the authors' demo), of a
face grown 1.3x, aligned on the landmarks as the authors' (DeepfakeBench's) training faces were.
P(fake) = softmax(logits)[:, 1] (DeepfakeBench: real 0, fake 1).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.errors import ModelLoadError
from pipeline.models.checkpoints import load_strict, read_state_dict
from pipeline.models.detectors.clip.towers import (
    CLIP_PREPROCESSING,
    transformers_vision_config,
    transformers_vision_tower,
)
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.plugins import register

EFFORT_PREPROCESSING = CLIP_PREPROCESSING.model_copy(update={"interpolation": "bilinear", "face_crop_align": True})
BACKBONE = "backbone."
RESIDUAL = ("U_residual", "S_residual", "V_residual")
PRINCIPAL = ("U_r", "S_r", "V_r")


class EffortNetwork(nn.Module):
    """``backbone`` (CLIP's vision transformer) → pooled CLS feature → ``head`` (two classes)."""

    def __init__(self, vision_config):
        super().__init__()
        self.backbone = transformers_vision_tower(vision_config)
        self.head = nn.Linear(vision_config.hidden_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixel_values=x).pooler_output)


@register("effort")
class EffortDetector(TorchDetector):
    """Effort: CLIP ViT-L/14 with SVD-residual attention, trained on FaceForensics++ (ICML 2025)."""

    architecture = "effort"
    default_weights = "effort_clip_l14_ff"
    preprocessing = EFFORT_PREPROCESSING
    license = "CC-BY-NC-4.0"
    _state: dict[str, torch.Tensor] | None = None

    def build(self) -> nn.Module:
        raise ModelLoadError("effort: the network's size is read from its checkpoint: load it (load_model)")

    def build_for(self, path: Path) -> nn.Module:
        self._state = fold_residuals(read_state_dict(path), path)
        return EffortNetwork(transformers_vision_config(self._state, BACKBONE, path, "Effort"))

    def load_weights(self, module: nn.Module, path: Path) -> None:
        assert self._state is not None, "build_for reads the checkpoint first"
        state, self._state = self._state, None
        load_strict(module, state, path)

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(output.float(), dim=1)[:, 1]


def fold_residuals(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Each SVD-split layer (``X.weight_main`` and its factors) as the plain ``X.weight`` it computes with."""
    layers = [k.removesuffix(".weight_main") for k in state if k.endswith(".weight_main")]
    if not layers:
        raise ModelLoadError(f"{path}: no *.weight_main tensors: not an Effort checkpoint (SVD-residual attention)")
    # transformers before 4.31 saved the position ids (a fixed arange) with the weights; later ones derive them
    folded = {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}
    for layer in layers:
        main = folded.pop(f"{layer}.weight_main")
        parts = {name: folded.pop(f"{layer}.{name}", None) for name in (*RESIDUAL, *PRINCIPAL)}
        missing = [name for name in RESIDUAL if parts[name] is None]
        if len(missing) == len(RESIDUAL):
            folded[f"{layer}.weight"] = main
            continue
        if missing:
            raise ModelLoadError(f"{path}: {layer} has weight_main but no {', '.join(missing)}")
        u, s, v = (parts[name].double() for name in RESIDUAL)
        if u.shape != (main.shape[0], s.shape[0]) or v.shape != (s.shape[0], main.shape[1]):
            raise ModelLoadError(
                f"{path}: {layer}: residual factors U {tuple(u.shape)}, S {tuple(s.shape)}, V {tuple(v.shape)} "
                f"do not compose a {tuple(main.shape)} weight"
            )
        folded[f"{layer}.weight"] = (main.double() + u @ torch.diag(s) @ v).to(main.dtype)
    return folded
