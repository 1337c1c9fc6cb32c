"""What the CLIP ViT-L/14 detectors (GenD, UnivFD, Effort) cost per face on this machine, beside
MesoNet-4, on each backend: the price to weigh against their published accuracy.

    python -m bench.clip_zoo [--seconds 10] [--backends torch,onnxruntime]

Each network is built at its released size (ViT-L/14 at 224 px: 24 layers, width 1024) with
random weights, written in its authors' file layout (GenD's Hugging Face folder, UnivFD's
``fc_weights.pth`` beside an OpenAI-layout CLIP file, Effort's SVD-split state dict) and loaded
through dfstream as a user's download would be; random weights cost what trained ones do. The
faces are the sample clip's, found by the default face finder, cut and preprocessed by each
detector's own rules (``score_crops``: the runtime's path from a frame and a box to P(fake)).
Prints load seconds and milliseconds per face at batch 1 and 8; writes bench/clip_zoo_results.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bench.stages import best_of
from pipeline.models.detectors import EffortDetector, GenDDetector, Meso4Detector, UnivFDDetector
from pipeline.models.detectors.clip.effort import EffortNetwork
from pipeline.models.detectors.clip.gend import GenDNetwork
from pipeline.models.detectors.clip.towers import OpenAIVisionTower
from pipeline.models.detectors.clip.univfd import UnivFDNetwork
from pipeline.models.faces.finder import FaceDetector, FacesConfig
from pipeline.runtime.runtime import share_cpu_threads
from stream.sample import sample_frames

HERE = Path(__file__).resolve().parent
WIDTH, LAYERS, PATCH, GRID, EMBEDDING = 1024, 24, 14, 16, 768  # CLIP ViT-L/14 at 224 px


def _random(module: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
    return module


def _vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=WIDTH // 64,
        patch_size=PATCH,
        image_size=GRID * PATCH,
        hidden_act="quick_gelu",
    )


def write_gend(folder: Path) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    net = _random(GenDNetwork(_vision_config(), EMBEDDING, normalize=True))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    config = {"model_type": "GenD", "backbone": "openai/clip-vit-large-patch14", "head": "LinearNorm"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "model.safetensors"


def write_univfd(folder: Path) -> Path:
    folder.mkdir()
    net = _random(UnivFDNetwork(OpenAIVisionTower(WIDTH, LAYERS, PATCH, GRID, 4 * WIDTH, EMBEDDING), EMBEDDING))
    # OpenAI's file holds the tower under visual., in half precision
    torch.save({f"visual.{k}": v.half() for k, v in net.visual.state_dict().items()}, folder / "ViT-L-14.pt")
    torch.save(net.fc.state_dict(), folder / "fc_weights.pth")
    return folder / "fc_weights.pth"


def write_effort(folder: Path) -> Path:
    folder.mkdir()
    state = _random(EffortNetwork(_vision_config())).state_dict()
    for key in [k for k in state if ".self_attn." in k and k.endswith(".weight")]:
        weight = state.pop(key)  # as the authors store it: a principal part and a rank-1 residual
        layer = key.removesuffix(".weight")
        state[f"{layer}.weight_main"] = weight
        state[f"{layer}.U_residual"] = torch.zeros(weight.shape[0], 1)
        state[f"{layer}.S_residual"] = torch.zeros(1)
        state[f"{layer}.V_residual"] = torch.zeros(1, weight.shape[1])
    torch.save(state, folder / "effort.pth")
    return folder / "effort.pth"


def measure(detector, items, seconds: float) -> dict[str, float]:
    out = {}
    for batch in (1, 8):
        chunk = [items[i % len(items)] for i in range(batch)]
        out[f"ms_per_face_batch{batch}"] = round(1000 / best_of(lambda: len(detector.score_crops(chunk)), seconds), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed per detector, backend and batch")
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--meso4", type=Path, help="Meso4_DF.h5, for the row to compare with (optional)")
    args = parser.parse_args()
    share_cpu_threads(1)  # one detector at a time gets the machine, as eval gives it
    finder = FaceDetector(FacesConfig())
    frames = list(sample_frames(8))
    items = [(f, tuple(finder.detect([f])[0].xyxy[0])) for f in frames[:4]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writers = {"gend": (GenDDetector, write_gend), "univfd": (UnivFDDetector, write_univfd)}
        writers["effort"] = (EffortDetector, write_effort)
        for name, (cls, write) in writers.items():
            weights = write(Path(tmp) / name)
            for backend in args.backends.split(","):
                start = time.perf_counter()
                detector = cls(device="cpu", weights=str(weights), backend=backend)
                detector.load_model()
                row = {"detector": name, "backend": backend, "load_s": round(time.perf_counter() - start, 1)}
                row.update(measure(detector, items, args.seconds))
                rows.append(row)
                print(json.dumps(row), flush=True)
                del detector
        if args.meso4 is not None:
            for backend in args.backends.split(","):
                detector = Meso4Detector(device="cpu", weights=str(args.meso4), backend=backend)
                detector.load_model()
                row = {"detector": "meso4", "backend": backend, **measure(detector, items, args.seconds)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"machine": f"{torch.get_num_threads()} threads", "rows": rows}
    (HERE / "clip_zoo_results.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
