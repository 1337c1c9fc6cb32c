"""Graceful overload: four live streams on a detector that cannot keep up with the full judge rate.
With the governor the streams shed judging evenly, latency stays bounded, every stream keeps its
share of the verdicts and the degradation is reported; without it the same load collapses."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pipeline.models.faces.finder import FaceDetector
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.runtime.events import StreamStatus
from pipeline.runtime.runtime import Runtime
from tests.helpers import MemorySink, load_detectors, make_config

pytestmark = pytest.mark.weights

STREAMS = 4
RUN_S = 14.0
SETTLED_S = 8.0  # figures from here on: the governor has had time to find its level
FRESH_MS = 300.0  # twice the target: a verdict later than this tells of a face that has moved on


def slowed_per_crop(score_crops, delay_s: float):
    """The real detector behind a fixed delay per crop: a device with a fixed capacity in crops a
    second, whatever the batch (a delay per batch would be beaten by bigger batches)."""

    def slow(items):
        time.sleep(delay_s * len(items))
        return score_crops(items)

    return slow


def overloaded(weights_dir, face_clip, overload: dict) -> tuple[Runtime, MemorySink, dict[str, float]]:
    config = make_config(
        weights_dir,
        [{"id": f"cam{i}", "url": str(face_clip), "pace": "realtime", "loop": True} for i in range(STREAMS)],
        judge={"max_rate_hz": 10, "min_rate_hz": None},  # never skimmed: the full rate is the load
        overload=overload,
    )
    detectors = load_detectors(config)
    # 25 crops a second: four faces at 10 Hz (40 a second, more with the moves) cannot be served,
    # four at the 2 Hz floor can
    detectors["mesoinception4"].score_crops = slowed_per_crop(detectors["mesoinception4"].score_crops, 0.040)
    sink = MemorySink()
    runtime = Runtime(config, detectors, [sink])
    marks: dict[str, float] = {}

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run())
        await asyncio.sleep(SETTLED_S)
        marks["settled"] = time.time()
        marks["drops_before"] = sum(
            runtime.monitor.counter(Subject.stream(f"cam{i}"), Count.FRAMES_DROPPED, reason="queue_full")
            for i in range(STREAMS)
        )
        await asyncio.sleep(RUN_S - SETTLED_S)
        marks["end"] = time.time()
        marks["level"] = runtime.governor.level if runtime.governor else 0.0
        marks["gauges"] = [runtime.monitor.gauge(Subject.stream(f"cam{i}"), Gauge.DEGRADED) for i in range(STREAMS)]
        marks["judge_hz"] = [runtime.monitor.gauge(Subject.stream(f"cam{i}"), Gauge.JUDGE_RATE) for i in range(STREAMS)]
        runtime.stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(scenario())
    return runtime, sink, marks


def figures_of(runtime: Runtime, sink: MemorySink, marks: dict) -> dict:
    window = [v for v in sink.verdicts() if marks["settled"] <= v.ts <= marks["end"]]
    seconds = marks["end"] - marks["settled"]
    per_stream = [sum(v.stream == f"cam{i}" for v in window) / seconds for i in range(STREAMS)]
    drops = sum(
        runtime.monitor.counter(Subject.stream(f"cam{i}"), Count.FRAMES_DROPPED, reason="queue_full")
        for i in range(STREAMS)
    )
    shed = sum(
        runtime.monitor.counter(Subject.stream(f"cam{i}"), Count.FRAMES_DROPPED, reason="overload")
        for i in range(STREAMS)
    )
    return {
        "verdicts_per_s": round(sum(per_stream), 1),
        "slowest_stream_share": round(min(per_stream) / float(np.mean(per_stream)), 3),
        "p99_ms": round(float(np.percentile([v.latency_ms for v in window], 99)), 1),
        "p50_ms": round(float(np.percentile([v.latency_ms for v in window], 50)), 1),
        "fresh_per_s": round(sum(v.latency_ms <= FRESH_MS for v in window) / seconds, 1),
        "queue_full_drops_settled": drops - marks["drops_before"],
        "overload_drops": shed,
        "level": marks["level"],
        "judge_hz": marks["judge_hz"],
    }


def test_past_its_capacity_the_pipeline_sheds_judging_evenly_and_says_so(weights_dir, face_clip, figures):
    runtime, sink, marks = overloaded(weights_dir, face_clip, {"target_ms": 150})
    on = figures_of(runtime, sink, marks)
    runtime_off, sink_off, marks_off = overloaded(weights_dir, face_clip, {"enabled": False})
    off = figures_of(runtime_off, sink_off, marks_off)
    figures(on=on, off=off)

    # shed: every stream judged less often, by the same governor level, and told so (on a quiet
    # machine the judge rate is enough, level < 1; with the CPU shared frames are dropped too, evenly)
    assert on["level"] > 0
    assert marks["gauges"] == [1] * STREAMS
    assert all(2.0 <= hz < 10.0 for hz in on["judge_hz"])
    reasons = {e.reason for e in sink.events if isinstance(e, StreamStatus) and e.status == "online"}
    assert any(r and r.startswith("degraded: overloaded, tracks judged at") for r in reasons), reasons
    # bounded and even: latency held near the target, every stream served alike, (nearly) no frame
    # lost to a full queue: at most 1 % of the 720 frames of the settled window
    assert on["p99_ms"] < 500
    assert on["slowest_stream_share"] >= 0.8
    assert on["queue_full_drops_settled"] <= 7
    assert on["fresh_per_s"] >= 0.95 * on["verdicts_per_s"]
    # the same load without the governor: the detector's queue sets the pace, latency grows, frames drop;
    # it may say as much (the detector is busy all the time) but little of it in time to matter
    assert off["p99_ms"] > 2 * on["p99_ms"]
    assert off["queue_full_drops_settled"] > 0
    assert on["verdicts_per_s"] >= off["verdicts_per_s"]
    assert on["fresh_per_s"] > 3 * off["fresh_per_s"] + 10


def test_a_face_finder_that_cannot_keep_up_is_asked_less_often_by_every_stream(weights_dir, face_clip, figures):
    config = make_config(
        weights_dir,
        [{"id": f"cam{i}", "url": str(face_clip), "pace": "realtime", "loop": True} for i in range(STREAMS)],
    )
    faces = FaceDetector(config.faces)
    # 25 frames a second: four streams looking every third frame of 30 ask for 40
    faces.detect = slowed_per_crop(faces.detect, 0.040)
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink], face_detector=faces)
    cams = [Subject.stream(f"cam{i}") for i in range(STREAMS)]

    async def scenario() -> tuple[list[int], list[float | None], float]:
        task = asyncio.create_task(runtime.run())
        await asyncio.sleep(SETTLED_S)
        before = [runtime.monitor.counter(c, Count.FRAMES_DROPPED, reason="queue_full") for c in cams]
        settled = time.time()
        await asyncio.sleep(RUN_S - SETTLED_S)
        drops = [
            runtime.monitor.counter(c, Count.FRAMES_DROPPED, reason="queue_full") - b for c, b in zip(cams, before)
        ]
        rates = [runtime.monitor.gauge(c, Gauge.FACES_RATE) for c in cams]
        runtime.stop.set()
        await asyncio.wait_for(task, 30)
        return drops, rates, settled

    drops, rates, settled = asyncio.run(scenario())
    window = [v for v in sink.verdicts() if v.ts >= settled]
    p99_ms = float(np.percentile([v.latency_ms for v in window], 99))
    figures(faces_rate_hz=rates, queue_full_drops_settled=drops, p99_ms=round(p99_ms, 1), level=runtime.governor.level)
    assert all(r is not None and 3.0 <= r < 9.0 for r in rates), rates  # from 10 a second toward the floor of 3
    assert max(rates) - min(rates) < 0.5  # every stream alike
    # at most 8 % of the settled window's 720 frames lost to a full queue: a 2-core machine doing other
    # work lost 11 (issue 40), a CI run of the alarms change 27 (11, 5, 5, 6: the scoring loop now
    # also measures each due face's quality and adds its evidence), one of the calls change 39 (10, 11,
    # 10, 8); without the governor about 600 go
    assert sum(drops) <= 58 and p99_ms < 500
