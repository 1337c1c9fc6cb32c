"""CLIP's image encoder in the two key layouts the published CLIP detectors ship.

OpenAI's release (``ViT-L-14.pt``, the layout open_clip keeps: ``visual.conv1``,
``visual.transformer.resblocks.N.attn.in_proj_weight``, ``visual.proj``) is read by
``OpenAIVisionTower``, written here in that layout so the file's tensors load unchanged (UnivFD's
backbone). Checkpoints saved from transformers' ``CLIPVisionModel`` (``embeddings.patch_embedding``,
``encoder.layers.N.self_attn.q_proj``) load into transformers' own module (GenD, Effort), its size
read from the tensors by ``transformers_vision_config``. Either way the size comes from the file, so
no backbone config is downloaded. Every CLIP ViT has 64-wide attention heads and OpenAI's quick GELU.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from core.errors import ModelLoadError
from pipeline.models.preprocessing import PreprocessingConfig

CLIP_PREPROCESSING = PreprocessingConfig(
    input_size=(224, 224),
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    interpolation="bicubic",
    channel_order="RGB",
    face_crop_margin=0.15,  # the box grown 1.3x
)
HEAD_WIDTH = 64  # every CLIP ViT: heads = width // 64


class QuickGELU(nn.Module):
    """OpenAI's CLIP activation, x * sigmoid(1.702 x) (not nn.GELU: the weights were trained with this)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Attention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``out_proj``) with a plain
    scaled-dot-product body, which exports to ONNX where the fused native kernel does not."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.attn = _Attention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, hidden), gelu=QuickGELU(), c_proj=nn.Linear(hidden, width))
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class OpenAIVisionTower(nn.Module):
    """OpenAI's CLIP ViT image encoder: patches → CLS token + positions → pre-LN transformer →
    LayerNorm of the CLS token → ``proj`` (its ``encode_image``)."""

    def __init__(self, width: int, layers: int, patch_size: int, grid: int, hidden: int, output_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(
            *(_ResidualBlock(width, max(1, width // HEAD_WIDTH), hidden) for _ in range(layers))
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, output_dim))

    @classmethod
    def for_state(cls, state: dict[str, torch.Tensor], path: Path) -> OpenAIVisionTower:
        """The tower the tensors of ``state`` (keys without ``visual.``) describe."""
        try:
            conv, positions = state["conv1.weight"], state["positional_embedding"]
            fc, proj = state["transformer.resblocks.0.mlp.c_fc.weight"], state["proj"]
        except KeyError as exc:
            raise ModelLoadError(f"{path}: no visual.{exc.args[0]}: not OpenAI's CLIP image encoder layout") from None
        layers = len({m.group(1) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
        grid = round((positions.shape[0] - 1) ** 0.5)
        return cls(int(conv.shape[0]), layers, int(conv.shape[-1]), grid, int(fc.shape[0]), int(proj.shape[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls_token = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls_token, x], dim=1) + self.positional_embedding.to(x.dtype))
        x = self.transformer.resblocks(x)
        return self.ln_post(x[:, 0]) @ self.proj


def transformers_vision_config(state: dict[str, torch.Tensor], prefix: str, path: Path, what: str):
    """transformers' ``CLIPVisionConfig`` for the tower whose tensors sit under ``prefix`` in ``state``."""
    try:
        from transformers import CLIPVisionConfig
    except ImportError:
        raise ModelLoadError(f"{what} needs the transformers library: pip install -e '.[hf]'") from None
    try:
        patch = state[prefix + "embeddings.patch_embedding.weight"]
        positions = state[prefix + "embeddings.position_embedding.weight"]
        fc1 = state[prefix + "encoder.layers.0.mlp.fc1.weight"]
    except KeyError as exc:
        raise ModelLoadError(f"{path}: no {exc.args[0]}: not {what}'s CLIP layout (transformers' key names)") from None
    width, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    grid = round((positions.shape[0] - 1) ** 0.5)
    layers = len({m.group(1) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))})
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=int(fc1.shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // HEAD_WIDTH),
        patch_size=patch_size,
        image_size=grid * patch_size,
        hidden_act="quick_gelu",  # OpenAI's CLIP
        layer_norm_eps=1e-5,
    )


def transformers_vision_tower(config) -> nn.Module:
    """transformers' CLIP vision transformer (``embeddings``, ``encoder``, ``post_layernorm``)."""
    from transformers import CLIPVisionModel

    tower = CLIPVisionModel(config)
    # transformers 4 wraps the tower (``.vision_model``), 5 is the tower: the same keys below it
    return getattr(tower, "vision_model", tower)
