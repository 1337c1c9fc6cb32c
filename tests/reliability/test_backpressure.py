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
from torch import nn

from pipeline.events import Event, Verdict
from pipeline.runtime import Runtime, load_detectors
from tests.test_runtime import make_config

pytestmark = pytest.mark.weights

RUN_S = 12.0


class TimedSink:
    """A real sink that notes when each verdict reached it."""

    name = "timed"

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def start(self) -> None:
        pass

    async def publish(self, event: Event) -> None:
        if isinstance(event, Verdict):
            self.delays.append(time.time() - event.ts)

    async def aclose(self) -> None:
        pass


class StuckSink:
    """A sink whose every publish hangs, like a write to a peer that stopped reading."""

    name = "stuck"

    async def start(self) -> None:
        pass

    async def publish(self, event: Event) -> None:
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        pass


class StuckSink2(StuckSink):
    name = "stuck2"  # a second one: stuck sinks drain side by side, their timeouts do not add up


class Slowed(nn.Module):
    """The real model behind a fixed delay per batch."""

    def __init__(self, inner: nn.Module, delay_s: float):
        super().__init__()
        self.inner, self.delay_s = inner, delay_s

    def forward(self, x):
        time.sleep(self.delay_s)
        return self.inner(x)


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
    config = make_config(weights_dir, [{"id": "cam", "url": str(face_clip), "pace": "realtime", "loop": True}],
                         sinks={"outbox_capacity": 50})  # fmt: skip
    timed = TimedSink()
    runtime = Runtime(config, load_detectors(config), [StuckSink(), StuckSink2(), timed])
    rss, stop_s = run(runtime, RUN_S)
    report = runtime.monitor.get_performance_report()
    dropped = report["stages"]["sink:stuck"]["counters"]["dropped:outbox_full"]
    verdicts = sum(v for k, v in report["streams"]["cam"]["counters"].items() if k.startswith("verdicts:"))
    p99_ms = float(np.percentile(timed.delays, 99)) * 1000
    growth_mb = (max(rss) - rss[0]) / 2**20
    figures(verdicts=verdicts, delivered_to_others=len(timed.delays), stuck_dropped=dropped, others_p99_delay_ms=p99_ms,
            rss_growth_mb=growth_mb, stop_s=stop_s)  # fmt: skip
    assert len(timed.delays) == verdicts > 200  # the healthy sink got every verdict
    assert p99_ms < 50  # and got it at once
    assert dropped >= verdicts - 50 - 1  # the stuck one: all but its 50 slots (+1 in its hung publish), counted
    assert growth_mb < 50
    assert stop_s < 3.0 + 2  # its outbox gives up after drain_timeout_s instead of hanging the exit
    assert report["stages"]["sink:stuck"]["counters"]["dropped:shutdown"] == 51  # and what it held is counted


def test_a_detector_ten_times_slower_than_the_frames(weights_dir, face_clip, figures):
    config = make_config(weights_dir, [{"id": "cam", "url": str(face_clip), "pace": "realtime", "loop": True}])
    detectors = load_detectors(config)
    detectors["meso4"].module = Slowed(detectors["meso4"].module, delay_s=10 / 30)
    timed = TimedSink()
    runtime = Runtime(config, detectors, [timed])
    rss, stop_s = run(runtime, RUN_S)
    counters = runtime.monitor.get_performance_report()["streams"]["cam"]["counters"]
    decoded, processed = counters["frames_decoded"], counters.get("frames_processed", 0)
    dropped = counters.get("dropped:queue_full", 0)
    growth_mb = (max(rss) - rss[0]) / 2**20
    figures(decoded=decoded, processed=processed, dropped=dropped, unaccounted=decoded - processed - dropped,
            rss_growth_mb=growth_mb, stop_s=stop_s)  # fmt: skip
    assert decoded > 25 * RUN_S * 0.8  # decoding keeps the camera's pace
    assert processed < decoded / 5 and dropped > decoded / 2  # the slow model sets the pace; the rest is counted
    # every decoded frame was processed or counted as dropped; at most the frames in flight at the
    # stop are neither (source queue 4, stage queue 2, one in each stage)
    assert 0 <= decoded - processed - dropped <= 4 + 2 + 2
    assert len(timed.delays) > 0 and growth_mb < 50
