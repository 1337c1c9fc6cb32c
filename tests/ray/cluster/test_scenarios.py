"""The Ray engine on a real four-node cluster: a node runtime on each decode node, streams spread
over them with the local engine's verdicts (one detector scored in the node runtimes, the other by
its shared pool on the GPU node), a stream's voice judged, streams added and removed at run time, a
lost decode node and a lost pool node. Run in order, on one cluster (see conftest.py); each prints
what it measured."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time

import pytest
import yaml

from dfstream.config import parse_config
from tests.helpers import MemorySink, load_detectors, make_config, run_for
from tests.ray.cluster.conftest import NODE, Verdicts

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.weights, pytest.mark.timeout(240)]


def config_of(cluster, weights_dir, streams: list[dict], **sinks) -> object:  # noqa: ANN001
    runtime = {
        "engine": "ray",
        "address": cluster.address,
        "namespace": "dfstream-test",
        "metrics_interval_s": 1.0,
        "streams": {"num_cpus": 0.5, "resources": {"dfstream_stream_slots": 1}},
        "nodes": {"heartbeat_s": 0.5, "lost_after_s": 3.0},
        "deployments": {"meso4": {"num_cpus": 1, "num_gpus": 1}},  # a shared pool, on the GPU node
    }
    return make_config(weights_dir, streams, sinks=sinks, runtime=runtime)


@pytest.fixture(scope="module")
def engine(cluster, weights_dir, tmp_path_factory):
    from dfstream.ray.engine import RayEngine, connect

    said: list[str] = []
    config = config_of(cluster, weights_dir, [{"id": "warm", "url": "sample://astronaut", "pace": "asap"}])
    connect(config)
    e = RayEngine(config, say=said.append)
    started = time.monotonic()
    e.deploy()
    e.deploy_s = time.monotonic() - started
    print(f"deployments ready in {e.deploy_s:.1f} s")
    yield e
    e.down()


def _wait_states(engine, states: set[str], timeout: float) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        statuses = engine.status()
        if statuses and all(s["state"] in states for s in statuses):
            return statuses
        assert time.monotonic() < deadline, f"streams not {states} after {timeout} s: {statuses}"
        time.sleep(0.5)


def _scored(lines: list[dict]) -> list[tuple]:
    return [(v["frame_seq"], v["track_id"], v["label"], v["scored"]) for v in lines]


def test_a_streams_voice_is_judged_in_its_node_runtime_as_the_local_engine_judges_it(
    cluster, engine, weights_dir, sound_clips, aasist_dir, tmp_path
):
    out = tmp_path / "voice.jsonl"
    streams = [{"id": "call", "url": str(sound_clips["speech"]), "pace": "asap"}]
    config = config_of(cluster, weights_dir, streams, jsonl={"path": str(out), "events": ["voice"]})
    voice = [{"name": "aasist_l", "type": "aasist_l", "weights": str(aasist_dir / "AASIST-L.pth")}]
    config = parse_config({**config.model_dump(mode="json"), "audio_detectors": voice})
    engine.config = config
    started = time.monotonic()
    engine.deploy()
    assert engine.apply()["added"] == ["call"]  # the node runtimes start again with the voice model
    statuses = _wait_states(engine, {"ended", "failed"}, 120)
    assert [s["state"] for s in statuses] == ["ended"], statuses
    print(f"a voice model and a stream with speech on Ray: {time.monotonic() - started:.1f} s")
    remote = [json.loads(line) for line in out.read_text().splitlines()]

    sink = MemorySink("local")
    local_config = parse_config({**config.model_dump(mode="json", exclude={"runtime", "sinks"})})
    from pipeline.models.audio.loading import load_voice_models
    from pipeline.runtime.events import VoiceVerdict
    from pipeline.runtime.runtime import Runtime

    runtime = Runtime(
        local_config, load_detectors(local_config), [sink], voices=load_voice_models(local_config.audio_detectors)
    )
    asyncio.run(run_for(runtime, None))
    local = [e.to_dict() for e in sink.events if isinstance(e, VoiceVerdict)]
    assert len(remote) == len(local) == 5 and [v["seq"] for v in remote] == [1, 2, 3, 4, 5]
    for a, b in zip(remote, local):
        assert (a["label"], a["window_end_pts"], a["speech"]) == (b["label"], b["window_end_pts"], b["speech"])
        assert a["models"]["aasist_l"] == pytest.approx(b["models"]["aasist_l"], abs=1e-5)  # the same windows


def test_streams_spread_over_the_decode_nodes_with_the_local_engines_verdicts(
    cluster, engine, weights_dir, short_clip, tmp_path
):
    out = tmp_path / "verdicts.jsonl"
    streams = [{"id": f"file{i}", "url": str(short_clip), "pace": "asap"} for i in range(2)]
    config = config_of(cluster, weights_dir, streams, jsonl={"path": str(out), "events": ["verdict"]})
    engine.config = config
    started = time.monotonic()
    assert engine.apply()["added"] == ["file0", "file1"]
    statuses = _wait_states(engine, {"ended", "failed"}, 120)
    ray_s = time.monotonic() - started
    assert all(s["state"] == "ended" for s in statuses), statuses
    decode_nodes = {n.node_id for n in cluster.decode}
    assert {s["node"] for s in statuses} == decode_nodes  # spread by free slots: one stream on each decode node
    assert {n["node"] for n in engine.nodes()} == decode_nodes  # a node runtime on each, none elsewhere

    # the same file through the local engine, in this process
    sink = MemorySink("local")
    local_config = parse_config(
        {**config.model_dump(mode="json", exclude={"runtime", "sinks"}), "streams": streams[:1]}
    )
    from pipeline.runtime.runtime import Runtime

    local_started = time.monotonic()
    asyncio.run(run_for(Runtime(local_config, load_detectors(local_config), [sink]), None))
    local_s = time.monotonic() - local_started
    local = [v.to_dict() for v in sink.verdicts()]
    remote = [json.loads(line) for line in out.read_text().splitlines()]
    print(f"2 file streams on Ray: {ray_s:.1f} s (start to end); one on the local engine: {local_s:.1f} s")
    for stream in ("file0", "file1"):
        mine = [v for v in remote if v["stream"] == stream]
        assert _scored(mine) == _scored(local)  # the same frames, tracks, labels and scoring cadence
        assert [v["seq"] for v in mine] == list(range(mine[0]["seq"], mine[0]["seq"] + len(mine)))
        for a, b in zip(mine, local):
            assert set(a) - {"type"} == set(b)  # jsonl adds the event type
            assert a["models"].keys() == b["models"].keys() and a["failed_models"] == b["failed_models"] == []
            for name in a["models"]:
                assert a["models"][name] == pytest.approx(
                    b["models"][name], abs=1e-4
                )  # the same crops, scored remotely
            assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)


def test_streams_added_and_removed_at_run_time(cluster, engine, weights_dir, camera, broker, creds, tmp_path):
    mqtt = {"port": broker.port, "verdict_interval_s": 0, "discovery": False}
    cams = [{"id": f"cam{i}", "url": camera.url(f"/cam{i}"), "fps": 10} for i in range(3)]
    engine.config = config_of(cluster, weights_dir, cams[:2], mqtt=mqtt)
    changes = engine.apply()
    assert sorted(changes["added"]) == ["cam0", "cam1"] and sorted(changes["removed"]) == ["file0", "file1"]
    before = {s["stream"]: s for s in _wait_states(engine, {"running"}, 60)}
    engine.config = config_of(cluster, weights_dir, cams, mqtt=mqtt)
    assert engine.apply() == {"added": ["cam2"], "removed": [], "changed": [], "kept": ["cam0", "cam1"]}
    engine.config = config_of(cluster, weights_dir, [cams[0], cams[2]], mqtt=mqtt)
    assert engine.apply() == {"added": [], "removed": ["cam1"], "changed": [], "kept": ["cam0", "cam2"]}
    after = {s["stream"]: s for s in _wait_states(engine, {"running"}, 60)}
    assert set(after) == {"cam0", "cam2"}
    assert after["cam0"]["started"] == before["cam0"]["started"] and not after["cam0"]["restarted"]  # untouched
    engine.config = config_of(cluster, weights_dir, cams, mqtt=mqtt)
    assert engine.apply()["added"] == ["cam1"]
    # and as a user sees it, from another process
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(engine.config.model_dump(mode="json")))
    done = subprocess.run(
        [sys.executable, "-m", "dfstream", "ray", "status", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(json.loads(line)["stream"] for line in done.stdout.splitlines()) == ["cam0", "cam1", "cam2"]


def test_one_metrics_endpoint_for_the_whole_cluster(cluster, engine, weights_dir, camera, broker, creds):
    """Every actor's and replica's numbers, merged by the hub, under the local engine's metric names."""
    import urllib.error
    import urllib.request

    from tests.helpers import free_port

    port = free_port()
    mqtt = {"port": broker.port, "verdict_interval_s": 0, "discovery": False}
    cams = [{"id": f"cam{i}", "url": camera.url(f"/cam{i}"), "fps": 10} for i in range(3)]
    engine.config = config_of(cluster, weights_dir, cams, mqtt=mqtt, prometheus={"port": port})
    engine.deploy()
    assert engine.apply()["changed"] == ["cam0", "cam1", "cam2"]  # the sinks section changed: restarted with it

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    wanted = [f'dfstream_frames_processed_total{{stream="cam{i}"}}' for i in range(3)] + [
        'dfstream_detector_inference_seconds_count{detector="meso4"}',
        'dfstream_detector_inference_seconds_count{detector="mesoinception4"}',
        "dfstream_face_batch_size_count",
        "dfstream_end_to_end_latency_seconds_count",
        "dfstream_mqtt_published_total",
    ]
    deadline = time.monotonic() + 60
    while True:
        text, ready = get("/metrics")[1], get("/readyz")
        if all(w in text for w in wanted) and ready[0] == 200:
            break
        assert time.monotonic() < deadline, ([w for w in wanted if w not in text], ready)
        time.sleep(1)
    assert ready == (200, "2 detectors, 3 streams online\n")
    published = float(re.search(r"^dfstream_mqtt_published_total (\S+)$", text, re.M).group(1))
    assert published > 0  # the three actors' MQTT clients, added up


