"""The Ray engine against the local engine, on one machine with a simulated cluster:

    python -m bench.ray --weights ../shared/models/mesonet [--streams 3] [--seconds 4]

Figures: cluster start time; the same file streams (read as fast as they go) on the local engine
and on Ray with 1, 2 and 3 decode nodes (frames per second from the first verdict to the last, and
the ratio to local: on one machine more nodes add no cores, so the ratio is Ray's overhead, not
its scaling); the cost of one remote call per crop and per face-finding frame against the same
work in-process; memory per process kind and per node. Runs itself inside a loopback-only network
namespace (Ray binds the machine's address otherwise). Writes bench/ray_results.json.
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

import numpy as np
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
                "streams": {"num_cpus": 0.5, "resources": {"dfstream_stream_slots": 1}},
                "faces": {"num_cpus": 1, "resources": {"dfstream_models": 1}},
                "detectors": {"num_cpus": 1, "resources": {"dfstream_models": 1}},
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


def call_costs(weights: Path, frame: np.ndarray, box: tuple, samples: int) -> dict:
    """ms per call, remote (the deployment handle, as a stream actor calls it) and in-process."""
    from ray import serve

    from dfstream.ray.serving import FACES_APP, RemoteFaces, RemoteScorer, detector_app
    from pipeline.models.config import DetectorConfig
    from pipeline.models.faces.finder import FaceDetector, FacesConfig
    from pipeline.models.registry import ModelRegistry

    handle = serve.get_app_handle(detector_app("meso4"))
    faces_handle = serve.get_app_handle(FACES_APP)

    async def remote() -> tuple[list[float], list[float]]:
        margin, rounding = await handle.crop_rule.remote()
        scorer, finder = RemoteScorer(handle, margin, rounding), RemoteFaces(faces_handle, 640)
        crops, faces = [], []
        for _ in range(samples):
            t = time.perf_counter()
            await scorer.submit((frame, box, None))
            crops.append(time.perf_counter() - t)
            t = time.perf_counter()
            await finder.submit(frame)
            faces.append(time.perf_counter() - t)
        return crops, faces

    crops, faces = asyncio.run(remote())
    detector = ModelRegistry().load_configured(
        [DetectorConfig(name="meso4", type="meso4", weights=str(weights / "Meso4_DF.h5"))]
    )["meso4"]
    finder = FaceDetector(FacesConfig())
    local_crops, local_faces = [], []
    for _ in range(samples):
        t = time.perf_counter()
        detector.score_crops([(frame, box)])
        local_crops.append(time.perf_counter() - t)
        t = time.perf_counter()
        finder.detect([frame])
        local_faces.append(time.perf_counter() - t)
    ms = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
    return {
        "crop_ms": {"ray": ms(crops), "local": ms(local_crops)},
        "faces_ms": {"ray": ms(faces), "local": ms(local_faces)},
        "overhead_ms": {
            "crop": round(ms(crops) - ms(local_crops), 2),
            "faces_frame": round(ms(faces) - ms(local_faces), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE / "ray_results.json")
    args = parser.parse_args()
    _in_namespace()

    import ray
    from ray.cluster_utils import Cluster

    from dfstream.ray.engine import RayEngine, connect
    from stream import make_sample_clip

    results: dict = {"streams": args.streams, "cpus": psutil.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(Path(tmp) / "clip.mp4", seconds=args.seconds)
        streams = [{"id": f"s{i}", "url": str(clip), "pace": "asap"} for i in range(args.streams)]
        out = Path(tmp) / "local.jsonl"
        results["local_fps"] = round(local_fps(config_of(args.weights, streams, "local", out), out), 1)
        results["ray"] = {}
        for nodes in (1, 2, 3):
            started = time.monotonic()
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 4, "resources": {"dfstream_models": 4}, "include_dashboard": False, **NODE},
            )
            for _ in range(nodes):
                cluster.add_node(num_cpus=2, resources={"dfstream_stream_slots": args.streams}, **NODE)
            cluster.wait_for_nodes()
            start_s = time.monotonic() - started
            out = Path(tmp) / f"ray{nodes}.jsonl"
            config = config_of(args.weights, streams, cluster.address, out)
            connect(config)
            engine = RayEngine(config, offline=True, say=lambda _: None)
            t = time.monotonic()
            engine.deploy()
            deploy_s = time.monotonic() - t
            engine.apply()
            while not all(s["state"] in ("ended", "failed") for s in engine.status()):
                time.sleep(0.5)
            statuses = engine.status()
            fps, verdicts = fps_of(out)
            figures = {
                "cluster_start_s": round(start_s, 1),
                "deploy_s": round(deploy_s, 1),
                "fps": round(fps, 1),
                "ratio_to_local": round(fps / results["local_fps"], 2),
                "verdicts": verdicts,
            }
            if nodes == 1:
                from ray import serve

                from pipeline.models.faces.finder import FaceDetector, FacesConfig
                from stream.sample import sample_frames

                frame = next(iter(sample_frames(1)))
                box = tuple(float(v) for v in FaceDetector(FacesConfig()).detect([frame])[0].xyxy[0])
                figures["calls"] = call_costs(args.weights, frame, box, args.samples)
                replicas = [
                    serve.get_app_handle(app).process.remote().result()
                    for app in ("dfstream-faces", "dfstream-detector-meso4", "dfstream-detector-mesoinception4")
                ]
                figures["rss_mb"] = {
                    "stream_actor": round(statistics.mean(rss_mb(s["pid"]) for s in statuses), 1),
                    "replica": round(statistics.mean(rss_mb(r["pid"]) for r in replicas), 1),
                    "raylet": round(
                        statistics.mean(
                            p.memory_info().rss / 2**20 for p in psutil.process_iter() if p.name() == "raylet"
                        ),
                        1,
                    ),
                }
            results["ray"][str(nodes)] = figures
            print(f"{nodes} decode node(s): {json.dumps(figures)}", flush=True)
            engine.down()
            ray.shutdown()
            cluster.shutdown()
    results["versions"] = {"ray": ray.__version__}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
