"""Published checkpoint formats load strictly and compute what the reference model computes.

No published file is downloaded in tests: each test builds the reference model as its authors did
(timm, efficientnet_pytorch, or the arithmetic written out), gives it random weights and random
BatchNorm statistics, saves it in the upstream file layout, loads that file through dfstream and
compares the outputs (relative error <= 1e-5)."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from core.errors import ModelLoadError
from pipeline.models.detectors import (
    DFBEfficientNetB4Detector,
    DFBMeso4Detector,
    DFBMesoInception4Detector,
    DFBXceptionDetector,
    DFDCWinnerB7Detector,
)


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, so that no layer is an identity by accident."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.1
                if name.endswith("running_var"):
                    values = values.abs() + 0.5
                elif name.endswith(".weight") and tensor.dim() == 1:  # BN gamma
                    values = values + 1.0
                tensor.copy_(values)
    return model.eval()


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def load(detector_cls, path):
    detector = detector_cls(device="cpu", weights=str(path))
    detector.load_model()
    return detector


def check(name, detector, reference: nn.Module, x: torch.Tensor, probability) -> None:
    """Compared in float64, where the arithmetic of two correct implementations agrees to ~1e-12:
    with random weights a deep network's activations grow large, and float32 rounding (which
    differs between memory layouts) would swamp the comparison without saying anything about the
    mapping of the weights."""
    module = detector.module.double()
    reference = reference.double() if isinstance(reference, nn.Module) else reference
    x = x.double()
    with torch.inference_mode():
        ours_logits = module(x.contiguous(memory_format=torch.channels_last))
        ref_logits = reference(x)
        ours_p = detector.fake_probability(ours_logits)
    error = relative_error(ours_logits, ref_logits)
    print(f"{name}: relative logit error {error:.2e}")
    assert error <= 1e-5
    assert torch.allclose(ours_p, probability(ref_logits).float(), atol=1e-6)


# ---- DeepfakeBench -----------------------------------------------------------------------------------
def test_deepfakebench_xception_matches_timm(tmp_path):
    """timm's legacy_xception is an independent implementation of the same network (head named fc)."""
    import timm

    reference = randomise(timm.create_model("legacy_xception", pretrained=False, num_classes=2), 1)
    state = {
        f"backbone.{k.replace('fc.', 'last_linear.', 1) if k.startswith('fc.') else k}": v
        for k, v in reference.state_dict().items()
    }
    adjust = randomise(nn.Sequential(nn.Conv2d(2048, 512, 1, 1), nn.BatchNorm2d(512), nn.ReLU()), 2)
    state |= {f"backbone.adjust_channel.{k}": v for k, v in adjust.state_dict().items()}  # saved, never run
    torch.save(state, tmp_path / "xception_best.pth")
    detector = load(DFBXceptionDetector, tmp_path / "xception_best.pth")
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(3))
    check("dfb_xception", detector, reference, x, lambda y: torch.softmax(y, 1)[:, 1])


class UpstreamEfficientNetB4(nn.Module):
    """DeepfakeBench's backbone as its efficientnetb4.py builds it."""

    def __init__(self):
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.efficientnet = EfficientNet.from_name("efficientnet-b4")
        self.efficientnet._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
        self.efficientnet._fc = nn.Identity()
        self.last_layer = nn.Linear(1792, 2)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.efficientnet.extract_features(x), (1, 1))
        return self.last_layer(x.view(x.size(0), -1))


def test_deepfakebench_efficientnet_b4_with_its_stem_and_prefix(tmp_path):
    reference = randomise(UpstreamEfficientNetB4(), 4)
    state = {f"module.backbone.{k}": v for k, v in reference.state_dict().items()}  # saved from DataParallel
    torch.save(state, tmp_path / "effnb4_best.pth")
    detector = load(DFBEfficientNetB4Detector, tmp_path / "effnb4_best.pth")
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    check("dfb_efficientnet_b4", detector, reference, x, lambda y: torch.softmax(y, 1)[:, 1])


