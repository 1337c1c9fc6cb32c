"""UnivFD (Ojha, Li, Lee: "Towards Universal Fake Image Detectors that Generalize Across
Generative Models", CVPR 2023): OpenAI's CLIP ViT-L/14 image encoder, frozen, and one linear unit
on its 768-wide image embedding (``encode_image``: after ``ln_post`` and ``proj``, not normalised).

Two files, as the authors ship them: ``fc_weights.pth`` (their repository; ``weight`` (1, 768) and
``bias`` (1,), the head alone) and OpenAI's own ``ViT-L-14.pt`` beside it, which their code fetches
with ``clip.load``. That file is OpenAI's layout (``visual.conv1``,
``visual.transformer.resblocks.N.attn.in_proj_weight``, ``visual.proj``), which open_clip keeps and
transformers does not (it splits ``in_proj`` into q/k/v), so ``OpenAIVisionTower`` takes its
``visual.*`` tensors unchanged; the text tower in the same file is not used. OpenAI publishes it as a
TorchScript archive, read with ``torch.jit.load`` (TorchScript, not pickle: no Python runs); a
plain state dict or safetensors file in the same layout (open_clip's copies) is read as data.

P(fake) = sigmoid of the unit (the authors label real 0, fake 1). UnivFD was trained on ProGAN
images of 20 LSUN classes, not on faces: its published figures are for GAN and diffusion images;
what it does on face swaps is for ``dfstream eval`` on labelled clips to say.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from core.errors import ModelLoadError, one_line
from pipeline.models.checkpoints import load_strict, read_state_dict
from pipeline.models.detectors.clip.towers import CLIP_PREPROCESSING, OpenAIVisionTower
from pipeline.models.detectors.torch_detector import TorchDetector
from pipeline.models.plugins import register

BACKBONE_FILE = "ViT-L-14.pt"  # OpenAI's name for it; dfstream looks for it beside fc_weights.pth
VISUAL = "visual."


class UnivFDNetwork(nn.Module):
    """``visual`` (CLIP's image encoder) → ``fc`` (one unit)."""

    def __init__(self, visual: OpenAIVisionTower, embedding: int):
        super().__init__()
        self.visual = visual
        self.fc = nn.Linear(embedding, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.visual(x))


@register("univfd")
class UnivFDDetector(TorchDetector):
    """UnivFD: a linear probe on frozen CLIP ViT-L/14 (CVPR 2023), trained on ProGAN images."""

    architecture = "univfd"
    default_weights = "univfd_clip_l14"
    preprocessing = CLIP_PREPROCESSING
    license = "MIT"
    _states: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Path] | None = None

    def build(self) -> nn.Module:
        raise ModelLoadError("univfd: the network's size is read from its checkpoints: load it (load_model)")

    def build_for(self, path: Path) -> nn.Module:
        head = read_state_dict(path)
        backbone = path.parent / BACKBONE_FILE
        visual = _visual_state(backbone, path)
        tower = OpenAIVisionTower.for_state(visual, backbone)
        self._states = head, visual, backbone
        return UnivFDNetwork(tower, int(tower.proj.shape[1]))

    def load_weights(self, module: nn.Module, path: Path) -> None:
        assert self._states is not None, "build_for reads the checkpoints first"
        (head, visual, backbone), self._states = self._states, None
        load_strict(module.fc, head, path)
        load_strict(module.visual, visual, backbone)

    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output.float())[:, 0]


def _visual_state(backbone: Path, head: Path) -> dict[str, torch.Tensor]:
    """The image encoder's tensors (``visual.*``, prefix removed) of OpenAI's CLIP file."""
    if not backbone.is_file():
        raise ModelLoadError(
            f"{head}: UnivFD's backbone, OpenAI's CLIP {BACKBONE_FILE}, must sit beside it as {backbone} "
            "(`dfstream models pull univfd_clip_l14` fetches both)"
        )
    if backbone.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(backbone))
        except Exception as exc:
            raise ModelLoadError(f"{backbone}: not a readable safetensors file: {one_line(exc)}") from exc
    elif _is_torchscript(backbone):
        try:
            with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript; OpenAI's file is one
                warnings.simplefilter("ignore", FutureWarning)
                state = dict(torch.jit.load(str(backbone), map_location="cpu").state_dict())
        except Exception as exc:  # a damaged archive raises anything from RuntimeError to KeyError
            raise ModelLoadError(f"{backbone}: not a readable TorchScript archive: {one_line(exc)}") from exc
    else:
        state = read_state_dict(backbone)
    visual = {k.removeprefix(VISUAL): v for k, v in state.items() if k.startswith(VISUAL)}
    if not visual:
        raise ModelLoadError(f"{backbone}: no visual.* tensors: not a CLIP checkpoint (OpenAI's or open_clip's)")
    # OpenAI ships half precision; the tower computes in the detector's precision (load_strict copies into it)
    return {k: v.float() for k, v in visual.items()}


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with ``code/`` beside its data (``torch.save`` zips have none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
