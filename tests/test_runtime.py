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

from pipeline.monitoring.keys import END_TO_END, FACES, Count, Subject
from pipeline.runtime.runtime import Runtime
from tests.helpers import MemorySink, load_detectors, make_config, run_for, wait_until

pytestmark = pytest.mark.weights


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
    monitor, cam1 = runtime.monitor, Subject.stream("cam1")
    assert monitor.get_model_metrics(END_TO_END)["calls"] == len(verdicts)
    assert monitor.counter(cam1, Count.FRAMES_DECODED) >= monitor.counter(cam1, Count.FRAMES_PROCESSED) > 30


def test_two_rtsp_streams_and_a_file_share_batches(weights_dir, rtsp_server, face_clip):
    server = rtsp_server()
    config = make_config(
        weights_dir,
        [
            {"id": "cam1", "url": server.url("/cam1")},
            {"id": "cam2", "url": server.url("/cam2")},
            {"id": "file", "url": str(face_clip), "pace": "asap"},
        ],
        faces={"max_wait_ms": 10},
    )
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(run_for(runtime, 5.0))

    for stream in ("cam1", "cam2", "file"):
        assert len(sink.verdicts(stream)) > 10, stream
    # batches really form across streams, for faces and for each detector
    for subject in (FACES, Subject.model("meso4"), Subject.model("mesoinception4")):
        _, sizes = runtime.monitor.histograms(subject)
        assert sizes.cumulative[0] < sizes.count, subject  # some batches held more than one item


def test_a_dead_stream_does_not_stop_the_others(weights_dir, rtsp_server):
    server = rtsp_server()
    config = make_config(
        weights_dir,
        [
            {"id": "cam1", "url": server.url("/cam1")},
            {"id": "dead", "url": "rtsp://127.0.0.1:9/nothing", "retry_initial_s": 0.2, "retry_max_s": 0.5},
        ],
    )
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(run_for(runtime, 3.0))
    assert len(sink.verdicts("cam1")) > 20 and sink.verdicts("dead") == []
    assert sink.statuses("dead")[0] == "reconnecting"
    assert runtime.monitor.counter(Subject.stream("dead"), Count.RECONNECTS) >= 3


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
    print(
        f"asap {timings['asap'][0]:.2f}s, realtime {timings['realtime'][0]:.2f}s with {timings['realtime'][1]} verdicts"
    )


def test_dfstream_run_stops_cleanly_on_sigterm(weights_dir, face_clip, tmp_path):
    out = tmp_path / "verdicts.jsonl"
    config = tmp_path / "run.yaml"
    config.write_text(
        json.dumps(
            {
                "streams": [{"id": "loop", "url": str(face_clip), "pace": "realtime", "loop": True}],
                "detectors": [{"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")}],
                "sinks": {"jsonl": {"path": str(out)}},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dfstream", "run", str(config)], stderr=subprocess.PIPE, text=True, env={**os.environ}
    )
    wait_until(lambda: out.exists() and out.read_text().count('"verdict"') >= 10, 60, "10 verdicts in the file")
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

    config = make_config(
        weights_dir, [{"id": "f", "url": str(short_clip), "pace": "asap"}], ensemble={"min_models": min_models}
    )
    # the layer broken below is PyTorch's, so PyTorch must run it
    config = config.model_copy(
        update={"detectors": [d.model_copy(update={"backend": "torch"}) for d in config.detectors]}
    )
    detectors = load_detectors(config)
    detectors["mesoinception4"].module.head.fc1 = nn.Linear(10, 16)  # a real forward pass that now fails
    sink = MemorySink()
    runtime = Runtime(config, detectors, [sink])
    asyncio.run(run_for(runtime, None))
    monitor, broken = runtime.monitor, Subject.model("mesoinception4")
    assert monitor.get_model_metrics(broken)["failures"] > 0
    if min_models == 1:
        verdicts = sink.verdicts("f")
        assert len(verdicts) == 60
        assert all(v.failed_models == ("mesoinception4",) and set(v.models) == {"meso4"} for v in verdicts)
        # scored at judge.max_rate_hz: each scored face is one failed crop
        assert monitor.counter(broken, Count.CROP_ERRORS) == sum(v.scored for v in verdicts) < 60
    else:  # a track without a verdict is due again on every frame
        assert monitor.counter(broken, Count.CROP_ERRORS) == 60
        assert sink.verdicts("f") == [] and monitor.counter(Subject.stream("f"), Count.VERDICTS_SKIPPED) == 60


def test_streams_added_and_removed_while_the_runtime_runs(weights_dir, short_clip):
    """What the Ray engine's node runtimes do as the controller moves streams: one runtime, its
    batchers shared, streams coming and going; a removed stream publishes its last state and stops,
    the others go on."""
    from stream.config import StreamConfig

    config = make_config(weights_dir, [])
    sink = MemorySink("mem")
    runtime = Runtime(config, load_detectors(config), [sink])

    def stream(sid: str) -> StreamConfig:
        return StreamConfig.model_validate({"id": sid, "url": str(short_clip), "loop": True, "pace": "realtime"})

    def verdicts(sid: str) -> int:
        return sum(1 for v in sink.verdicts() if v.stream == sid)

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run(keep_open=True))
        while runtime.backends is None:
            await asyncio.sleep(0.05)
        runtime.add_stream(stream("a"))
        runtime.add_stream(stream("b"))
        while not (verdicts("a") and verdicts("b")):
            await asyncio.sleep(0.1)
        with pytest.raises(Exception, match="exists already"):
            runtime.add_stream(stream("a"))
        await runtime.remove_stream("a")
        assert set(runtime.added) == {"b"}
        a_after, b_after = verdicts("a"), verdicts("b")
        await asyncio.sleep(1.5)
        assert verdicts("a") == a_after and verdicts("b") > b_after  # a stopped, b went on
        runtime.add_stream(stream("a"))  # and it can come back
        while verdicts("a") == a_after:
            await asyncio.sleep(0.1)
        runtime.stop.set()
        await asyncio.wait_for(task, 30)
        assert runtime.added == {}

    asyncio.run(scenario())
