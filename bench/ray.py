"""The Ray engine against the local engine, on one machine with a simulated cluster:

    python -m bench.ray --weights ../shared/models/mesonet [--streams 3] [--seconds 4]

Figures (bench/ray_results.json):
- throughput: the same file streams (read as fast as they go) on the local engine and on Ray with
  1, 2 and 3 decode nodes (frames per second from the first verdict to the last, and the ratio to
  local: on one machine more nodes add no cores, so the ratio is Ray's overhead, not its scaling);
- memory: a node runtime's RSS with its models and no stream, with one live stream and with nine
  (the cost of each additional stream), and the controller's;
- recovery: four live streams over two decode nodes, one node killed: the moved streams' first
  verdict after the kill, and the longest pause of the streams that stayed.
Runs itself inside a loopback-only network namespace (Ray binds the machine's address otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.stages import weights_argument

HERE = Path(__file__).resolve().parent
NODE = {"object_store_memory": 150 * 2**20}


def _in_namespace() -> None:
    if os.environ.get("DFSTREAM_LOOPBACK_NETNS") == "1":
        return
    command = f"ip link set lo up && exec {sys.executable} -m bench.ray " + " ".join(map(repr, sys.argv[1:]))
    env = {**os.environ, "DFSTREAM_LOOPBACK_NETNS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", command], cwd=HERE.parent, env=env).returncode)


def config_of(weights: Path, streams: list[dict], address: str, out: Path):  # noqa: ANN201
    from dfstream.config import parse_config

    return parse_config(
        {
            "streams": streams,
            "detectors": [
                {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")},
                {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5")},
            ],
            "sinks": {"jsonl": {"path": str(out), "events": ["verdict"]}},
            "runtime": {
                "engine": "ray",
                "address": address,
                "namespace": "dfstream-bench",
                "streams": {"num_cpus": 0, "resources": {"dfstream_stream_slots": 1}},
            },
        }
    )


def fps_of(out: Path) -> tuple[float, int]:
    """Frames per second over the verdicts' own timestamps (first to last), and the verdict count."""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    frames = {(v["stream"], v["frame_seq"]) for v in lines}
    ts = [v["ts"] for v in lines]
    return len(frames) / max(max(ts) - min(ts), 1e-9), len(lines)


def local_fps(config, out: Path) -> float:  # noqa: ANN001
    from dfstream.wiring import load_detectors
    from pipeline.runtime.runtime import Runtime
    from sinks import JsonlSink

    local = config.model_copy(update={"runtime": config.runtime.model_copy(update={"engine": "local"})})
    runtime = Runtime(local, load_detectors(local, True, print), [JsonlSink(local.sinks.jsonl)])
    asyncio.run(runtime.run())
    return fps_of(out)[0]


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def start_cluster(nodes: int, slots: int):  # noqa: ANN201
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False, **NODE})
    for _ in range(nodes):
        cluster.add_node(num_cpus=2, resources={"dfstream_stream_slots": slots}, **NODE)
    cluster.wait_for_nodes()
    return cluster


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.ray: {what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def runtimes(engine) -> list[dict]:  # noqa: ANN001
    """Each node runtime's own account (pid, streams)."""
    import ray

    from dfstream.ray.controller import NODE_PREFIX

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a.get("namespace") == engine.namespace and a["name"].startswith(NODE_PREFIX)
    ]
    return [ray.get(ray.get_actor(n, namespace=engine.namespace).process.remote(), timeout=30) for n in names]


def memory(weights: Path, clip: Path, tmp: Path) -> dict:
    """A node runtime's RSS with no stream, one and nine live streams; the controller's."""
    import ray

    from dfstream.ray.controller import CONTROLLER
    from dfstream.ray.engine import RayEngine, connect

    cluster = start_cluster(1, 16)
    out = tmp / "memory.jsonl"
    live = [{"id": f"m{i}", "url": str(clip), "loop": True, "pace": "realtime", "fps": 10} for i in range(9)]
    figures: dict = {}
    try:
        config = config_of(weights, [], cluster.address, out)
        connect(config)
        engine = RayEngine(config, offline=True, say=lambda _: None)
        engine.deploy()
        engine.apply()
        wait_for(lambda: any(n["ready"] for n in engine.nodes()), 120, "a node runtime ready")
        time.sleep(3)
        pid = runtimes(engine)[0]["pid"]
        figures["node_runtime_base"] = round(rss_mb(pid), 1)
        for count in (1, 9):
            engine.config = config_of(weights, live[:count], cluster.address, out)
            engine.apply()
            wait_for(
                lambda: sum(1 for s in engine.status() if s["state"] == "running" and s.get("verdicts")) == count,
                120,
                f"{count} streams judged",
            )
            time.sleep(10)  # the decoders' and queues' buffers filled
            figures[f"node_runtime_{count}_streams"] = round(rss_mb(pid), 1)
        figures["per_additional_stream"] = round(
            (figures["node_runtime_9_streams"] - figures["node_runtime_1_streams"]) / 8, 1
        )
        controller = ray.get_actor(CONTROLLER, namespace=engine.namespace)
        figures["controller"] = round(rss_mb(ray.get(controller.__ray_call__.remote(lambda self: os.getpid()))), 1)
        figures["raylet"] = round(
            statistics.mean(p.memory_info().rss / 2**20 for p in psutil.process_iter() if p.name() == "raylet"), 1
        )
        engine.down()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return figures


