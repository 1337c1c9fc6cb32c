"""The benchmark suite runs and writes a complete results.json (`--quick`: the figures are not
judged here; the targets are read from a full run, see bench/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.weights


def test_quick_bench_writes_every_figure(weights_dir, rtsp_available, tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--weights", str(weights_dir), "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    ceilings = results["ceilings"]
    for key in ("decode_fps_360p", "decode_fps_720p", "faces_fps"):
        assert ceilings[key] > 0
    assert set(ceilings["detectors"]) == {"meso4", "mesoinception4"}
    for key in ("bound_fps", "pipeline_fps", "efficiency", "naive_fps", "speedup_same_work", "speedup_default"):
        assert results[key] > 0, key
    assert set(results["latency_ms"]["1"]) == {"p50", "p95", "p99"}
    # --quick measures one stream: it counts as real time when under 1 % of its frames were dropped
    assert results["max_streams_realtime"] == (1 if results["dropped_ratio"]["1"] < 0.01 else 0)
    assert results["device"] == "cpu"
    assert {"python", "torch", "av"} <= set(results["versions"])
    assert (tmp_path / "RESULTS.md").read_text().startswith("# dfstream benchmark")