def meso4_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """DeepfakeBench's Meso4 written out with functional ops on the file's own tensors."""

    def bn(t, name):
        return F.batch_norm(
            t, s[f"{name}.running_mean"], s[f"{name}.running_var"], s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-5
        )

    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv1.weight"], padding=1)), "bn1"), 2)
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv2.weight"], padding=2)), "bn1"), 2)
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv3.weight"], padding=2)), "bn2"), 2)
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv4.weight"], padding=2)), "bn2"), 4)
    x = F.leaky_relu(F.linear(x.flatten(1), s["fc1.weight"], s["fc1.bias"]), 0.1)
    return F.linear(x, s["fc2.weight"], s["fc2.bias"])


def meso_inception_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def bn(t, name):
        return F.batch_norm(
            t, s[f"{name}.running_mean"], s[f"{name}.running_var"], s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-5
        )

    for n in (1, 2):

        def w(k, n=n):
            return s[f"Incption{n}_{k}.weight"]

        branches = [
            F.conv2d(x, w("conv1")),
            F.conv2d(F.conv2d(x, w("conv2_1")), w("conv2_2"), padding=1),
            F.conv2d(F.conv2d(x, w("conv3_1")), w("conv3_2"), padding=2, dilation=2),
            F.conv2d(F.conv2d(x, w("conv4_1")), w("conv4_2"), padding=3, dilation=3),
        ]
        x = F.max_pool2d(bn(torch.cat(branches, 1), f"Incption{n}_bn"), 2)
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv1.weight"], padding=2)), "bn1"), 2)
    x = F.max_pool2d(bn(F.relu(F.conv2d(x, s["conv2.weight"], padding=2)), "bn1"), 4)
    x = F.leaky_relu(F.linear(x.flatten(1), s["fc1.weight"], s["fc1.bias"]), 0.1)
    return F.linear(x, s["fc2.weight"], s["fc2.bias"])


@pytest.mark.parametrize(
    "detector_cls, reference, name",
    [
        (DFBMeso4Detector, meso4_reference, "dfb_meso4"),
        (DFBMesoInception4Detector, meso_inception_reference, "dfb_meso4inception"),
    ],
)
def test_deepfakebench_mesonets(tmp_path, detector_cls, reference, name):
    shapes = randomise(detector_cls(device="cpu").build(), 6).state_dict()
    torch.save({f"backbone.{k}": v for k, v in shapes.items()}, tmp_path / "meso_best.pth")
    detector = load(detector_cls, tmp_path / "meso_best.pth")
    x = torch.randn(3, 3, 256, 256, generator=torch.Generator().manual_seed(7))
    state = {k: v.double() for k, v in shapes.items()}
    check(name, detector, lambda t: reference(state, t), x, lambda y: torch.softmax(y, 1)[:, 1])


# ---- the DFDC winner -----------------------------------------------------------------------------------
class UpstreamDeepFakeClassifier(nn.Module):
    """training/zoo/classifiers.py's DeepFakeClassifier with its tf_efficientnet_b7_ns encoder."""

    def __init__(self):
        super().__init__()
        import timm

        self.encoder = timm.create_model("tf_efficientnet_b7", pretrained=False, drop_path_rate=0.2)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(2560, 1)

    def forward(self, x):
        x = self.avg_pool(self.encoder.forward_features(x)).flatten(1)
        return self.fc(self.dropout(x))


