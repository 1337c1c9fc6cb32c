"""A Hugging Face image-classification checkpoint folder as a detector, declared in YAML:

    detectors:
      - name: hf
        type: hf_image_classifier
        weights: models/my-vit-deepfake      # config.json + model.safetensors (+ preprocessor_config.json)
        output: {fake_label: Fake}

Read with ``local_files_only`` (a load never downloads) and from safetensors only (a pickled
``pytorch_model.bin`` can run code when read). The folder's own ``preprocessor_config.json`` sets
the input (size, resample, rescale, mean / std) unless ``input`` overrides a field of it; the crops
are prepared by dfstream's preprocessor, so faces from every stream are batched as for any
detector. A processor that resizes the shortest edge and then centre-crops is taken as a stretch to
the crop size: a face box is close to square, so the two differ by the box's few off-square pixels.
``output.fake_label`` names the label that means fake (``id2label``); the checkpoint's
``problem_type`` chooses softmax (one label per image) or sigmoid (multi-label).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from core.errors import ModelLoadError, one_line
from pipeline.models.config import InputSpec, OutputSpec
from pipeline.models.detectors.declared import DeclaredDetector, Shape
from pipeline.models.plugins import register
from pipeline.models.runners import Runner

# PIL's resampling numbers, as processor configs store them, in the preprocessor's terms
_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "area", 5: "area"}


@register("hf_image_classifier")
class HuggingFaceDetector(DeclaredDetector):
    """A Hugging Face ``transformers`` image classifier from its checkpoint folder."""

    kind = "hf_image_classifier"
    backends = ("torch",)

    def _resolve(self, model_path: str) -> Path:
        folder = Path(model_path).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"weights {model_path}: not a folder (a Hugging Face checkpoint is a folder with config.json "
                "and model.safetensors)"
            )
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"weights {model_path}: no config.json in the folder")
        if not any(folder.glob("*.safetensors")):
            pickled = any(folder.glob("*.bin")) and " (only a pickled pytorch_model.bin, which dfstream does not read)"
            raise ModelLoadError(f"weights {model_path}: no safetensors weights in the folder{pickled or ''}")
        return folder

    def _open(self, path: Path) -> tuple[Runner, Shape, bool | None]:
        try:
            from transformers import AutoModelForImageClassification
        except ImportError:
            raise ModelLoadError(
                "type hf_image_classifier needs the transformers library: pip install -e '.[hf]'"
            ) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # notices about the checkpoint's age, not the user's news
                model = AutoModelForImageClassification.from_pretrained(
                    str(path), local_files_only=True, use_safetensors=True
                )
        except Exception as exc:
            raise ModelLoadError(
                f"weights {path}: not an image classifier transformers can read: {one_line(exc)}"
            ) from exc
        model = model.eval().requires_grad_(False).to(self.device)
        if self.fp16:
            model = model.half()
        self.spec_in = _merged_input(self.spec_in, _processor(path))
        self.spec_out = _resolved_output(self.spec_out, model.config)
        device, half = self.device, self.fp16

        @torch.inference_mode()
        def run(batch: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(batch).to(device)
            return model(pixel_values=tensor.half() if half else tensor).logits.float().cpu().numpy()

        return run, [None, 3, None, None], False


def _processor(folder: Path) -> dict:
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"weights {folder}: preprocessor_config.json is not JSON: {exc}") from None


def _merged_input(declared: InputSpec, processor: dict) -> InputSpec:
    """The processor's preprocessing, with every field the user set in ``input`` kept as the user set it."""
    found: dict = {}
    size = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            found["size"] = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            found["size"] = (int(size["shortest_edge"]),) * 2
    elif isinstance(size, int):
        found["size"] = (size, size)
    if processor.get("resample") in _RESAMPLE:
        found["interpolation"] = _RESAMPLE[processor["resample"]]
    if processor.get("do_rescale", True):
        found["scale"] = float(processor.get("rescale_factor", 1 / 255))
    else:
        found["scale"] = 1.0
    if processor.get("do_normalize", True) and "image_mean" in processor and "image_std" in processor:
        found["mean"] = tuple(float(v) for v in processor["image_mean"])
        found["std"] = tuple(float(v) for v in processor["image_std"])
    try:
        merged = InputSpec(**found)
    except ValueError as exc:
        raise ModelLoadError(f"preprocessor_config.json: {one_line(exc)}") from None
    return merged.model_copy(update={k: getattr(declared, k) for k in declared.model_fields_set})


def _resolved_output(declared: OutputSpec, config) -> OutputSpec:
    """``fake_label`` turned into the index it names; softmax or sigmoid as the checkpoint's problem says."""
    update: dict = {}
    if declared.activation is None and declared.type == "logit":
        update["activation"] = "sigmoid" if config.problem_type == "multi_label_classification" else None
    labels = {int(i): str(name) for i, name in (config.id2label or {}).items()}
    if declared.fake_label is not None:
        wanted = declared.fake_label
        exact = [i for i, name in labels.items() if name == wanted]
        loose = [i for i, name in labels.items() if name.lower() == wanted.lower()]
        chosen = exact or (loose if len(loose) == 1 else [])
        if not chosen:
            raise ModelLoadError(
                f"output.fake_label {wanted!r}: the checkpoint's labels are "
                f"{', '.join(labels[i] for i in sorted(labels)) or 'none'}"
            )
        update["fake_index"] = chosen[0]
    elif declared.fake_index is None and declared.real_index is None and len(labels) > 1:
        raise ModelLoadError(
            f"output.fake_label: the checkpoint has {len(labels)} labels "
            f"({', '.join(labels[i] for i in sorted(labels))}); name the one that means fake"
        )
    return declared.model_copy(update=update)
