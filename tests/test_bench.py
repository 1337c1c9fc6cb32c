"""The benchmark suite runs, writes a complete results.json, and its ratios stay within the
tolerance of the committed baseline (bench/baseline.json); the targets themselves are read from a
full run (bench/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.weights


def test_quick_bench_writes_every_figure(weights_dir, rtsp_available, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--weights", str(weights_dir), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    ceilings = results["ceilings"]
    for key in ("decode_fps_360p", "decode_fps_720p", "faces_fps"):
        assert ceilings[key] > 0
    assert set(ceilings["detectors"]) == {"meso4", "mesoinception4"}
    # the new backends and face finder are measured in the quick run too
    assert set(ceilings["crops_per_s_by_backend"]["meso4"]) == {"torch", "onnxruntime", "openvino"}
    assert ceilings["faces_fps"] > 0 and ceilings["mtcnn_fps_by_batch"]["1"] > 0
    for key in (
        "bound_fps",
        "pipeline_fps",
        "pipeline_fps_before",
        "efficiency",
        "efficiency_best_batch",
        "naive_fps",
        "speedup_same_work",
        "speedup_default",
    ):
        assert results[key] > 0, key
    assert set(results["latency_ms"]["1"]) == {"p50", "p95", "p99"}
    # --quick measures one stream per config: it counts as real time by the target's definition
    for label in ("default", "before"):
        one = results["live"][label]["runs"]["1"]
        sustained = one["dropped_ratio"] < 0.01 and one["latency_ms"]["p99"] <= 150 and one["scored_hz_min"] >= 9.5
        assert results["live"][label]["max_streams_realtime"] == (1 if sustained else 0)
    assert results["cost_per_stream"]["1"]["cpu_s_per_stream_s"] > 0
    assert results["work"]["default_scored"] < results["work"]["default_verdicts"]  # judged at a rate
    assert results["judging"]["None"]["work_share"] == 1.0 and results["judging"]["10.0"]["work_share"] < 0.5
    assert results["faces"]["agreement_with_mtcnn"] > 0.5
    distant = results["mqtt_distance"]["rtt_100ms_inflight_100"]
    assert distant["lost"] == 0 and distant["seq_gaps"] == 0
    assert results["device"] == "cpu"
    assert {"python", "torch", "av"} <= set(results["versions"])
    assert (tmp_path / "RESULTS.md").read_text().startswith("# dfstream benchmark")
    assert outside_baseline(results) == []


def figure(results: dict, name: str) -> float:
    if name == "mqtt_windowed_over_one_at_a_time_at_100ms":
        distant = results["mqtt_distance"]
        return distant["rtt_100ms_inflight_100"]["messages_per_s"] / distant["rtt_100ms_inflight_1"]["messages_per_s"]
    value = results
    for part in name.split(".") if not name.startswith("judging.") else ["judging", name[8:-11], "work_share"]:
        value = value[part]
    return float(value)


def outside_baseline(results: dict) -> list[str]:
    """Each figure of the baseline that this run fell short of, with both numbers."""
    baseline = json.loads((REPO / "bench" / "baseline.json").read_text())
    problems = []
    for name, rule in baseline["higher_is_better"].items():
        if (got := figure(results, name)) < rule["baseline"] * rule["at_least_share"]:
            problems.append(f"{name}: {got:.3g}, below {rule['at_least_share']} x the baseline {rule['baseline']}")
    for name, rule in baseline["lower_is_better"].items():
        if (got := figure(results, name)) > rule["baseline"] * rule["at_most_share"]:
            problems.append(f"{name}: {got:.3g}, above {rule['at_most_share']} x the baseline {rule['baseline']}")
    return problems


def test_the_baseline_check_fails_a_halved_speedup():
    results = {  # a quick run as the baseline's machine measured it
        "speedup_default": 9.04,
        "speedup_same_work": 4.11,
        "efficiency_best_batch": 1.018,
        "faces": {"agreement_with_mtcnn": 0.962},
        "mqtt_distance": {
            "rtt_100ms_inflight_1": {"messages_per_s": 9.3},
            "rtt_100ms_inflight_100": {"messages_per_s": 423},
        },
        "judging": {"10.0": {"work_share": 0.338}, "5.0": {"work_share": 0.173}},
    }
    assert outside_baseline(results) == []
    results["speedup_default"] = 9.04 * 0.4
    results["judging"]["10.0"]["work_share"] = 0.6
    assert [p.split(":")[0] for p in outside_baseline(results)] == ["speedup_default", "judging.10.0.work_share"]


def test_webrtc_latency_bench_measures_a_real_session(weights_dir, rtsp_available, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.webrtc_latency", "--sessions", "1", "--seconds", "8"]
        + ["--weights", str(weights_dir), "--out", str(tmp_path / "webrtc.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads((tmp_path / "webrtc.json").read_text())
    (one,) = figures["latency"]
    assert one["frame_size"] == [[1280, 720]]  # the sender's 720p arrived as sent
    assert one["onsets"] >= 1 and one["onsets_missed"] == 0
    # the glass time includes the sender's encoder and RTP: always more than dfstream's own part
    assert one["decode_to_verdict_ms"]["p50"] < one["glass_to_verdict_ms"]["p50"] < 2000
    assert figures["cost"]["rtsp"]["frames_decoded"] > 0 and figures["cost"]["webrtc_over_rtsp_cpu"] > 0


def test_the_onset_bench_flags_a_retouched_face_found_by_the_face_finder(weights_dir, tmp_path):
    from bench.onset import judge_clip, retouch
    from stream import make_sample_clip

    clip = make_sample_clip(tmp_path / "onset.mp4", 9.0, 25, 640, 480, 20.0, retouch(round(5.0 * 25), 2.5, 1.0))
    row = judge_clip(clip, 5.0, {"model": "blazeface"}, weights_dir)
    # the real face stays real, the retouched one is flagged by the evidence against its own level
    # (the default cusum; a retouch moves the MesoNets' scores less than a face swap, so it takes a
    # few seconds of evidence more than tests/test_alarms.py's stronger one), and it is one track
    assert row["false_alarm_s"] == 0 and row["p_before"] < 0.3 < 0.7 < row["p_after"]
    assert row["flag_s"] is not None and 0 <= row["flag_s"] < 3.0
    assert row["tracks"] == 1


def test_the_shedding_bench_sheds_the_same_frames_both_ways(tmp_path):
    """Both ways keep the same frames (the figures compare like with like); the CPU ratio is the bench's."""
    import asyncio

    from bench.shedding import measure
    from stream import make_sample_clip

    clip = make_sample_clip(tmp_path / "clip.mp4", 2.0, 25, 320, 240)
    at_consumer = asyncio.run(measure(clip, 0.75, at_source=False))
    at_source = asyncio.run(measure(clip, 0.75, at_source=True))
    assert at_consumer["frames_decoded"] == at_source["frames_decoded"] == 50
    assert at_consumer["kept"] == at_source["kept"] == 13  # 50 frames, three of every four shed