def test_a_lost_decode_node_its_streams_resume_on_the_others(cluster, engine, broker, creds):
    verdicts = Verdicts(broker)
    try:
        streams = ["cam0", "cam1", "cam2"]
        verdicts.wait(
            lambda: all(verdicts.of(s, time.monotonic() - 2) for s in streams), 90, "verdicts from every camera"
        )
        statuses = {s["stream"]: s for s in engine.status()}
        lost = next(n for n in cluster.decode if any(s["node"] == n.node_id for s in statuses.values()))
        moved = [sid for sid, s in statuses.items() if s["node"] == lost.node_id]
        stayed = [sid for sid in streams if sid not in moved]
        killed = time.monotonic()
        cluster.remove_node(lost, allow_graceful=False)
        cluster.decode.remove(lost)

        def back(sid: str) -> float | None:
            """When the first verdict of the restarted actor came: its seq jumps over the numbers the lost one held."""
            seen = verdicts.of(sid)
            return next((t for (_, a), (t, b) in zip(seen, seen[1:]) if t >= killed and b["seq"] > a["seq"] + 1), None)

        try:
            verdicts.wait(lambda: all(back(sid) for sid in moved), 180, f"{moved} to publish again")
        except AssertionError as exc:
            seqs = {
                sid: [(round(t - killed, 1), v["seq"]) for t, v in verdicts.of(sid, killed - 2)][:40] for sid in moved
            }
            raise AssertionError(f"{exc}; since the kill: {seqs}; streams: {engine.status()}") from None
        resumed = {sid: back(sid) - killed for sid in moved}
        time.sleep(3)
        statuses = {s["stream"]: s for s in engine.status()}
        for sid in moved:
            assert statuses[sid]["restarted"] and statuses[sid]["node"] != lost.node_id
            seqs = [v["seq"] for _, v in verdicts.of(sid)]
            assert seqs == sorted(set(seqs)), f"{sid}: a seq repeated or went back"  # never a repeat after the restart
            gap = next(b - a for a, b in zip(seqs, seqs[1:]) if b - a > 1)
            print(f"{sid}: node lost -> verdicts again in {resumed[sid]:.1f} s; seq gap {gap - 1}")
        for sid in stayed:  # the others went on while the moved ones were away
            times = [t for t, _ in verdicts.of(sid, killed - 1)]
            worst, at = max((b - a, a) for a, b in zip(times, times[1:]))
            during = [t for t in times if killed < t < killed + min(resumed.values())]
            print(
                f"{sid} (not moved): longest pause between verdicts {worst:.2f} s, from {at - killed:.1f} s "
                "after the kill; "
                f"{len(during)} verdicts while the others were away"
            )
            # the first design paused them 13-16 s (two stream actors importing PyTorch on the shared
            # cores); a node runtime takes the moved streams into the runtime it already runs. The
            # bound is loose for a loaded 2-core machine: bench/ray.py states the figure
            assert during and worst < 5.0
        for sid in moved:  # heartbeats, not Ray's 20-odd seconds of noticing the node is gone
            assert resumed[sid] < 15.0, resumed
        cluster.decode.append(
            cluster.add_node(num_cpus=3, resources={"dfstream_stream_slots": 3}, **NODE)
        )  # the node comes back
    finally:
        verdicts.close()


