"""Bring your own detector: ONNX and TorchScript image classifiers declared in YAML, no Python.

The models are made here (a small CNN with seeded random weights, exported the way a user would:
``torch.onnx.export`` and ``torch.jit.trace``); every P(fake) dfstream gives is compared with the
PyTorch module called directly on the same crop, prepared by hand from the declaration."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from core.errors import ConfigError, ModelLoadError
from dfstream.config import parse_config
from pipeline.models.preprocessing import crop_with_margin
from pipeline.models.registry import ModelRegistry
from tests.helpers import MemorySink, run_for

SIZE = 32


class TinyNet(nn.Module):
    """A small classifier; ``nhwc``: it takes its input channels-last (as TensorFlow exports do)."""

    def __init__(self, outputs: int = 2, seed: int = 0, nhwc: bool = False, features: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.head = nn.Linear(6, outputs)
        self.nhwc, self.features = nhwc, features

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        pooled = torch.relu(self.conv(x)).mean(dim=(2, 3))
        logits = self.head(pooled) * 4.0  # spread: probabilities well away from 0.5
        return (pooled, logits) if self.features else logits


def export_onnx(module: nn.Module, path, batch: int | None = None, nhwc: bool = False):
    shape = (batch or 1, SIZE, SIZE, 3) if nhwc else (batch or 1, 3, SIZE, SIZE)
    names = ["features", "logits"] if getattr(module, "features", False) else ["logits"]
    torch.onnx.export(
        module.eval(),
        (torch.zeros(shape),),
        str(path),
        dynamo=False,
        input_names=["pixels"],
        output_names=names,
        dynamic_axes=None if batch else {"pixels": {0: "n"}, **{n: {0: "n"} for n in names}},
    )
    return path


def export_torchscript(module: nn.Module, path):
    torch.jit.trace(module.eval(), torch.zeros(1, 3, SIZE, SIZE)).save(str(path))
    return path


def declared(block: str) -> dict:
    """A ``detectors`` entry as a user writes it in the YAML file."""
    return yaml.safe_load(block)


def load(entry: dict):
    config = parse_config({"streams": [{"id": "s", "url": "sample://"}], "detectors": [entry]})
    return ModelRegistry().load_configured(config.detectors)[entry["name"]]


def by_hand(module: nn.Module, crops: list[np.ndarray], mean, std, scale=1 / 255, bgr=False) -> np.ndarray:
    """The model called directly: each crop resized, reordered and normalised as declared."""
    batch = []
    for crop in crops:
        image = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        if bgr:
            image = image[:, :, ::-1]
        batch.append(((image * scale - np.array(mean)) / np.array(std)).transpose(2, 0, 1))
    with torch.no_grad():
        out = module.double()(torch.from_numpy(np.stack(batch)))
    module.float()
    return torch.softmax(out, dim=1)[:, 1].numpy()


@pytest.fixture
def faces():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (SIZE, 48, 90)]


def test_an_onnx_classifier_declared_in_yaml_scores_as_the_model_does(tmp_path, faces):
    net = TinyNet()
    entry = declared(f"""
        name: mine
        type: onnx
        weights: {export_onnx(net, tmp_path / "mine.onnx")}
        input: {{size: [{SIZE}, {SIZE}], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
        output: {{type: logit, fake_index: 1}}
    """)
    detector = load(entry)
    got = [r.fake_probability for r in detector.predict_batch(faces)]
    expected = by_hand(net, faces, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert detector.get_model_info().input_size == (SIZE, SIZE) and not detector.one_at_a_time


def test_bgr_pixels_in_0_255_and_a_channels_last_model(tmp_path, faces):
    net = TinyNet(seed=3, nhwc=True)
    mean = (104.0, 117.0, 123.0)  # in the model's own (BGR) order, as Caffe-era models give them
    entry = declared(f"""
        name: caffe-like
        type: onnx
        weights: {export_onnx(net, tmp_path / "bgr.onnx", nhwc=True)}
        input: {{channels: BGR, scale: 1, mean: [104, 117, 123], std: [58, 57, 57], layout: NHWC}}
        output: {{fake_index: 1}}
    """)
    detector = load(entry)  # the size is the file's own: 32x32
    got = [r.fake_probability for r in detector.predict_batch(faces)]
    plain = TinyNet(seed=3)  # the same weights, channels first, for the call by hand
    plain.load_state_dict(net.state_dict())
    np.testing.assert_allclose(got, by_hand(plain, faces, mean, (58, 57, 57), scale=1, bgr=True), atol=1e-5)


def test_a_torchscript_model_checked_against_the_onnx_it_was_exported_with(tmp_path, faces):
    net = TinyNet(outputs=1, seed=5)
    script = export_torchscript(net, tmp_path / "net.pt")
    entry = declared(f"""
        name: scripted
        type: torchscript
        weights: {script}
        reference: {export_onnx(net, tmp_path / "net.onnx")}
        input: {{size: [{SIZE}, {SIZE}]}}
        output: {{type: logit, real_index: 0}}
    """)
    detector = load(entry)  # one value, and it says P(real): P(fake) = 1 - sigmoid
    image = cv2.resize(faces[1], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        logit = net(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)[0, 0]
    assert detector.predict(faces[1]).fake_probability == pytest.approx(1 - torch.sigmoid(logit).item(), abs=1e-5)
    assert detector.reference_error is not None and detector.reference_error <= 1e-4

    entry["reference"] = str(export_onnx(TinyNet(outputs=1, seed=6), tmp_path / "other.onnx"))
    with pytest.raises(ModelLoadError, match=r"reference .*other.onnx: P\(fake\) up to .* away"):
        load(entry)


def test_a_model_whose_batch_is_fixed_at_one_is_run_a_face_at_a_time(tmp_path, faces):
    net = TinyNet(seed=2)
    entry = declared(f"""
        name: batch-one
        type: onnx
        weights: {export_onnx(net, tmp_path / "one.onnx", batch=1)}
        output: {{fake_index: 1}}
    """)
    detector = load(entry)
    assert detector.one_at_a_time
    got = [r.fake_probability for r in detector.predict_batch(faces)]
    np.testing.assert_allclose(got, by_hand(net, faces, (0, 0, 0), (1, 1, 1)), atol=1e-5)


def wrong(tmp_path) -> dict[str, tuple[dict, str]]:
    logits = str(export_onnx(TinyNet(), tmp_path / "logits.onnx"))
    two = str(export_onnx(TinyNet(features=True), tmp_path / "two.onnx"))
    base = {"name": "m", "type": "onnx", "weights": logits, "output": {"fake_index": 1}}
    return {
        "index beyond the outputs": (
            {**base, "output": {"fake_index": 2}},
            r"output\.fake_index 2: the model gives 2 values",
        ),
        "no index for two values": ({**base, "output": {}}, r"output\.fake_index: the model gives 2 values a face"),
        "the wrong input size": ({**base, "input": {"size": [64, 64]}}, r"input\.size 64x64: the model takes 32x32"),
        "the wrong layout": ({**base, "input": {"layout": "NHWC"}}, r"input\.layout NHWC: .* has 32 channels"),
        "two outputs, none named": (
            {**base, "weights": two},
            r"output\.name: the model has 2 outputs \(features, logits\); name the one to read",
        ),
        "an output that is not there": ({**base, "weights": two, "output": {"name": "score"}}, r"output\.name 'score'"),
        "logits declared as probabilities": (
            {**base, "output": {"type": "probability", "fake_index": 1}},
            r"output\.type probability: the model gives values from .* logits\?",
        ),
        "a missing file": ({**base, "weights": str(tmp_path / "gone.onnx")}, r"weights: .*gone\.onnx.*no such file"),
        "a file that is not a model": (
            {**base, "weights": str(tmp_path / "junk.onnx")},
            r"weights .*junk\.onnx: not a model",
        ),
        "a TorchScript file given as ONNX's reference that is not one": (
            {**base, "reference": logits},
            r"reference: weights .*logits\.onnx: not a TorchScript file",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "index beyond the outputs",
        "no index for two values",
        "the wrong input size",
        "the wrong layout",
        "two outputs, none named",
        "an output that is not there",
        "logits declared as probabilities",
        "a missing file",
        "a file that is not a model",
        "a TorchScript file given as ONNX's reference that is not one",
    ],
)
def test_every_wrong_declaration_is_refused_in_one_line_naming_the_field(tmp_path, case):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01not a protobuf at all" * 10)
    entry, message = wrong(tmp_path)[case]
    with pytest.raises(ModelLoadError) as caught:
        load(entry)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("detectors[0] (m): ")
    assert re.search(message, text), text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "m", "type": "onnx"},
            r"detectors\[0\]: weights: a declared detector \(type onnx\) needs its model file",
        ),
        (
            {"name": "m", "type": "meso4", "input": {"size": [256, 256]}},
            r"detectors\[0\]: input: only a declared detector .* 'meso4' knows its own",
        ),
        (
            {"name": "m", "type": "onnx", "weights": "x.onnx", "output": {"fake_index": 1, "real_index": 0}},
            r"detectors\[0\]\.output: give one of fake_index, real_index or fake_label",
        ),
        ({"name": "m", "type": "onnx", "weights": "x.onnx", "input": {"size": [4, 4]}}, r"input\.size: .*>= 8"),
        (
            {"name": "m", "type": "onnx", "weights": "x.onnx", "output": {"fake_label": "Fake"}},
            r"output\.fake_label: only a Hugging Face checkpoint names its labels",
        ),
        (
            {"name": "m", "type": "hf_image_classifier", "weights": "folder", "reference": "x.onnx"},
            r"reference: only for onnx and torchscript",
        ),
    ],
)
def test_a_declaration_the_config_itself_refuses(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"streams": [{"id": "s", "url": "sample://"}], "detectors": [entry]})


def test_declared_detectors_judge_a_live_rtsp_stream_beside_each_other(tmp_path, rtsp_server):
    net = TinyNet(seed=11)
    server = rtsp_server()
    config = parse_config(
        {
            "streams": [{"id": "cam1", "url": server.url("/cam1")}],
            "detectors": [
                {
                    "name": "onnx-net",
                    "type": "onnx",
                    "weights": str(export_onnx(net, tmp_path / "net.onnx")),
                    "output": {"fake_index": 1},
                },
                {
                    "name": "script-net",
                    "type": "torchscript",
                    "weights": str(export_torchscript(net, tmp_path / "net.pt")),
                    "input": {"size": [SIZE, SIZE]},
                    "output": {"fake_index": 1},
                },
            ],
        }
    )
    from pipeline.runtime.runtime import Runtime

    detectors = ModelRegistry().load_configured(config.detectors)
    sink = MemorySink()
    runtime = Runtime(config, detectors, [sink])
    asyncio.run(run_for(runtime, 4.0))
    scored = [v for v in sink.verdicts("cam1") if v.scored]
    assert len(scored) >= 5
    for v in scored:  # the same network in two formats, batched by their own batchers: the same P(fake)
        assert set(v.models) == {"onnx-net", "script-net"}
        assert v.models["onnx-net"] == pytest.approx(v.models["script-net"], abs=1e-4)
        assert 0.0 < v.models["onnx-net"] < 1.0


def test_a_declared_detector_in_a_file_run_gives_the_model_s_own_p_fake(tmp_path, face_clip):
    net = TinyNet(seed=13)
    config = parse_config(
        {
            "streams": [{"id": "file", "url": str(face_clip), "pace": "asap"}],
            "detectors": [
                {
                    "name": "mine",
                    "type": "onnx",
                    "weights": str(export_onnx(net, tmp_path / "mine.onnx")),
                    "input": {"crop_margin": 0.3},
                    "output": {"fake_index": 1},
                }
            ],
        }
    )
    from pipeline.runtime.runtime import Runtime

    runtime = Runtime(config, ModelRegistry().load_configured(config.detectors), [sink := MemorySink()])
    asyncio.run(run_for(runtime, None))
    scored = {v.frame_seq: v for v in sink.verdicts("file") if v.scored}
    with av.open(str(face_clip)) as container:
        frames = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in scored}
    checked = 0
    for seq, verdict in list(scored.items())[:20]:
        crop = crop_with_margin(frames[seq], verdict.bbox, 0.3)
        assert verdict.models["mine"] == pytest.approx(by_hand(net, [crop], (0, 0, 0), (1, 1, 1))[0], abs=1e-5)
        checked += 1
    assert checked == 20


def test_dfstream_eval_checks_a_declared_detector_from_its_config_file(tmp_path, capsys):
    """Before running it live: the same YAML block, scored on a labelled set."""
    from dfstream.cli import main
    from tests.synthetic import make_labelled_set

    dataset = make_labelled_set(tmp_path / "set", per_class=2, frames=6)
    config = tmp_path / "dfstream.yaml"
    config.write_text(
        f"""
streams: [{{id: cam, url: "sample://"}}]
detectors:
  - name: mine
    type: onnx
    weights: {export_onnx(TinyNet(seed=17), tmp_path / "mine.onnx")}
    output: {{fake_index: 1}}
"""
    )
    out = tmp_path / "report"
    assert main(["eval", str(dataset), "--config", str(config), "--frames", "4", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["mine"]["frame"]["n"] == 16 and 0.0 <= report["models"]["mine"]["frame"]["auc"] <= 1.0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-3].split()[-1] == "ms/crop"  # the cost beside the accuracy, measured here
    assert printed[-2].startswith("mine") and float(printed[-2].split()[-1]) > 0
    assert len(printed[-1].split()) == 5  # the fusion has no cost of its own


@pytest.fixture
def vit_folder(tmp_path):
    """A small ViT image classifier with random weights, saved as a Hugging Face checkpoint folder."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(21)
    config = ViTConfig(
        image_size=SIZE,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "Real", 1: "Fake"},
        label2id={"Real": 0, "Fake": 1},
    )
    folder = tmp_path / "vit-deepfake"
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        folder
    )
    return folder


