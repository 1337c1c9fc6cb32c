"""AASIST and AASIST-L written here from the paper and the checkpoints' layout give the logits the
authors' own implementation gives (../shared/models/aasist/reference/), alone and in a batch; a
broken checkpoint is refused naming the file and the tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.errors import ModelLoadError
from pipeline.models.audio.aasist import WINDOW, load_aasist, sinc_filters, tile

pytestmark = pytest.mark.weights
VARIANTS = [("AASIST.pth", "aasist"), ("AASIST-L.pth", "aasist_l")]


@pytest.fixture(scope="module")
def reference(aasist_dir):
    inputs = np.load(aasist_dir / "reference" / "inputs.npz")
    return {name: inputs[name] for name in inputs.files}, json.loads(
        (aasist_dir / "reference" / "logits.json").read_text()
    )


@pytest.mark.parametrize(("filename", "variant"), VARIANTS)
def test_the_network_reproduces_the_authors_logits(aasist_dir, reference, filename, variant):
    inputs, logits = reference
    model = load_aasist(aasist_dir / filename, variant)
    names = sorted(inputs)
    batch = torch.from_numpy(np.stack([tile(inputs[n]) for n in names]).astype(np.float32))
    with torch.no_grad():
        together = model(batch).numpy()
        alone = np.concatenate([model(batch[i : i + 1]).numpy() for i in range(len(names))])
    want = np.array([logits["models"][filename]["logits"][n] for n in names])
    assert np.abs(alone - want).max() < 1e-4, np.abs(alone - want).max()
    assert np.abs(together - want).max() < 1e-4  # batched: no sample leaks into another
    print(f"\n{variant}: max |logit - reference| {np.abs(alone - want).max():.1e} over {', '.join(names)}")


def test_the_sinc_front_end_is_rebuilt_not_loaded(aasist_dir):
    model = load_aasist(aasist_dir / "AASIST.pth", "aasist")
    assert len(model.state_dict()) == 229 and "conv_time.filters" not in model.state_dict()
    filters = sinc_filters(70, 128)
    assert filters.shape == (70, 1, 129)  # an even `first_conv` gets one more tap
    assert torch.allclose(filters[:, 0], filters[:, 0].flip(-1))  # symmetric: linear phase


def test_audio_is_tiled_or_cut_to_the_authors_window():
    short = np.arange(1000, dtype=np.float32)
    assert len(tile(short)) == WINDOW and tile(short)[1000] == 0 and tile(short)[-1] == (WINDOW - 1) % 1000
    assert np.array_equal(tile(np.ones(70_000, np.float32)), np.ones(WINDOW, np.float32))
    with pytest.raises(ValueError, match="an empty waveform"):
        tile(np.zeros(0, np.float32))


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda s: s.pop("out_layer.bias"), r"AASIST.pth does not fit Aasist: 1 missing: out_layer.bias"),
        (lambda s: s.update({"pos_S": torch.zeros(1, 20, 64)}), r"pos_S \(1, 20, 64\) != \(1, 23, 64\)"),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), r"1 unexpected: extra.weight"),
        (lambda s: s.update({"master1": torch.full((1, 1, 64), float("nan"))}), r"NaN or inf: master1"),
    ],
)
def test_a_broken_checkpoint_is_refused_naming_the_tensor(aasist_dir, tmp_path, break_it, message):
    state = torch.load(aasist_dir / "AASIST.pth", map_location="cpu", weights_only=True)
    break_it(state)
    broken = tmp_path / "AASIST.pth"
    torch.save(state, broken)
    with pytest.raises(ModelLoadError, match=message):
        load_aasist(broken, "aasist")


def test_a_truncated_or_mismatched_checkpoint_is_refused_naming_the_file(aasist_dir, tmp_path):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes((aasist_dir / "AASIST.pth").read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match=r"cut.pth: not a readable PyTorch checkpoint"):
        load_aasist(truncated, "aasist")
    with pytest.raises(ModelLoadError, match=r"AASIST-L.pth does not fit Aasist: .* with another shape"):
        load_aasist(aasist_dir / "AASIST-L.pth", "aasist")  # the light checkpoint into the full network


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
@pytest.mark.parametrize(("filename", "variant"), VARIANTS)
def test_every_backend_reproduces_the_authors_logits(
    aasist_dir, reference, monkeypatch, tmp_path, filename, variant, backend
):
    from pipeline.models.audio.scorer import VoiceScorer

    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path))  # the ONNX export is cached here
    inputs, logits = reference
    names = sorted(inputs)
    scorer = VoiceScorer(variant, aasist_dir / filename, backend=backend)
    got = scorer.logits([inputs[n] for n in names])  # tiled by the scorer, as the authors' evaluation does
    want = np.array([logits["models"][filename]["logits"][n] for n in names])
    assert np.abs(got - want).max() < 1e-4, (backend, np.abs(got - want).max())
    p = scorer.score([inputs[n] for n in names])
    assert ((0 <= p) & (p <= 1)).all() and np.allclose(p, 1 / (1 + np.exp(want[:, 1] - want[:, 0])), atol=1e-4)
    if backend != "torch":
        assert scorer.backend_error is not None and scorer.backend_error < 1e-4
        assert list((tmp_path / "compiled").glob(f"{variant}-*.onnx"))  # exported once, reused after
    print(f"\n{variant} on {backend}: max |logit - reference| {np.abs(got - want).max():.1e}")
