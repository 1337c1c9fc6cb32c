"""The controller at the scale of a camera wall: 200 cheap generated streams (a tiny clip at 1 frame a
second, looping) over four simulated nodes are placed, a node is removed and one added back, and
every stream is judged again each time; the placement stays within one stream of even and no stream
ever runs on two nodes. Runs before the scenarios (its own nodes and namespace, gone after it)."""

from __future__ import annotations

import collections
import time

import pytest

from dfstream.config import parse_config
from tests.ray.cluster.conftest import NODE

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.weights, pytest.mark.timeout(420)]

STREAMS = 200
SLOTS = {"dfstream_bulk_slots": 70}  # room for all of them on three nodes


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("bulk") / "tiny.mp4", seconds=4.0, fps=1, width=160, height=96)


def _running(engine) -> dict[str, dict]:  # noqa: ANN001
    """What each node runtime says it runs, asked of the runtimes themselves (not the controller)."""
    from ray.util import list_named_actors

    from dfstream.ray.controller import NODE_PREFIX

    names = [
        a["name"]
        for a in list_named_actors(all_namespaces=True)
        if a.get("namespace") == engine.namespace and a["name"].startswith(NODE_PREFIX)
    ]
    found = {}
    for name in names:
        try:
            found[name] = ray.get(ray.get_actor(name, namespace=engine.namespace).process.remote(), timeout=10)
        except Exception:  # noqa: BLE001 -- a runtime just killed with its node
            continue
    return found


def _settled(engine, nodes: int, judged_since: dict[str, tuple] | None = None) -> dict[str, tuple]:  # noqa: ANN001
    """Every stream running on one of ``nodes`` node runtimes, each within one of even, each judged
    (since ``judged_since``, where given: on another node, or more verdicts on the same); each
    stream's (node, verdicts)."""
    statuses = engine.status()
    placed = [s for s in statuses if s["state"] == "running"]
    if len(placed) != STREAMS or any(not s.get("verdicts") for s in placed):
        return {}
    loads = collections.Counter(s["node"] for s in placed)
    if len(loads) != nodes or max(loads.values()) - min(loads.values()) > 1:
        return {}
    counts = {s["stream"]: (s["node"], s["verdicts"]) for s in placed}
    if judged_since is not None and any(
        node == judged_since[s][0] and verdicts <= judged_since[s][1] for s, (node, verdicts) in counts.items()
    ):
        return {}
    return counts


def _wait_settled(engine, nodes: int, timeout: float, what: str, since: dict | None = None) -> tuple[dict, float]:  # noqa: ANN001
    started = time.monotonic()
    while not (counts := _settled(engine, nodes, since)):
        if time.monotonic() - started > timeout:
            states = collections.Counter(s["state"] for s in engine.status())
            raise AssertionError(f"{what}: not settled after {timeout} s: {dict(states)}; nodes {engine.nodes()}")
        _no_stream_twice(engine)
        time.sleep(1.0)
    return counts, time.monotonic() - started


def _no_stream_twice(engine) -> None:  # noqa: ANN001
    seen = collections.Counter(s for r in _running(engine).values() for s in r["streams"])
    assert not [s for s, n in seen.items() if n > 1], f"on two nodes at once: {[s for s, n in seen.items() if n > 1]}"


def test_two_hundred_streams_placed_a_node_removed_and_added_back(cluster, weights_dir, tiny_clip):
    from dfstream.ray.engine import RayEngine, connect

    bulk = [cluster.add_node(num_cpus=1, resources=SLOTS, **NODE) for _ in range(4)]
    cluster.wait_for_nodes()
    streams = [{"id": f"cam{i:03d}", "url": str(tiny_clip), "loop": True, "pace": "realtime"} for i in range(STREAMS)]
    config = parse_config(
        {
            "streams": streams,
            "detectors": [{"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")}],
            "runtime": {
                "engine": "ray",
                "address": cluster.address,
                "namespace": "dfstream-bulk",
                "streams": {"num_cpus": 0, "resources": {"dfstream_bulk_slots": 1}},
            },
        }
    )
    connect(config)
    said: list[str] = []
    engine = RayEngine(config, offline=True, say=said.append)
    try:
        started = time.monotonic()
        engine.deploy()
        assert engine.apply()["added"] == sorted(s["id"] for s in streams)
        _wait_settled(engine, 4, 240, "200 streams on 4 nodes")
        print(f"200 streams placed and judged on 4 node runtimes in {time.monotonic() - started:.1f} s")
        before = {s["stream"]: s["node"] for s in engine.status()}

        gone = next(n for n in bulk if n.node_id in before.values())
        on_gone = {s for s, node in before.items() if node == gone.node_id}
        removed = time.monotonic()
        cluster.remove_node(gone, allow_graceful=False)
        bulk.remove(gone)
        second, _ = _wait_settled(engine, 3, 120, "after a node was removed")
        after = {s["stream"]: s["node"] for s in engine.status()}
        moved = {s for s in after if after[s] != before[s]}
        assert moved == on_gone  # only the lost node's streams moved
        again_s = time.monotonic() - removed
        print(f"a node removed: its {len(on_gone)} streams judged again on the others in {again_s:.1f} s")

        bulk.append(cluster.add_node(num_cpus=1, resources=SLOTS, **NODE))
        joined = time.monotonic()
        _wait_settled(engine, 4, 180, "after a node was added back", since=second)
        final = {s["stream"]: s["node"] for s in engine.status()}
        moved = {s for s in final if final[s] != after[s]}
        assert len(moved) == collections.Counter(final.values())[bulk[-1].node_id]  # moved only to the new node
        print(
            f"a node added: {len(moved)} streams moved to it, all 200 judged again in {time.monotonic() - joined:.1f} s"
        )
        _no_stream_twice(engine)
    finally:
        engine.down()
        for node in bulk:
            cluster.remove_node(node)