def test_dfdc_winner_b7_from_its_training_dict(tmp_path):
    reference = randomise(UpstreamDeepFakeClassifier(), 8)
    checkpoint = {
        "epoch": 111,
        "bce_best": np.float64(0.19),
        "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()},
    }
    torch.save(checkpoint, tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36")
    detector = load(DFDCWinnerB7Detector, tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(9))
    check("dfdc_b7", detector, reference, x, lambda y: torch.sigmoid(y[:, 0]))


# ---- a wrong file fails loudly ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def meso_state():
    return {f"backbone.{k}": v for k, v in randomise(DFBMeso4Detector(device="cpu").build(), 10).state_dict().items()}


class Payload:
    def __reduce__(self):
        return (print, ("a checkpoint ran code",))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("backbone.bn2.running_var"), "1 missing: backbone.bn2.running_var"),
        (lambda s: s.update({"backbone.head.weight": torch.zeros(2)}), "1 unexpected: backbone.head.weight"),
        (
            lambda s: s.update({"backbone.fc2.weight": torch.zeros(3, 16)}),
            "1 with another shape: backbone.fc2.weight (3, 16) != (2, 16)",
        ),
        (
            lambda s: [s.update({k.removeprefix("backbone."): s.pop(k)}) for k in list(s)],
            "expected every key under 'backbone.'",
        ),
        (
            lambda s: s["backbone.conv1.weight"].view(-1).__setitem__(0, float("nan")),
            "hold NaN or inf: backbone.conv1.weight",
        ),
    ],
    ids=["missing", "unexpected", "shape", "no-prefix", "nan"],
)
def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path, meso_state, change, message):
    state = {k: v.clone() for k, v in meso_state.items()}
    change(state)
    torch.save(state, tmp_path / "meso4_best.pth")
    with pytest.raises(ModelLoadError) as info:
        load(DFBMeso4Detector, tmp_path / "meso4_best.pth")
    assert message in str(info.value) and "meso4_best.pth" in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"\x00" * 100, "not a readable PyTorch checkpoint"),
        (pickle.dumps(Payload()), "not a readable PyTorch checkpoint"),
        (None, "holds no state_dict"),
    ],
    ids=["empty", "zeros", "code-in-pickle", "not-a-state-dict"],
)
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unreadable_or_unsafe_files_are_refused(tmp_path, content, message, capsys):
    path = tmp_path / "xception_best.pth"
    if content is None:
        torch.save({"epoch": 3}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load(DFBXceptionDetector, path)
    assert "a checkpoint ran code" not in capsys.readouterr().out


# ---- preprocessing profiles ------------------------------------------------------------------------
PROFILES = {
    # detector: (input size, resize, interpolation, mean, std, margin per side, polarity)
    DFBXceptionDetector: ((256, 256), "stretch", "bicubic", (0.5,) * 3, (0.5,) * 3, 0.15, "softmax[:, 1]"),
    DFBEfficientNetB4Detector: ((256, 256), "stretch", "bicubic", (0.5,) * 3, (0.5,) * 3, 0.15, "softmax[:, 1]"),
    DFBMeso4Detector: ((256, 256), "stretch", "bicubic", (0.5,) * 3, (0.5,) * 3, 0.15, "softmax[:, 1]"),
    DFBMesoInception4Detector: ((256, 256), "stretch", "bicubic", (0.5,) * 3, (0.5,) * 3, 0.15, "softmax[:, 1]"),
    DFDCWinnerB7Detector: (
        (380, 380),
        "longest_side_pad",
        "bilinear",
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        1 / 3,
        "sigmoid",
    ),
}


@pytest.mark.parametrize("detector_cls", list(PROFILES), ids=lambda c: c.architecture)
def test_preprocessing_profiles_are_pinned(detector_cls):
    size, resize, interpolation, mean, std, margin, polarity = PROFILES[detector_cls]
    p = detector_cls.preprocessing
    assert (p.input_size, p.resize_mode, p.interpolation, p.mean, p.std) == (size, resize, interpolation, mean, std)
    assert p.face_crop_margin == pytest.approx(margin) and p.channel_order == "RGB" and p.normalize
    assert p.face_crop_rounding == ("integer" if detector_cls is DFDCWinnerB7Detector else "outward")
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    expected = torch.softmax(logits, 1)[:, 1] if polarity == "softmax[:, 1]" else torch.sigmoid(logits[:, 0])
    assert torch.allclose(detector_cls(device="cpu").fake_probability(logits), expected)


def test_deepfakebench_input_is_a_bicubic_stretch_normalised_around_half(astronaut):
    import cv2

    crop = astronaut[40:260, 150:330]  # 220 x 180, not square
    tensor = DFBXceptionDetector(device="cpu").preprocessor.preprocess(crop)
    expected = (cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255 - 0.5) / 0.5
    assert torch.allclose(tensor, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-6)


def test_dfdc_input_keeps_the_aspect_and_pads_black(astronaut):
    import cv2

    crop = astronaut[40:160, 100:300]  # 120 x 200: the long side is enlarged to 380 with bicubic
    tensor = DFDCWinnerB7Detector(device="cpu").preprocessor.preprocess(crop)
    resized = cv2.resize(crop, (380, 228), interpolation=cv2.INTER_CUBIC)
    square = np.zeros((380, 380, 3), np.uint8)
    square[76 : 76 + 228] = resized  # (380 - 228) // 2 rows above
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    expected = (square.astype(np.float32) / 255 - mean) / std
    assert torch.allclose(tensor, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-5)
    big = np.full((900, 500, 3), 200, np.uint8)  # shrunk with area interpolation: a flat image stays flat
    image = DFDCWinnerB7Detector(device="cpu").preprocessor.prepare(big)
    assert image.shape == (380, 380, 3) and (image[:, 84:295] == 200).all() and (image[:, :84] == 0).all()


def test_a_zoo_detector_runs_in_the_streaming_runtime(tmp_path, short_clip):
    """From the config file's point of view a DeepfakeBench checkpoint is one more detector type."""
    import asyncio

    from dfstream.config import parse_config
    from pipeline.runtime.runtime import Runtime
    from tests.helpers import MemorySink, load_detectors

    state = randomise(DFBMeso4Detector(device="cpu").build(), 11).state_dict()
    torch.save({f"backbone.{k}": v for k, v in state.items()}, tmp_path / "meso4_best.pth")
    config = parse_config(
        {
            "streams": [{"id": "clip", "url": str(short_clip), "pace": "asap"}],
            "detectors": [{"name": "dfb", "type": "dfb_meso4", "weights": str(tmp_path / "meso4_best.pth")}],
        }
    )
    sink = MemorySink()
    asyncio.run(Runtime(config, load_detectors(config), [sink]).run())
    verdicts = sink.verdicts("clip")
    assert len(verdicts) == 60 and all(set(v.models) == {"dfb"} and 0 <= v.models["dfb"] <= 1 for v in verdicts)


def test_dfdc_crop_is_the_winners_integer_rule(astronaut):
    """int(box), then a third of the width and height (floored) on each side, clamped at 0."""
    box = (181.7, 62.2, 280.9, 172.9)  # int → 181, 62, 280, 172: w 99, h 110 → pads 33, 36
    crop = DFDCWinnerB7Detector(device="cpu").preprocessor.crop(astronaut, box)
    assert crop.shape[:2] == (172 + 36 - (62 - 36), 280 + 33 - (181 - 33))
    assert (crop == astronaut[62 - 36 : 172 + 36, 181 - 33 : 280 + 33]).all()
    edge = DFDCWinnerB7Detector(device="cpu").preprocessor.crop(astronaut, (10.0, 5.0, 70.0, 95.0))
    assert (edge == astronaut[0 : 95 + 30, 0 : 70 + 20]).all()  # clamped at the top-left corner
    outward = DFBXceptionDetector(device="cpu").preprocessor.crop(astronaut, box)  # 0.15 per side, rounded out
    assert outward.shape[:2] == (
        int(np.ceil(172.9 + 0.15 * 110.7)) - int(np.floor(62.2 - 0.15 * 110.7)),
        int(np.ceil(280.9 + 0.15 * 99.2)) - int(np.floor(181.7 - 0.15 * 99.2)),
    )


# ---- GenD (WACV 2026): transformers' CLIP vision tower and a linear head -----------------------------
class UpstreamGenD(nn.Module):
    """GenD as its authors assemble it: CLIPModel's vision tower and projection, a two-class linear
    head on the pooled CLS feature, L2-normalised first with the LinearNorm head."""

    def __init__(self, normalize: bool, image_size: int = 28):
        super().__init__()
        from transformers import CLIPConfig, CLIPModel

        vision = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}
        config = CLIPConfig(
            vision_config={**vision, "patch_size": 14, "image_size": image_size},
            text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1},
            projection_dim=48,
        )
        clip = CLIPModel(config)
        self.vision_model, self.visual_projection = clip.vision_model, clip.visual_projection
        self.linear = nn.Linear(128, 2)
        self.normalize = normalize

    def forward(self, x):
        features = self.vision_model(pixel_values=x).pooler_output
        return self.linear(F.normalize(features, dim=1) if self.normalize else features)

    def save_as_released(self, folder, head: str):
        """The Hugging Face folder: config.json and model.safetensors in GenD's key layout."""
        from safetensors.torch import save_file

        state = {f"feature_extractor.vision_model.{k}": v for k, v in self.vision_model.state_dict().items()}
        state["feature_extractor.visual_projection.weight"] = self.visual_projection.weight
        state.update({f"model.linear.{k}": v for k, v in self.linear.state_dict().items()})
        folder.mkdir()
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
        config = {"model_type": "GenD", "backbone": "openai/clip-vit-large-patch14", "head": head}
        (folder / "config.json").write_text(json.dumps(config))
        return folder / "model.safetensors"