def test_a_lost_detector_node_the_streams_keep_publishing(cluster, engine, broker, creds):
    verdicts = Verdicts(broker)
    try:
        verdicts.wait(lambda: len(verdicts.of("cam0")) > 5, 60, "verdicts from cam0")
        killed = time.monotonic()
        cluster.remove_node(cluster.gpu, allow_graceful=False)

        def without_meso4() -> bool:
            return any("meso4" in v["failed_models"] for _, v in verdicts.of("cam0", killed))

        away_s = verdicts.wait(without_meso4, 60, "verdicts naming meso4 as failed")
        cluster.gpu = cluster.add_node(num_cpus=2, num_gpus=1, **NODE)  # a replacement GPU node joins
        joined = time.monotonic()

        def scored_again() -> bool:
            return any("meso4" in v["models"] and v["scored"] for _, v in verdicts.of("cam0", joined))

        back_s = verdicts.wait(scored_again, 150, "meso4 scores again")
        during = [v for t, v in verdicts.of("cam0", killed) if t < joined + back_s]
        print(
            f"detector node lost: verdicts without meso4 after {away_s:.1f} s; a new GPU node -> meso4 scores "
            f"again in {back_s:.1f} s; "
            f"{len(during)} verdicts published meanwhile"
        )
        assert any(
            v["models"] and "mesoinception4" in v["models"] for v in during if v["scored"]
        )  # judged by the other
    finally:
        verdicts.close()


