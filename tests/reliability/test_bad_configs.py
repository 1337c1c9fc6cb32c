"""Invalid configurations: `dfstream check` and `dfstream run` both exit 2 before anything starts,
print one `dfstream: error:` line per problem naming the field's path, and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from dfstream.cli import main

BASE = """
streams:
  - {id: cam1, url: "rtsp://127.0.0.1:8554/cam1"}
  - {id: clip, url: "sample://astronaut", pace: asap}
faces: {detect_every: 3, detect_max_side: 640}
detectors:
  - {name: meso4, type: meso4, weights: "WEIGHTS/Meso4_DF.h5"}
  - {name: mesoinc, type: mesoinception4, weights: "WEIGHTS/MesoInception_DF.h5"}
ensemble: {fusion_method: weighted_average, min_models: 1}
smoothing: {method: ema, alpha: 0.3, enter: 0.7, leave: 0.4}
sinks:
  jsonl: {path: "-"}
  mqtt: {host: 127.0.0.1, port: 1883, qos: 1}
  prometheus: {port: 9108}
"""


def at(path: str, value) -> callable:
    """A change that sets one dotted path (list items by index)."""

    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def drop(path: str) -> callable:
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]

    return change


def add_stream(**stream) -> callable:
    return lambda data: data["streams"].append(stream)


CASES = [
    # unknown keys
    ("unknown top-level key", at("extra", {}), "extra: unknown key"),
    ("unknown key in faces", at("faces.colour", True), "faces.colour: unknown key"),
    ("unknown key in a stream", at("streams.0.user", "bob"), "streams[0].user: unknown key"),
    ("unknown key in a sink", at("sinks.mqtt.hostname", "x"), "sinks.mqtt.hostname: unknown key"),
    ("unknown sink", at("sinks.kafka", {}), "sinks.kafka: unknown key"),
    # wrong types
    ("url is a number", at("streams.0.url", 554), "streams[0].url: Input should be a valid string"),
    ("streams is a mapping", at("streams", {"id": "x"}), "streams: Input should be a valid list"),
    (
        "detect_every is a word",
        at("faces.detect_every", "often"),
        "faces.detect_every: Input should be a valid integer",
    ),
    ("loop is a word", at("streams.1.loop", "sometimes"), "streams[1].loop: Input should be a valid boolean"),
    ("port is a word", at("sinks.mqtt.port", "mqtt"), "sinks.mqtt.port: Input should be a valid integer"),
    # out of range
    ("negative fps", at("streams.0.fps", -5), "streams[0].fps: Input should be greater than 0"),
    (
        "queue of zero",
        at("streams.0.queue_size", 0),
        "streams[0].queue_size: Input should be greater than or equal to 1",
    ),
    (
        "zero open timeout",
        at("streams.0.open_timeout_s", 0),
        "streams[0].open_timeout_s: Input should be greater than 0",
    ),
    (
        "negative detect size",
        at("faces.detect_max_side", -1),
        "faces.detect_max_side: Input should be greater than or equal to 64",
    ),
    ("tiny min face", at("faces.min_face_size", 2), "faces.min_face_size: Input should be greater than or equal to 12"),
    (
        "zero batch",
        at("detectors.0.max_batch", 0),
        "detectors[0].max_batch: Input should be greater than or equal to 1",
    ),
    ("threshold of 1", at("detectors.1.threshold", 1.0), "detectors[1].threshold: Input should be less than 1"),
    ("alpha above 1", at("smoothing.alpha", 1.5), "smoothing.alpha: Input should be less than or equal to 1"),
    ("port above 65535", at("sinks.mqtt.port", 70000), "sinks.mqtt.port: Input should be less than or equal to 65535"),
    (
        "negative metrics port",
        at("sinks.prometheus.port", -1),
        "sinks.prometheus.port: Input should be greater than or equal to 0",
    ),
    # choices
    ("unknown pace", at("streams.1.pace", "slow"), "streams[1].pace: Input should be 'realtime' or 'asap'"),
    ("unknown transport", at("streams.0.transport", "sctp"), "streams[0].transport: Input should be 'tcp' or 'udp'"),
    ("unknown fusion", at("ensemble.fusion_method", "median"), "ensemble.fusion_method: Input should be"),
    ("renamed key", at("ensemble.method", "median"), "ensemble: 'method' is now called 'fusion_method'"),
    (
        "unknown smoothing",
        at("smoothing.method", "kalman"),
        "smoothing.method: Input should be 'cusum', 'ema', 'window' or 'none'",
    ),
    ("qos 3", at("sinks.mqtt.qos", 3), "sinks.mqtt.qos: Input should be 0, 1 or 2"),
    ("unknown jsonl event", at("sinks.jsonl.events", ["verdicts"]), "sinks.jsonl.events[0]: Input should be"),
    (
        "unknown detector type",
        at("detectors.1.type", "xception9"),
        "detectors[1].type: unknown detector type 'xception9'",
    ),
    ("unknown device", at("detectors.0.device", "tpu"), "detectors[0].device: unknown device 'tpu'"),
    ("unknown faces device", at("faces.device", "gpu0"), "faces.device: unknown device 'gpu0'"),
    # relations
    ("duplicate stream ids", add_stream(id="cam1", url="/tmp/a.mp4"), "streams[2].id: duplicate id 'cam1'"),
    ("duplicate detector names", at("detectors.1.name", "meso4"), "detectors[1].name: duplicate name 'meso4'"),
    ("enter below leave", at("smoothing.enter", 0.3), "smoothing: enter (0.3) must be >= leave (0.4)"),
    (
        "retry start above max",
        at("streams.0.retry_initial_s", 60),
        "streams[0]: retry_initial_s (60.0) is greater than retry_max_s",
    ),
    (
        "more models required than exist",
        at("ensemble.min_models", 3),
        "ensemble.min_models (3) exceeds the 2 detectors",
    ),
    ("stream id with a slash", at("streams.0.id", "cam/1"), "streams[0].id: stream id 'cam/1' may hold only"),
    ("unsupported scheme", at("streams.0.url", "rtp+x://cam"), "streams[0].url: unsupported scheme 'rtp+x'"),
    # missing
    ("no detectors section", drop("detectors"), "detectors: Field required"),
    ("stream without url", drop("streams.0.url"), "streams[0].url: Field required"),
    ("missing weights file", at("detectors.0.weights", "WEIGHTS/nope.h5"), "detectors[0].weights: no such file"),
    (
        "missing calibration file",
        at("ensemble.calibration", "/nonexistent/calibration.json"),
        "ensemble.calibration: no such file",
    ),
    (
        "missing real-face baseline",
        at("smoothing.baseline", "/nonexistent/baseline.json"),
        "smoothing.baseline: no such file",
    ),
    (
        "missing real-speech baseline",
        at("voice", {"smoothing": {"baseline": "/nonexistent/voice.json"}}),
        "voice.smoothing.baseline: no such file",
    ),
    ("a stated false-alarm rate of 0", at("smoothing.false_alarms_per_hour", 0), "smoothing.false_alarms_per_hour"),
    (
        "missing TLS CA file",
        at("sinks.mqtt.tls", {"ca_file": "/nonexistent/ca.crt"}),
        "sinks.mqtt.tls.ca_file: no such file",
    ),
]


def write_config(tmp_path, weights_dir, change) -> str:
    data = yaml.safe_load(BASE.replace("WEIGHTS", str(weights_dir)))
    change(data)
    path = tmp_path / "dfstream.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_base_config_is_valid(tmp_path, weights_dir, capsys):
    assert main(["check", write_config(tmp_path, weights_dir, lambda d: None)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name, change, message", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.timeout(60)  # a config that wrongly passes would start watching streams
def test_an_invalid_config_exits_2_naming_the_field(tmp_path, weights_dir, capsys, command, name, change, message):
    path = write_config(tmp_path, weights_dir, change)
    code = main([command, path, "--offline"] if command == "run" else [command, path])
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert code == 2, out
    assert lines and all(line.startswith("dfstream: error: ") for line in lines), lines
    assert any(message in line for line in lines), lines
    assert out.out == ""  # nothing started, nothing resolved


@pytest.mark.parametrize(
    "text, message",
    [
        ("streams: [\n", "not valid YAML (line 2"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("", "the top level must be a mapping"),
        (
            "streams: [{id: a, url: x.mp4}]\ndetectors: [{name: m, type: meso4}]\nfaces:\n  detect_every: "
            "${NO_SUCH_VAR}\n",
            "NO_SUCH_VAR",
        ),
    ],
)
def test_unreadable_files_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_override_names_its_path(tmp_path, weights_dir, capsys):
    path = write_config(tmp_path, weights_dir, lambda d: None)
    assert main(["check", path, "--set", "streams.0.fps=abc"]) == 2
    assert "streams[0].fps: Input should be a valid number" in capsys.readouterr().err


def test_run_needs_a_stream_it_can_read_and_serve_may_start_with_none(tmp_path, weights_dir, capsys):
    none = write_config(tmp_path, weights_dir, at("streams", []))
    assert main(["check", none]) == 0  # valid: `dfstream serve` waits for calls
    capsys.readouterr()
    assert main(["run", none, "--offline"]) == 2
    assert "streams: `dfstream run` needs at least one stream" in capsys.readouterr().err
    pushed = write_config(tmp_path, weights_dir, at("streams.0.url", "whip://"))
    assert main(["run", pushed, "--offline"]) == 2
    assert "is pushed to `dfstream serve` over WebRTC (POST /whip/cam1)" in capsys.readouterr().err


def test_the_real_process_prints_no_traceback(tmp_path, weights_dir, figures):
    """The same through `python -m pipeline.cli`: exit status 2, one line per problem, no traceback."""
    path = write_config(
        tmp_path, weights_dir, lambda d: (at("faces.detect_every", 0)(d), at("streams.0.url", "ftp://x")(d))
    )
    for command in (["check", path], ["run", path, "--offline"]):
        out = subprocess.run(
            [sys.executable, "-m", "dfstream", *command],
            capture_output=True,
            text=True,
            env={**os.environ},
            timeout=120,
            check=False,
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr and out.stdout == ""
        assert len(out.stderr.splitlines()) == 2, out.stderr
    figures(cases=len(CASES) + 5, commands=["check", "run"])