@pytest.mark.parametrize("head", ["linear", "LinearNorm"])
def test_gend_from_its_hugging_face_folder(tmp_path, head):
    from pipeline.models.detectors import GenDDetector

    reference = randomise(UpstreamGenD(normalize=head == "LinearNorm"), 12)
    detector = load(GenDDetector, reference.save_as_released(tmp_path / "GenD_CLIP_L_14", head))
    assert detector.module.normalize is (head == "LinearNorm")
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(13))
    check(f"gend ({head})", detector, reference, x, lambda y: torch.softmax(y, dim=1)[:, 1])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "GenD's config.json (its head: linear or LinearNorm) must sit beside it"),
        ({"model_type": "GenD", "backbone": "openai/clip-vit-large-patch14", "head": "mlp"}, "head 'mlp'"),
        ({"model_type": "GenD", "backbone": "vit_pe_core_large_patch14_336", "head": "linear"}, "GenD's CLIP variant"),
    ],
)
def test_a_gend_folder_that_is_not_the_clip_release_is_refused(tmp_path, config, message):
    import json

    from pipeline.models.detectors import GenDDetector

    weights = UpstreamGenD(normalize=False).save_as_released(tmp_path / "GenD", "linear")
    if config is None:
        (weights.parent / "config.json").unlink()
    else:
        (weights.parent / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        load(GenDDetector, weights)


def test_gend_runs_on_onnx_runtime_as_it_does_in_pytorch(tmp_path, monkeypatch, astronaut):
    """At its real input size (224 px): exported at load, checked against PyTorch there."""
    from pipeline.models.detectors import GenDDetector

    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path / "cache"))
    reference = randomise(UpstreamGenD(normalize=True, image_size=224), 14)
    weights = reference.save_as_released(tmp_path / "GenD", "LinearNorm")
    scores = {}
    for backend in ("torch", "onnxruntime"):
        detector = GenDDetector(device="cpu", weights=str(weights), backend=backend)
        detector.load_model()
        scores[backend] = detector.predict(astronaut).fake_probability
    assert scores["onnxruntime"] == pytest.approx(scores["torch"], abs=1e-4)


