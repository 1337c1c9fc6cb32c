"""Backpressure: a sink that never returns and a detector ten times slower than the frame rate.
The other sinks keep their latency, every frame is processed or counted as dropped, and memory
stays bounded."""

from __future__ import annotations

import asyncio
import gc
import time

import numpy as np
import psutil
import pytest

from pipeline.monitoring.keys import Count, Subject
from pipeline.runtime.runtime import Runtime
from tests.helpers import MemorySink, load_detectors, make_config

pytestmark = pytest.mark.weights

RUN_S = 12.0


def slowed(score_crops, delay_s: float):
    """The real detector (whichever backend runs it) behind a fixed delay per batch."""

    def slow(items):
        time.sleep(delay_s)
        return score_crops(items)

    return slow


def run(runtime: Runtime, seconds: float) -> tuple[list[int], float]:
    """Runs for ``seconds``; returns RSS samples (after warm-up) and the seconds stopping took."""
    process = psutil.Process()
    rss: list[int] = []

    async def scenario() -> float:
        task = asyncio.create_task(runtime.run())
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(1.0)
            if time.monotonic() - start > 3.0:
                gc.collect()
                rss.append(process.memory_info().rss)
        runtime.stop.set()
        stopping = time.monotonic()
        await asyncio.wait_for(task, 30)
        return time.monotonic() - stopping

    return rss, asyncio.run(scenario())


def test_a_stuck_sink_costs_the_others_nothing(weights_dir, face_clip, figures):
    config = make_config(
        weights_dir,
        [{"id": "cam", "url": str(face_clip), "pace": "realtime", "loop": True}],
        sinks={"outbox_capacity": 50},
    )
    timed = MemorySink("timed")
    # two stuck sinks: they drain side by side, their timeouts do not add up
    runtime = Runtime(
        config, load_detectors(config), [MemorySink("stuck", hang=True), MemorySink("stuck2", hang=True), timed]
    )
    rss, stop_s = run(runtime, RUN_S)
    monitor, stuck = runtime.monitor, Subject.sink("stuck")
    dropped = monitor.counter(stuck, Count.EVENTS_DROPPED, reason="outbox_full")
    verdicts = sum(
        monitor.counter(Subject.stream("cam"), Count.VERDICTS, label=label) for label in ("real", "fake", "uncertain")
    )
    delays = timed.verdict_delays()
    p99_ms = float(np.percentile(delays, 99)) * 1000
    growth_mb = (max(rss) - rss[0]) / 2**20
    figures(
        verdicts=verdicts,
        delivered_to_others=len(delays),
        stuck_dropped=dropped,
        others_p99_delay_ms=p99_ms,
        rss_growth_mb=growth_mb,
        stop_s=stop_s,
    )
    assert len(delays) == verdicts > 200  # the healthy sink got every verdict
    assert p99_ms < 50  # and got it at once
    assert dropped >= verdicts - 50 - 1  # the stuck one: all but its 50 slots (+1 in its hung publish), counted
    assert growth_mb < 50
    assert stop_s < 3.0 + 2  # its outbox gives up after drain_timeout_s instead of hanging the exit
    assert monitor.counter(stuck, Count.EVENTS_DROPPED, reason="shutdown") == 51  # and what it held is counted


def test_a_detector_ten_times_slower_than_the_frames(weights_dir, face_clip, figures):
    config = make_config(weights_dir, [{"id": "cam", "url": str(face_clip), "pace": "realtime", "loop": True}])
    detectors = load_detectors(config)
    detectors["meso4"].score_crops = slowed(detectors["meso4"].score_crops, delay_s=10 / 30)
    timed = MemorySink("timed")
    runtime = Runtime(config, detectors, [timed])
    rss, stop_s = run(runtime, RUN_S)
    monitor, cam = runtime.monitor, Subject.stream("cam")
    decoded, processed = monitor.counter(cam, Count.FRAMES_DECODED), monitor.counter(cam, Count.FRAMES_PROCESSED)
    # dropped by the source (its queue full) or shed by the overload governor (evenly, counted apart)
    queue_full = monitor.counter(cam, Count.FRAMES_DROPPED, reason="queue_full")
    shed = monitor.counter(cam, Count.FRAMES_DROPPED, reason="overload")
    dropped = queue_full + shed
    growth_mb = (max(rss) - rss[0]) / 2**20
    figures(
        decoded=decoded,
        processed=processed,
        dropped_queue_full=queue_full,
        dropped_overload=shed,
        unaccounted=decoded - processed - dropped,
        rss_growth_mb=growth_mb,
        stop_s=stop_s,
    )
    assert decoded > 25 * RUN_S * 0.8  # decoding keeps the camera's pace
    assert processed < decoded / 2 and dropped > decoded / 2  # the slow model sets the pace; the rest is counted
    # every decoded frame was processed or counted as dropped; at most the frames in flight at the
    # stop are neither (source queue 4, stage queue 2, one in each stage)
    assert 0 <= decoded - processed - dropped <= 4 + 2 + 2
    assert len(timed.verdicts()) > 0 and growth_mb < 50