def test_the_controller_restarted_goes_on_with_the_node_runtimes_it_finds(cluster, engine, broker, creds):
    """Ray restarts the controller; it takes the applied config from Ray's store and the node runtimes
    it finds, and every stream publishes again (at worst after the runtimes' own fence)."""
    from dfstream.ray.controller import CONTROLLER

    cams = ["cam0", "cam1", "cam2"]
    verdicts = Verdicts(broker)
    try:
        verdicts.wait(lambda: all(verdicts.of(c, time.monotonic() - 2) for c in cams), 90, "verdicts from every camera")
        runtimes = {n["node"] for n in engine.nodes()}
        killed = time.monotonic()
        ray.kill(ray.get_actor(CONTROLLER, namespace=engine.namespace), no_restart=False)
        back_s = verdicts.wait(
            lambda: all(verdicts.of(c, killed + 2) for c in cams), 90, "every camera publishing after the restart"
        )
        statuses = _wait_states(engine, {"running"}, 60)  # answered by the restarted controller
        assert sorted(s["stream"] for s in statuses) == cams
        assert {n["node"] for n in engine.nodes()} == runtimes  # the same nodes' runtimes, found again
        paused = max(
            (b - a for c in cams for (a, _), (b, _) in zip(verdicts.of(c, killed - 1), verdicts.of(c, killed - 1)[1:])),
            default=0.0,
        )
        print(f"controller killed: every camera publishing within {back_s:.1f} s; longest pause {paused:.1f} s")
    finally:
        verdicts.close()