# ---- UnivFD (CVPR 2023): one linear unit on OpenAI's CLIP image encoder ---------------------------------
def openai_clip_state(image_size=28, width=128, layers=2, patch=14, output_dim=48, seed=21):
    """Random tensors named and shaped as OpenAI's clip/model.py saves a ViT CLIP: the image
    encoder under ``visual.`` and, beside it, text-tower tensors UnivFD does not read."""
    generator = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.1, offset=0.0):
        return torch.randn(shape, generator=generator) * scale + offset

    grid = image_size // patch
    state = {
        "visual.conv1.weight": r(width, 3, patch, patch),
        "visual.class_embedding": r(width),
        "visual.positional_embedding": r(grid * grid + 1, width),
        "visual.ln_pre.weight": r(width, offset=1.0),
        "visual.ln_pre.bias": r(width),
    }
    for i in range(layers):
        block = f"visual.transformer.resblocks.{i}."
        for name, shape in {
            "attn.in_proj_weight": (3 * width, width),
            "attn.in_proj_bias": (3 * width,),
            "attn.out_proj.weight": (width, width),
            "attn.out_proj.bias": (width,),
            "mlp.c_fc.weight": (4 * width, width),
            "mlp.c_fc.bias": (4 * width,),
            "mlp.c_proj.weight": (width, 4 * width),
            "mlp.c_proj.bias": (width,),
        }.items():
            state[block + name] = r(*shape)
        for norm in ("ln_1", "ln_2"):
            state[f"{block}{norm}.weight"], state[f"{block}{norm}.bias"] = r(width, offset=1.0), r(width)
    state["visual.ln_post.weight"], state["visual.ln_post.bias"] = r(width, offset=1.0), r(width)
    state["visual.proj"] = r(width, output_dim)
    state["token_embedding.weight"], state["logit_scale"] = r(64, 32), torch.tensor(4.6052)
    return state


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_as_torchscript(state: dict, path) -> None:
    """A TorchScript archive whose state_dict is ``state``, as OpenAI publishes ViT-L-14.pt."""
    root = _Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if part not in module._modules:
                module.add_module(part, _Holder())
            module = module._modules[part]
        module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    torch.jit.save(torch.jit.script(root), str(path))


