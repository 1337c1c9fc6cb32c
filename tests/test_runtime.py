"""The runtime end to end with real parts: real RTSP servers, real files, MTCNN and both MesoNets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from pipeline.config import parse_config
from pipeline.events import Event, StreamStatus, Verdict
from pipeline.runtime import Runtime, load_detectors

pytestmark = pytest.mark.weights


class MemorySink:
    """A real Sink that keeps what it is given (what a test subscriber would see)."""

    name = "memory"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    async def start(self) -> None:
        pass

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    async def aclose(self) -> None:
        self.closed = True

    def verdicts(self, stream: str | None = None) -> list[Verdict]:
        return [e for e in self.events if isinstance(e, Verdict) and (stream is None or e.stream == stream)]

    def statuses(self, stream: str) -> list[str]:
        return [e.status for e in self.events if isinstance(e, StreamStatus) and e.stream == stream]


def make_config(weights_dir, streams, **sections):
    return parse_config({
        "streams": streams,
        "detectors": [
            {"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")},
            {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights_dir / "MesoInception_DF.h5")},
        ],
        **sections,
    })  # fmt: skip


async def run_for(runtime: Runtime, seconds: float | None) -> None:
    task = asyncio.create_task(runtime.run())
    if seconds is not None:
        await asyncio.sleep(seconds)
        runtime.stop.set()
    await asyncio.wait_for(task, 30)


def test_rtsp_stream_gets_verdicts_for_the_face_track(weights_dir, rtsp_server):
    server = rtsp_server()
    config = make_config(weights_dir, [{"id": "cam1", "url": server.url("/cam1")}])
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(run_for(runtime, 4.0))

    verdicts = sink.verdicts("cam1")
    assert len(verdicts) > 30
    assert {v.track_id for v in verdicts} == {1}  # one person, one track, all along
    assert [v.seq for v in verdicts] == list(range(1, len(verdicts) + 1))  # no gaps
    assert all(set(v.models) == {"meso4", "mesoinception4"} for v in verdicts)
    assert all(0 <= v.fake_probability <= 1 and 0 <= v.uncertainty <= 1 for v in verdicts)
    assert all(v.label in ("real", "uncertain") for v in verdicts)  # a real photograph
    assert verdicts[-1].label == "real" and verdicts[0].label == "uncertain"  # min_frames first
    assert all(0 < v.latency_ms < 2000 for v in verdicts)
    x1, y1, x2, y2 = verdicts[0].bbox
    assert 40 < x2 - x1 < 120 and 50 < y2 - y1 < 140  # the astronaut's face in a 360p frame
    assert sink.statuses("cam1")[0] == "online" and sink.statuses("cam1")[-1] == "offline" and sink.closed
    report = runtime.monitor.get_performance_report()
    assert report["stages"]["end_to_end"]["calls"] == len(verdicts)
    assert report["streams"]["cam1"]["counters"]["frames_decoded"] >= report["streams"]["cam1"]["counters"]["frames_processed"]


def test_two_rtsp_streams_and_a_file_share_batches(weights_dir, rtsp_server, face_clip):
    server = rtsp_server()
    config = make_config(
        weights_dir,
        [{"id": "cam1", "url": server.url("/cam1")}, {"id": "cam2", "url": server.url("/cam2")},
         {"id": "file", "url": str(face_clip), "pace": "asap"}],  # fmt: skip
        faces={"max_wait_ms": 10},
    )
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(run_for(runtime, 5.0))

    for stream in ("cam1", "cam2", "file"):
        assert len(sink.verdicts(stream)) > 10, stream
    # batches really form across streams, for faces and for each detector
    assert max(runtime.faces.batch_sizes) > 1
    for name, batcher in runtime.batchers.items():
        assert max(batcher.batch_sizes) > 1, name
    report = runtime.monitor.get_performance_report()
    assert report["models"]["meso4"]["items"] > report["models"]["meso4"]["calls"]


def test_a_dead_stream_does_not_stop_the_others(weights_dir, rtsp_server):
    server = rtsp_server()
    config = make_config(
        weights_dir,
        [{"id": "cam1", "url": server.url("/cam1")},
         {"id": "dead", "url": "rtsp://127.0.0.1:9/nothing", "retry_initial_s": 0.2, "retry_max_s": 0.5}],  # fmt: skip
    )
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(run_for(runtime, 3.0))
    assert len(sink.verdicts("cam1")) > 20 and sink.verdicts("dead") == []
    assert sink.statuses("dead")[0] == "reconnecting"
    assert runtime.monitor.get_performance_report()["streams"]["dead"]["counters"]["reconnects"] >= 3


def test_realtime_and_asap_pacing(weights_dir, short_clip):
    timings = {}
    for pace in ("asap", "realtime"):
        config = make_config(weights_dir, [{"id": "f", "url": str(short_clip), "pace": pace}])
        sink = MemorySink()
        runtime = Runtime(config, load_detectors(config), [sink])
        start = time.monotonic()
        asyncio.run(run_for(runtime, None))  # a file that does not loop ends the run by itself
        timings[pace] = (time.monotonic() - start, len(sink.verdicts("f")))
    assert timings["asap"][1] == 60  # asap judges every frame: nothing is dropped
    assert timings["realtime"][0] >= 1.9  # 60 frames at 30 fps
    print(f"asap {timings['asap'][0]:.2f}s, realtime {timings['realtime'][0]:.2f}s with {timings['realtime'][1]} verdicts")


def test_dfstream_run_stops_cleanly_on_sigterm(weights_dir, face_clip, tmp_path):
    out = tmp_path / "verdicts.jsonl"
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "streams": [{"id": "loop", "url": str(face_clip), "pace": "realtime", "loop": True}],
        "detectors": [{"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")}],
        "sinks": {"jsonl": {"path": str(out)}},
    }))  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(config)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ})  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count('"verdict"') < 10):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert process.wait(10) == 0, process.stderr.read()
    assert time.monotonic() - sent < 5.0
    lines = [json.loads(line) for line in out.read_text().splitlines()]  # every line complete
    kinds = defaultdict(int)
    for line in lines:
        kinds[line["type"]] += 1
    assert kinds["verdict"] >= 10
    # drained in order: the last verdicts, the stream's state, then offline
    assert [line.get("status") or line.get("label") for line in lines[-2:]] == ["no_face", "offline"]


@pytest.mark.parametrize("min_models", [1, 2])
def test_a_failing_detector_is_counted_and_the_others_still_judge(weights_dir, short_clip, min_models):
    from torch import nn

    config = make_config(weights_dir, [{"id": "f", "url": str(short_clip), "pace": "asap"}], ensemble={"min_models": min_models})
    detectors = load_detectors(config)
    detectors["mesoinception4"].module.head.fc1 = nn.Linear(10, 16)  # a real forward pass that now fails
    sink = MemorySink()
    runtime = Runtime(config, detectors, [sink])
    asyncio.run(run_for(runtime, None))
    report = runtime.monitor.get_performance_report()
    assert report["models"]["mesoinception4"]["failures"] > 0
    assert report["models"]["mesoinception4"]["counters"]["errors"] == 60
    if min_models == 1:
        verdicts = sink.verdicts("f")
        assert len(verdicts) == 60
        assert all(v.failed_models == ("mesoinception4",) and set(v.models) == {"meso4"} for v in verdicts)
    else:
        assert sink.verdicts("f") == [] and report["streams"]["f"]["counters"]["verdicts_skipped"] == 60