def test_a_hugging_face_checkpoint_folder_with_its_own_preprocessing(vit_folder, faces):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    entry = declared(f"""
        name: hf
        type: hf_image_classifier
        weights: {vit_folder}
        input: {{crop_margin: 0.4}}
        output: {{fake_label: Fake}}
    """)
    detector = load(entry)
    assert detector.spec_in.mean == (0.5, 0.5, 0.5) and detector.spec_in.crop_margin == 0.4  # the folder's, and ours
    assert detector.spec_out.fake_index == 1
    another = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), np.uint8)
    same_size = [f for f in faces if f.shape[0] == SIZE] + [another]  # at the model's size: no resampling to differ
    processor = AutoImageProcessor.from_pretrained(vit_folder, local_files_only=True)
    model = AutoModelForImageClassification.from_pretrained(vit_folder, local_files_only=True).eval()
    with torch.no_grad():
        logits = model(**processor(images=same_size, return_tensors="pt")).logits
    expected = torch.softmax(logits, dim=1)[:, 1].numpy()
    np.testing.assert_allclose([r.fake_probability for r in detector.predict_batch(same_size)], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"output": {"fake_label": "Deepfake"}},
            r"output\.fake_label 'Deepfake': the checkpoint's labels are Real, Fake",
        ),
        ({"output": {}}, r"output\.fake_label: the checkpoint has 2 labels \(Real, Fake\); name the one"),
        ({"weights": "config.json"}, r"weights .*config\.json: not a folder"),
        ({"weights": "empty"}, r"weights .*empty: no config\.json in the folder"),
        ({"weights": "pickled"}, r"no safetensors weights in the folder \(only a pickled pytorch_model\.bin"),
    ],
)
def test_a_hugging_face_folder_that_does_not_fit_is_refused_in_one_line(vit_folder, change, message):
    (vit_folder.parent / "empty").mkdir()
    pickled = vit_folder.parent / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((vit_folder / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    entry = {"name": "m", "type": "hf_image_classifier", "weights": str(vit_folder), "output": {"fake_label": "Fake"}}
    if "weights" in change:
        name = change["weights"]
        change = {"weights": str(vit_folder / name if name == "config.json" else vit_folder.parent / name)}
    with pytest.raises(ModelLoadError) as caught:
        load({**entry, **change})
    assert "\n" not in str(caught.value) and re.search(message, str(caught.value)), caught.value


def test_without_transformers_the_error_names_the_extra(vit_folder, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(ModelLoadError, match=r"needs the transformers library: pip install -e '\.\[hf\]'"):
        load({"name": "m", "type": "hf_image_classifier", "weights": str(vit_folder), "output": {"fake_label": "Fake"}})


def test_tensorrt_is_onnx_runtime_s_provider_for_a_declared_onnx_model_on_a_gpu(tmp_path, monkeypatch):
    """Without a GPU here: the providers chosen for each case, and the one-line refusals."""
    from pipeline.models.runners import _providers

    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path / "cache"))
    model = Path("mine.onnx")
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt, cuda, cpu = _providers(everything, model, "tensorrt", "cuda:1", True)
    assert trt[0] == "TensorrtExecutionProvider" and trt[1]["device_id"] == 1 and trt[1]["trt_fp16_enable"]
    assert Path(trt[1]["trt_engine_cache_path"]) == tmp_path / "cache" / "tensorrt"  # engines kept across restarts
    assert cuda == ("CUDAExecutionProvider", {"device_id": 1}) and cpu == "CPUExecutionProvider"
    assert _providers(everything, model, "onnxruntime", "cuda", False)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert _providers(everything, model, "onnxruntime", "cpu", False) == ["CPUExecutionProvider"]
    with pytest.raises(
        ModelLoadError,
        match=r"mine\.onnx: .*backend tensorrt, .*no TensorrtExecutionProvider .*"
        r"install onnxruntime-gpu with TensorRT",
    ):
        _providers(["CUDAExecutionProvider", "CPUExecutionProvider"], model, "tensorrt", "cuda", False)
    with pytest.raises(ConfigError, match="backend tensorrt runs on a GPU; the device here is cpu"):
        _providers(everything, model, "tensorrt", "cpu", False)


def test_tensorrt_on_the_cpu_or_for_a_built_in_model_is_refused_in_one_line():
    for entry, message in [
        ({"type": "onnx", "device": "cpu"}, "backend tensorrt runs on a GPU; the device here is cpu"),
        ({"type": "meso4", "device": "cuda"}, "backend tensorrt: for models declared as type onnx, not meso4"),
    ]:
        detector = {"name": "m", "weights": "mine.onnx", "backend": "tensorrt", **entry}
        with pytest.raises(ConfigError, match=message):
            parse_config({"streams": [{"id": "s", "url": "sample://"}], "detectors": [detector]})