class UpstreamUnivFD(nn.Module):
    """UnivFD on timm's VisionTransformer, an independent implementation of CLIP's image encoder,
    filled by timm's own converter of OpenAI's checkpoint layout."""

    def __init__(self, state: dict, fc: nn.Linear, image_size=28, width=128, layers=2, output_dim=48):
        super().__init__()
        from functools import partial

        from timm.models.vision_transformer import VisionTransformer, _convert_openai_clip

        self.encoder = VisionTransformer(
            img_size=image_size,
            patch_size=14,
            embed_dim=width,
            depth=layers,
            num_heads=width // 64,
            pre_norm=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-5),
            act_layer="quick_gelu",
            num_classes=output_dim,
            global_pool="token",
        )
        self.encoder.load_state_dict(_convert_openai_clip(state, self.encoder), strict=True)
        self.fc = fc

    def forward(self, x):
        return self.fc(self.encoder(x))


@pytest.mark.parametrize("backbone_format", ["torchscript", "state_dict"])
def test_univfd_matches_timm_on_openai_clip_weights(tmp_path, backbone_format):
    from pipeline.models.detectors import UnivFDDetector

    # OpenAI ships half precision: the reference gets the same rounded weights
    state = {k: v.half() for k, v in openai_clip_state().items()}
    folder = tmp_path / "UnivFD"
    folder.mkdir()
    if backbone_format == "torchscript":
        save_as_torchscript(state, folder / "ViT-L-14.pt")
    else:
        torch.save(state, folder / "ViT-L-14.pt")
    fc = randomise(nn.Linear(48, 1), 22)
    torch.save(fc.state_dict(), folder / "fc_weights.pth")  # the authors' file: the head alone
    reference = UpstreamUnivFD({k: v.float() for k, v in state.items()}, fc).eval()
    detector = load(UnivFDDetector, folder / "fc_weights.pth")
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(23))
    check(f"univfd ({backbone_format})", detector, reference, x, lambda y: torch.sigmoid(y)[:, 0])


def test_univfd_without_its_backbone_or_with_another_one_is_refused(tmp_path):
    from pipeline.models.detectors import UnivFDDetector

    torch.save(nn.Linear(48, 1).state_dict(), tmp_path / "fc_weights.pth")
    with pytest.raises(ModelLoadError, match=r"UnivFD's backbone, OpenAI's CLIP ViT-L-14\.pt, must sit beside it"):
        load(UnivFDDetector, tmp_path / "fc_weights.pth")
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "ViT-L-14.pt")
    with pytest.raises(ModelLoadError, match=r"no visual\.\* tensors: not a CLIP checkpoint"):
        load(UnivFDDetector, tmp_path / "fc_weights.pth")
    torch.save(openai_clip_state(output_dim=32), tmp_path / "ViT-L-14.pt")  # a head for another embedding width
    with pytest.raises(ModelLoadError, match=r"fc_weights\.pth does not fit .*weight \(1, 48\) != \(1, 32\)"):
        load(UnivFDDetector, tmp_path / "fc_weights.pth")


