"""The README's main job, `dfstream run configs/demo.yaml`, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

DEMO = str(REPO / "configs" / "demo.yaml")


def dfstream(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "dfstream", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.weights
def test_demo_judges_every_face_of_the_generated_sample(weights_dir, tmp_path):
    # as the README runs it: empty caches, the weights found on DFSTREAM_MODEL_PATH
    out = dfstream(
        "run",
        DEMO,
        "--offline",
        DFSTREAM_MODEL_DIR=str(tmp_path / "models"),
        DFSTREAM_MODEL_PATH=str(weights_dir),
        DFSTREAM_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "cache" / "sample" / "astronaut_360p30.mp4").is_file()  # generated on first use
    verdicts = [e for e in events(out.stdout) if e["type"] == "verdict"]
    seqs = [v["frame_seq"] for v in verdicts]
    # asap: no frame dropped; MTCNN finds the face in (nearly) every detection round
    assert seqs == sorted(set(seqs)) and len(seqs) >= 114 and seqs[-1] >= 117
    for verdict in verdicts:
        assert set(verdict["models"]) == {"meso4", "mesoinception4"}
        assert 0.0 <= verdict["fake_probability"] <= 1.0 and 0.0 <= verdict["uncertainty"] <= 1.0
    assert verdicts[-1]["label"] == "real"  # a real photograph
    statuses = [e["status"] for e in events(out.stdout) if e["type"] == "status"]
    assert statuses == ["online", "offline"]


@pytest.mark.weights
def test_demo_fetches_missing_weights_then_runs(weights_dir, file_server, tmp_path):  # noqa: F811
    root, base = file_server
    for f in weights_dir.glob("*.h5"):
        (root / f.name).write_bytes(f.read_bytes())
    out = dfstream(
        "run",
        DEMO,
        DFSTREAM_MODEL_DIR=str(tmp_path / "models"),
        DFSTREAM_MODEL_MIRROR=base,
        DFSTREAM_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("fetching") == 2 and "license Apache-2.0" in out.stderr
    assert sum(e["type"] == "verdict" for e in events(out.stdout)) >= 114


def test_demo_offline_without_weights_says_what_to_do(tmp_path):
    out = dfstream("run", DEMO, "--offline", DFSTREAM_MODEL_DIR=str(tmp_path), DFSTREAM_MODEL_PATH="")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "run `dfstream models pull meso4_df`" in out.stderr
