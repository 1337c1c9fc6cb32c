"""Autoscaling by streams, against Ray's own autoscaler: a head started with an autoscaling config
whose provider is Ray's fake multi-node one (each node it launches is a raylet started here). The
controller asks for a stream slot per stream; cameras added, the autoscaler adds decode nodes for
them; cameras removed, the demand falls and the emptied node's runtime stops, leaving the node idle
for the autoscaler to let go. (The fake provider's nodes never leave "uninitialized" in the
autoscaler's own view, all of them being 127.0.0.1, so its idle timeout is not seen to act here;
what it would see, the demand and the idle node, is asserted.)
Runs in its own PID and network namespaces (``ray stop`` there reaches only this cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from dfstream.config import parse_config

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.weights, pytest.mark.timeout(300)]

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
DECODE = {"resources": {"CPU": 1, "dfstream_stream_slots": 2}, "node_config": {}, "min_workers": 0, "max_workers": 3}


@pytest.fixture(scope="module")
def autoscaling_head(tmp_path_factory):
    config = {
        "cluster_name": "dfstream-autoscaling",
        "max_workers": 3,
        "provider": {"type": "fake_multinode", "disable_launch_config_check": True, "disable_node_updaters": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "decode": DECODE,
            "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        **{key: {} for key in ("file_mounts",)},
        **{
            key: []
            for key in (
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            )
        },
    }
    path = tmp_path_factory.mktemp("autoscaling") / "cluster.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1"}
    subprocess.run(
        [RAY, "start", "--head", f"--autoscaling-config={path}", "--num-cpus=2", "--include-dashboard=false"],
        env=env,
        check=True,
        capture_output=True,
    )
    yield
    if ray.is_initialized():
        ray.shutdown()
    subprocess.run([RAY, "stop", "--force"], capture_output=True)


def decode_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and "dfstream_stream_slots" in n["Resources"])


def test_cameras_added_add_decode_nodes_and_removed_let_them_go(autoscaling_head, weights_dir, tmp_path):
    from dfstream.ray.controller import CONTROLLER
    from dfstream.ray.engine import RayEngine, connect
    from stream import make_sample_clip

    clip = make_sample_clip(tmp_path / "tiny.mp4", seconds=4.0, fps=2, width=160, height=96)

    def config(cameras: int):  # noqa: ANN202
        streams = [{"id": f"cam{i}", "url": str(clip), "loop": True, "pace": "realtime"} for i in range(cameras)]
        return parse_config(
            {
                "streams": streams,
                "detectors": [{"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")}],
                "runtime": {
                    "engine": "ray",
                    "address": "auto",
                    "namespace": "dfstream-autoscaling",
                    "streams": {"num_cpus": 0, "resources": {"dfstream_stream_slots": 1}},
                    "nodes": {"release_after_s": 5},
                },
            }
        )

    def judged(count: int) -> bool:
        return sum(1 for s in engine.status() if s["state"] == "running" and s.get("verdicts")) == count

    def wait(predicate, timeout: float, what: str) -> float:  # noqa: ANN001
        started = time.monotonic()
        while not predicate():
            assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s; nodes {engine.nodes()}"
            time.sleep(1.0)
        return time.monotonic() - started

    engine = RayEngine(config(4), offline=True, say=lambda _: None)
    connect(engine.config)
    assert decode_nodes() == 0  # the cluster is a head alone
    engine.deploy()
    engine.apply()
    grown_s = wait(lambda: judged(4), 150, "4 cameras judged")
    controller = ray.get_actor(CONTROLLER, namespace=engine.namespace)
    assert ray.get(controller.demand_bundles.remote()) == 4  # a slot per camera, asked of the autoscaler
    assert decode_nodes() == 2  # 4 cameras, 2 slots a node: two nodes, not three
    print(f"4 cameras on a head alone: 2 decode nodes added, every camera judged in {grown_s:.1f} s")

    engine.config = config(1)
    engine.apply()
    shrunk_s = wait(lambda: len(engine.nodes()) == 1 and judged(1), 60, "one node runtime left")
    assert ray.get(controller.demand_bundles.remote()) == 1  # what the autoscaler now reads
    (busy,) = engine.nodes()
    idle = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "dfstream_stream_slots" in n["Resources"]]
    assert len(idle) == 2 and busy["streams"] == ["cam0"]  # the other node holds no dfstream actor: idle
    print(f"3 cameras removed: the demand fell to 1 and the emptied node's runtime stopped in {shrunk_s:.1f} s")
    engine.down()