def test_univfd_runs_on_onnx_runtime_as_it_does_in_pytorch(tmp_path, monkeypatch, astronaut):
    """OpenAI's tower as dfstream writes it (plain attention) exports at its real input size."""
    from pipeline.models.detectors import UnivFDDetector

    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "UnivFD"
    folder.mkdir()
    torch.save(openai_clip_state(image_size=224), folder / "ViT-L-14.pt")
    torch.save(randomise(nn.Linear(48, 1), 24).state_dict(), folder / "fc_weights.pth")
    scores = {}
    for backend in ("torch", "onnxruntime"):
        detector = UnivFDDetector(device="cpu", weights=str(folder / "fc_weights.pth"), backend=backend)
        detector.load_model()
        scores[backend] = detector.predict(astronaut).fake_probability
    assert scores["onnxruntime"] == pytest.approx(scores["torch"], abs=1e-4)


# ---- Effort (ICML 2025): CLIP's vision transformer with SVD-residual attention -----------------------
class SVDResidualLinear(nn.Module):
    """The authors' layer: a frozen principal weight plus a trained residual, composed on every call."""

    def __init__(self, linear: nn.Linear, rank: int, generator: torch.Generator):
        super().__init__()
        u, s, vh = torch.linalg.svd(linear.weight.data, full_matrices=False)
        self.weight_main = nn.Parameter(u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank], requires_grad=False)
        self.bias = nn.Parameter(linear.bias.data.clone())
        # "trained": the residual moved away from the SVD's, so a fold that ignored it would show
        self.U_residual = nn.Parameter(u[:, rank:] + 0.05 * torch.randn(u[:, rank:].shape, generator=generator))
        self.S_residual = nn.Parameter(s[rank:] + 0.5)
        self.V_residual = nn.Parameter(vh[rank:] + 0.05 * torch.randn(vh[rank:].shape, generator=generator))
        self.U_r = nn.Parameter(u[:, :rank], requires_grad=False)
        self.S_r = nn.Parameter(s[:rank], requires_grad=False)
        self.V_r = nn.Parameter(vh[:rank], requires_grad=False)

    def forward(self, x):
        residual = self.U_residual @ torch.diag(self.S_residual) @ self.V_residual
        return F.linear(x, self.weight_main + residual, self.bias)


class UpstreamEffort(nn.Module):
    """Effort as its authors assemble it: transformers' CLIP vision tower, every self-attention
    projection replaced by ``SVDResidualLinear`` (rank n - 1 kept frozen), a two-class head."""

    def __init__(self, seed: int):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        config = CLIPVisionConfig(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=14,
            image_size=28,
            hidden_act="quick_gelu",
        )
        tower = CLIPVisionModel(config)
        self.backbone = randomise(getattr(tower, "vision_model", tower), seed)
        generator = torch.Generator().manual_seed(seed)
        for layer in self.backbone.encoder.layers:
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear = getattr(layer.self_attn, name)
                setattr(layer.self_attn, name, SVDResidualLinear(linear, linear.in_features - 1, generator))
        self.head = randomise(nn.Linear(128, 2), seed + 1)

    def forward(self, x):
        return self.head(self.backbone(pixel_values=x).pooler_output)


def test_effort_folds_its_svd_residuals_and_matches_the_authors_layers(tmp_path):
    from pipeline.models.detectors import EffortDetector

    reference = UpstreamEffort(seed=31).eval()
    path = tmp_path / "effort_clip_L14_trainOn_FaceForensic.pth"
    # DeepfakeBench saves the DataParallel-wrapped detector's state dict
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    detector = load(EffortDetector, path)
    assert detector.preprocessing.interpolation == "bilinear" and detector.license == "CC-BY-NC-4.0"
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(32))
    check("effort", detector, reference, x, lambda y: torch.softmax(y, dim=1)[:, 1])


def test_an_effort_checkpoint_without_its_residuals_is_refused(tmp_path):
    from pipeline.models.detectors import EffortDetector

    state = UpstreamEffort(seed=33).state_dict()
    del state["backbone.encoder.layers.0.self_attn.q_proj.S_residual"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ModelLoadError, match=r"layers\.0\.self_attn\.q_proj has weight_main but no S_residual"):
        load(EffortDetector, tmp_path / "broken.pth")
    plain = {k: v for k, v in UpstreamGenD(normalize=False).state_dict().items()}
    torch.save(plain, tmp_path / "not_effort.pth")
    with pytest.raises(ModelLoadError, match=r"no \*\.weight_main tensors: not an Effort checkpoint"):
        load(EffortDetector, tmp_path / "not_effort.pth")
