"""The README's main job, `dfstream demo`, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.test_weights import file_server  # noqa: F401  (fixture)


def dfstream(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=environment, timeout=600)


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.weights
def test_demo_judges_every_face_of_the_sample(weights_dir, tmp_path):
    # as the README runs it: an empty cache, the weights found on DFSTREAM_MODEL_PATH
    out = dfstream("demo", "--offline", "--device", "cpu", DFSTREAM_MODEL_DIR=str(tmp_path), DFSTREAM_MODEL_PATH=str(weights_dir))
    assert out.returncode == 0, out.stderr
    frames = records(out.stdout)
    assert [f["seq"] for f in frames] == list(range(30))
    faces = [f for f in frames if f["label"] != "no_face"]
    assert len(faces) >= 27  # MTCNN finds the astronaut in (nearly) every frame
    for face in faces:
        assert set(face["models"]) == {"meso4_df", "meso4_f2f", "mesoinception4_df", "mesoinception4_f2f"}
        assert 0.0 <= face["fake_probability"] <= 1.0 and 0.0 <= face["uncertainty"] <= 1.0
        assert face["label"] == ("fake" if face["fake_probability"] >= 0.5 else "real")
    assert "faces judged by 4 models" in out.stdout and "p95" in out.stdout


@pytest.mark.weights
def test_demo_fetches_missing_weights_then_runs(weights_dir, file_server, tmp_path):  # noqa: F811
    root, base = file_server
    for f in weights_dir.glob("*.h5"):
        (root / f.name).write_bytes(f.read_bytes())
    out = dfstream("demo", "--device", "cpu", DFSTREAM_MODEL_DIR=str(tmp_path / "cache"), DFSTREAM_MODEL_MIRROR=base)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("fetching") == 4 and "license Apache-2.0" in out.stderr
    assert len(records(out.stdout)) == 30


def test_demo_offline_without_weights_says_what_to_do(tmp_path):
    out = dfstream("demo", "--offline", DFSTREAM_MODEL_DIR=str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "run `dfstream models pull meso4_df`" in out.stderr


@pytest.mark.weights
def test_demo_on_a_broken_file_fails_in_one_line(weights_dir, tmp_path):
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = dfstream("demo", "--offline", "--input", str(broken), DFSTREAM_MODEL_DIR=str(weights_dir))
    assert out.returncode == 2 and out.stderr.startswith(f"dfstream: error: {broken}")
    assert out.stderr.strip().count("\n") == 0
