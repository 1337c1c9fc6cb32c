"""A voice model of your own, declared in YAML: any ONNX model that reads 16 kHz waveforms judges
the voice of a live stream beside the built-in AASIST. The model is made here (a small 1-D CNN with
seeded random weights, exported with ``torch.onnx.export``) and every P(spoof) is compared with the
module called directly on the same window."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import ConfigError, ModelLoadError
from dfstream.config import parse_config
from pipeline.models.audio.loading import load_voice_models
from pipeline.runtime.events import VoiceVerdict
from pipeline.runtime.runtime import Runtime
from tests.helpers import TEST_WEIGHTS, MemorySink, load_detectors, make_config, until

SAMPLES = 16_000  # one second at 16 kHz
BASE = {"streams": [{"id": "s", "url": "sample://"}], "detectors": [{"name": "meso4", "type": "meso4"}]}


class TinyVoice(nn.Module):
    def __init__(self, seed: int = 0, channel: bool = False, two_outputs: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv1d(1, 4, 64, stride=32)
        self.head = nn.Linear(4, 2)
        self.channel, self.two_outputs = channel, two_outputs

    def forward(self, x):
        pooled = torch.relu(self.conv(x if self.channel else x[:, None, :])).mean(dim=2)
        logits = self.head(pooled) * 4.0
        return (logits, pooled) if self.two_outputs else logits


def export(module: nn.Module, path, fixed: bool = False, channel: bool = False):
    sample = torch.zeros((1, 1, SAMPLES) if channel else (1, SAMPLES))
    names = ["logits", "features"] if module.two_outputs else ["logits"]
    axes = {"wave": {0: "n"} if fixed else {0: "n", (2 if channel else 1): "t"}, **{n: {0: "n"} for n in names}}
    torch.onnx.export(
        module.eval(), (sample,), str(path), dynamo=False, input_names=["wave"], output_names=names, dynamic_axes=axes
    )
    return path


def voices(entry: dict):
    config = parse_config({**BASE, "audio_detectors": [entry]})
    return load_voice_models(config.audio_detectors)[entry["name"]]


def by_hand(module: nn.Module, window: np.ndarray, samples: int) -> float:
    tiled = np.tile(window, -(-samples // len(window)))[:samples].astype(np.float32)
    with torch.no_grad():
        logits = module(torch.from_numpy(tiled)[None])
    return float(torch.softmax(logits, dim=1)[0, 1])


def test_a_declared_voice_model_scores_each_window_as_the_model_does(tmp_path):
    net = TinyVoice()
    model = voices(
        {
            "name": "my_voice",
            "type": "onnx",
            "weights": str(export(net, tmp_path / "voice.onnx", fixed=True)),
            "output": {"fake_index": 1},
        }
    )
    assert model.samples == SAMPLES  # the file fixes it
    rng = np.random.default_rng(3)
    windows = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (SAMPLES, 40_000, 7_000)]  # cut, tiled
    expected = [by_hand(net, w, SAMPLES) for w in windows]
    np.testing.assert_allclose(model.score(windows), expected, atol=1e-5)


def test_a_channel_axis_and_an_open_length(tmp_path):
    net = TinyVoice(seed=4, channel=True)
    model = voices(
        {
            "name": "v",
            "type": "onnx",
            "weights": str(export(net, tmp_path / "v.onnx", channel=True)),
            "input": {"samples": 32_000, "layout": "NCS"},
            "output": {"real_index": 0},
        }
    )
    window = 0.1 * np.random.default_rng(5).standard_normal(32_000).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(window)[None, None])
    assert model.score([window])[0] == pytest.approx(1 - float(torch.softmax(logits, 1)[0, 0]), abs=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": {"layout": "NCS"}}, r"input\.layout NCS: the model's input has 2 dimensions \(\?x16000\); NS\?"),
        ({"input": {"samples": 64600}}, r"input\.samples 64600: the model takes 16000"),
        ({"output": {}}, r"output\.fake_index: the model gives 2 values a window"),
        ({"output": {"fake_index": 3}}, r"output\.fake_index 3: the model gives 2 values a window"),
        ({"two": True}, r"output\.name: the model has 2 outputs \(logits, features\); name the one to read"),
    ],
)
def test_a_wrong_voice_declaration_is_refused_in_one_line(tmp_path, change, message):
    net = TinyVoice(two_outputs=change.pop("two", False))
    entry = {
        "name": "v",
        "type": "onnx",
        "weights": str(export(net, tmp_path / "v.onnx", fixed=True)),
        "output": {"fake_index": 1},
        **change,
    }
    with pytest.raises(ModelLoadError) as caught:
        voices(entry)
    assert "\n" not in str(caught.value) and re.search(message, str(caught.value)), caught.value


def test_the_config_refuses_a_declaration_for_a_built_in_voice_model():
    with pytest.raises(ConfigError, match=r"audio_detectors\[0\]: input / output: only a declared voice model"):
        parse_config({**BASE, "audio_detectors": [{"name": "a", "type": "aasist", "output": {}}]})
    with pytest.raises(ConfigError, match=r"weights: a declared voice model \(type onnx\) needs its model file"):
        parse_config({**BASE, "audio_detectors": [{"name": "a", "type": "onnx"}]})


def test_a_declared_voice_model_judges_a_live_stream_beside_aasist(tmp_path, rtsp_server, sound_clips, aasist_dir):
    if not TEST_WEIGHTS.is_dir():
        pytest.fail("DFSTREAM_TEST_WEIGHTS must name the MesoNet weights")
    server = rtsp_server({"/cam": sound_clips["speech"]}, audio={"/cam"})
    config = make_config(
        TEST_WEIGHTS,
        [{"id": "cam", "url": server.url("/cam")}],
        audio_detectors=[
            {"name": "aasist_l", "type": "aasist_l", "weights": str(aasist_dir / "AASIST-L.pth")},
            {
                "name": "my_voice",
                "type": "onnx",
                "weights": str(export(TinyVoice(seed=9), tmp_path / "voice.onnx")),
                "input": {"samples": 64_600},
                "output": {"fake_index": 1},
            },
        ],
    )
    memory = MemorySink()

    def judged() -> list[VoiceVerdict]:
        return [e for e in memory.events if isinstance(e, VoiceVerdict) and e.label != "no_speech"]

    async def scenario() -> None:
        runtime = Runtime(config, load_detectors(config), [memory], voices=load_voice_models(config.audio_detectors))
        task = asyncio.create_task(runtime.run())
        await until(lambda: len(judged()) >= 2, 40, "2 judged voice windows")
        runtime.stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(scenario())
    for verdict in judged():
        assert set(verdict.models) == {"aasist_l", "my_voice"} and 0.0 < verdict.models["my_voice"] < 1.0