def recovery(weights: Path, clip: Path, tmp: Path) -> dict:
    """Four live streams over two decode nodes; one node killed."""
    import ray

    from dfstream.ray.engine import RayEngine, connect

    cluster = start_cluster(2, 4)
    out = tmp / "recovery.jsonl"
    live = [{"id": f"r{i}", "url": str(clip), "loop": True, "pace": "realtime", "fps": 10} for i in range(4)]
    try:
        config = config_of(weights, live, cluster.address, out)
        connect(config)
        engine = RayEngine(config, offline=True, say=lambda _: None)
        engine.deploy()
        engine.apply()
        wait_for(
            lambda: sum(1 for s in engine.status() if s["state"] == "running" and s.get("verdicts")) == 4,
            180,
            "4 streams judged",
        )
        time.sleep(5)
        placed = {s["stream"]: s["node"] for s in engine.status()}
        node = next(n for n in cluster.worker_nodes if n.node_id in placed.values())
        moved = sorted(s for s, n in placed.items() if n == node.node_id)
        killed = time.time()
        cluster.remove_node(node, allow_graceful=False)
        wait_for(lambda: all(resumed(verdicts(out), s, killed) for s in moved), 60, "the moved streams judged again")
        time.sleep(5)
        seen = verdicts(out)
        back = {s: round(resumed(seen, s, killed) - killed, 2) for s in moved}
        # the simulated node's processes outlive its raylet for a moment (a machine lost has none left)
        lingered = {
            s: round(max(v["ts"] for v in seen if v["stream"] == s and v["ts"] < resumed(seen, s, killed)) - killed, 2)
            for s in moved
        }
        pauses = {}
        for s in sorted(set(placed) - set(moved)):
            ts = sorted(v["ts"] for v in seen if v["stream"] == s and v["ts"] > killed - 2)
            pauses[s] = round(max(b - a for a, b in zip(ts, ts[1:])), 2)
        engine.down()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "moved_streams_next_verdict_s": back,
        "stayed_streams_longest_pause_s": pauses,
        "lost_node_last_verdict_s": lingered,
    }


def resumed(seen: list[dict], stream: str, killed: float) -> float | None:
    """When the stream's first verdict from its new node came: its seq jumps over the numbers the
    lost node had leased (the lost node's workers may publish for a moment after the kill)."""
    mine = [v for v in seen if v["stream"] == stream]
    return next((b["ts"] for a, b in zip(mine, mine[1:]) if b["ts"] > killed and b["seq"] > a["seq"] + 1), None)


def verdicts(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=HERE / "ray_results.json")
    parser.add_argument("--parts", nargs="+", default=["throughput", "memory", "recovery"])
    args = parser.parse_args()
    _in_namespace()

    import ray

    from dfstream.ray.engine import RayEngine, connect
    from stream import make_sample_clip

    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}  # the parts not run stay
    results.update({"streams": args.streams, "cpus": psutil.cpu_count()})
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(Path(tmp) / "clip.mp4", seconds=args.seconds)
        streams = [{"id": f"s{i}", "url": str(clip), "pace": "asap"} for i in range(args.streams)]
        out = Path(tmp) / "local.jsonl"
        if "throughput" in args.parts:
            results["local_fps"] = round(local_fps(config_of(args.weights, streams, "local", out), out), 1)
            print(f"local engine: {results['local_fps']} fps", flush=True)
            results["ray"] = {}
        for nodes in (1, 2, 3) if "throughput" in args.parts else ():
            started = time.monotonic()
            cluster = start_cluster(nodes, args.streams)
            start_s = time.monotonic() - started
            out = Path(tmp) / f"ray{nodes}.jsonl"
            config = config_of(args.weights, streams, cluster.address, out)
            connect(config)
            engine = RayEngine(config, offline=True, say=lambda _: None)
            t = time.monotonic()
            engine.deploy()
            engine.apply()
            wait_for(lambda: all(s["state"] in ("ended", "failed") for s in engine.status()), 300, "the files judged")
            fps, count = fps_of(out)
            figures = {
                "cluster_start_s": round(start_s, 1),
                "deploy_to_end_s": round(time.monotonic() - t, 1),
                "fps": round(fps, 1),
                "ratio_to_local": round(fps / results["local_fps"], 2),
                "verdicts": count,
                "states": sorted({s["state"] for s in engine.status()}),
            }
            results["ray"][str(nodes)] = figures
            print(f"{nodes} decode node(s): {json.dumps(figures)}", flush=True)
            engine.down()
            ray.shutdown()
            cluster.shutdown()
        if "memory" in args.parts:
            results["rss_mb"] = memory(args.weights, clip, Path(tmp))
            print(f"memory (MB): {json.dumps(results['rss_mb'])}", flush=True)
        if "recovery" in args.parts:
            results["recovery"] = recovery(args.weights, clip, Path(tmp))
            print(f"a decode node killed: {json.dumps(results['recovery'])}", flush=True)
    results["first_design"] = FIRST_DESIGN
    results["versions"] = {"ray": ray.__version__}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


# what the first design (an actor per stream, every model a Serve deployment) measured here, for the record
FIRST_DESIGN = {
    "ratio_to_local": {"1": 0.36, "2": 0.38, "3": 0.42},
    "rss_mb": {"stream_actor": 746.1, "replica": 753.4},
    "node_lost_to_next_verdict_s": "21-25",
}


if __name__ == "__main__":
    main()
