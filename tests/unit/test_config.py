"""The configuration file: what the runtime issue promises it accepts, and errors that name the field."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from core.errors import ConfigError
from dfstream.config import apply_override, load_config, verify_files

ISSUE_EXAMPLE = """
streams:
  - id: cam1
    url: rtsp://127.0.0.1:8554/cam1
faces: {detect_every: 2, detect_max_side: 640}
detectors:
  - {name: meso4, type: meso4, weights: path/to/Meso4_DF.h5}
  - {name: mesoinc, type: mesoinception4, weights: path/to/MesoInception_DF.h5}
ensemble: {fusion_method: weighted_average}
smoothing: {method: ema, alpha: 0.3, enter: 0.7, leave: 0.4}
sinks:
  jsonl: {path: "-"}
"""


def write(tmp_path, text: str):
    path = tmp_path / "dfstream.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_documented_example_is_accepted(tmp_path):
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert config.streams[0].kind == "rtsp" and config.streams[0].transport == "tcp" and config.streams[0].live
    assert config.faces.detect_every == 2 and [d.type for d in config.detectors] == ["meso4", "mesoinception4"]
    assert config.sinks.jsonl.path == "-"
    # the weights files do not exist: only the disk check says so
    assert verify_files(config) == [
        "detectors[0].weights: no such file 'path/to/Meso4_DF.h5' (and not a name in configs/models.yaml)",
        "detectors[1].weights: no such file 'path/to/MesoInception_DF.h5' (and not a name in configs/models.yaml)",
    ]


def test_environment_substitution(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_HOST", "10.0.0.7")
    path = write(tmp_path, ISSUE_EXAMPLE.replace("127.0.0.1:8554", "${CAM_HOST}:${CAM_PORT:-554}"))
    assert load_config(path).streams[0].url == "rtsp://10.0.0.7:554/cam1"
    monkeypatch.delenv("CAM_HOST")
    with pytest.raises(ConfigError, match="streams\\[0\\].url: environment variable CAM_HOST is not set"):
        load_config(path)


def test_set_overrides(tmp_path):
    config = load_config(
        write(tmp_path, ISSUE_EXAMPLE),
        ["streams.0.url=/tmp/clip.mp4", "faces.detect_every=5", "smoothing.method=window"],
    )
    assert config.streams[0].kind == "file" and config.faces.detect_every == 5 and config.smoothing.method == "window"
    with pytest.raises(ConfigError, match="streams.3 is not an item of a list of 1"):
        apply_override(yaml.safe_load(ISSUE_EXAMPLE), "streams.3.url=x")
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_override({}, "faces.detect_every")


def dfstream(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dfstream", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ},
        timeout=120,
    )


def test_check_prints_the_resolved_config(weights_dir, tmp_path):
    path = write(tmp_path, ISSUE_EXAMPLE.replace("path/to", str(weights_dir)))
    out = dfstream("check", str(path), "--set", "faces.detect_every=4")
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert resolved["faces"]["detect_every"] == 4 and resolved["streams"][0]["stall_timeout_s"] == 10.0


def test_check_errors_exit_2_one_line_each_no_traceback(tmp_path):
    bad = ISSUE_EXAMPLE.replace("rtsp://", "rtp+x://").replace("detect_every: 2", "detect_every: 0")
    out = dfstream("check", str(write(tmp_path, bad)))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "dfstream: error: streams[0].url: unsupported scheme 'rtp+x': expected rtsp, rtmp, http(s), file, "
        "sample, screen, whip, a path or /dev/videoN",
        "dfstream: error: faces.detect_every: Input should be greater than or equal to 1",
    ]
    missing = dfstream("check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: cannot read: No such file or directory" in missing.stderr
    (tmp_path / "broken.yaml").write_text("streams: [\n")
    broken = dfstream("check", str(tmp_path / "broken.yaml"))
    assert broken.returncode == 2 and "not valid YAML (line 2" in broken.stderr


def test_check_never_prints_a_password_and_warns_about_clear_text(weights_dir, tmp_path):
    text = ISSUE_EXAMPLE.replace("path/to", str(weights_dir)).replace(
        "    url: rtsp://127.0.0.1:8554/cam1",
        "    url: rtsp://viewer:${CAM_PASSWORD}@127.0.0.1:8554/cam1\n  - id: door\n    url: rtsp://admin:hunter2@10.0.0.9/live",
    )
    path = write(tmp_path, text)
    out = subprocess.run(
        [sys.executable, "-m", "dfstream", "check", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CAM_PASSWORD": "from-env-s3cret"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "from-env-s3cret" not in out.stdout + out.stderr and "hunter2" not in out.stdout + out.stderr
    assert "rtsp://viewer:***@127.0.0.1:8554/cam1" in out.stdout and "rtsp://admin:***@10.0.0.9/live" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if "clear text" in line]
    assert len(warnings) == 1 and "streams[1].url" in warnings[0]  # the ${VAR} one is fine
