"""Glass-to-verdict latency and throughput for N live 360p30 RTSP streams at the default config.

    python -m bench.rtsp_latency --streams 1 --seconds 20 --weights ../shared/models/mesonet [--skim both]

``--sweep-s 20`` slows the face (a fast pan by default). ``--skim both`` measures each stream
count twice in a row: at the defaults (a calm track judged at ``judge.min_rate_hz``) and with
``min_rate_hz: null`` (every track at ``max_rate_hz``), the ratio of their CPU per stream-second
printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from bench.stages import weights_argument
from core.lifecycle import Lifecycle
from dfstream.config import parse_config
from pipeline.models.registry import ModelRegistry
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import Verdict
from pipeline.runtime.live import LiveTap
from pipeline.runtime.runtime import Runtime, share_cpu_threads
from sinks import build_sinks
from stream import make_sample_clip

REPO = Path(__file__).resolve().parents[1]


class Collect(Lifecycle):
    """A sink that keeps the verdicts it is given, and when each arrived (wall clock)."""

    def __init__(self) -> None:
        super().__init__("collect")
        self.verdicts: list[Verdict] = []
        self.arrivals: list[float] = []

    async def publish(self, event) -> None:
        if isinstance(event, Verdict):
            # without the frame a fake-labelled verdict carries for snapshots: kept, every such frame
            # of a benchmark's hour of video held gigabytes
            self.verdicts.append(dataclasses.replace(event, image=None))
            self.arrivals.append(time.time())


def new_runtime(config, sink, calls=None) -> Runtime:
    """The runtime as ``dfstream run`` builds it: detectors from the registry, CPU threads shared;
    ``calls``: the call hub ``serve`` gives it, for ``whip://`` streams."""
    share_cpu_threads(len(config.detectors) + 1)
    monitor, tap = PerformanceMonitor(config.monitoring), LiveTap()
    sinks = [sink, *build_sinks(config.sinks, monitor, tap, [s.id for s in config.streams])]  # MQTT, when asked
    return Runtime(config, ModelRegistry().load_configured(config.detectors), sinks, monitor, tap=tap, calls=calls)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# this speed-ups switched off: MTCNN, PyTorch, every face scored on every frame
BEFORE = {"faces": {"model": "mtcnn"}, "judge": {"max_rate_hz": None}, "backend": "torch"}


def measure(
    streams: int,
    seconds: float,
    weights: Path,
    warmup: float = 3.0,
    overrides: dict | None = None,
    size: tuple[int, int] = (640, 360),
    sweep_s: float = 3.0,
    fps: int = 30,
) -> dict:
    """``overrides``: ``faces``, ``judge`` and ``sinks`` sections and a detector ``backend`` (``BEFORE``);
    ``size``: the clip's width and height; ``sweep_s``: how fast its face moves (``make_sample_clip``)."""
    overrides = overrides or {}
    backend = {"backend": overrides["backend"]} if "backend" in overrides else {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(
            Path(tmp) / "clip.mp4",
            seconds=seconds + warmup + 10,
            fps=fps,
            width=size[0],
            height=size[1],
            sweep_s=sweep_s,
        )
        port = _port()
        args = ["/usr/bin/python3", str(REPO / "tests/servers/rtsp_server.py"), "--port", str(port)]
        for i in range(streams):
            args += ["--mount", f"/cam{i}={clip}"]
        errors = open(Path(tmp) / "server.err", "w+b")  # noqa: SIM115 -- read back if it dies
        server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        errors.seek(0)
                        said = errors.read().decode(errors="replace").strip().splitlines()
                        # no figures from a run with no server: they would read as a stream that costs nothing
                        last = said[-1] if said else "no output"
                        raise RuntimeError(f"GStreamer's RTSP server did not start: {last}")
                    time.sleep(0.05)
            config = parse_config(
                {
                    "streams": [{"id": f"cam{i}", "url": f"rtsp://127.0.0.1:{port}/cam{i}"} for i in range(streams)],
                    "detectors": [
                        {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5"), **backend},
                        {
                            "name": "mesoinception4",
                            "type": "mesoinception4",
                            "weights": str(weights / "MesoInception_DF.h5"),
                            **backend,
                        },
                    ],
                    **{k: v for k, v in overrides.items() if k in ("faces", "judge", "sinks", "overload")},
                }
            )
            sink = Collect()
            runtime = new_runtime(config, sink)
            process = psutil.Process()
            rss_loaded = process.memory_info().rss  # models in: what the streams add comes after

            levels: list[float] = []  # the overload governor's, every half second of the window
            frames: dict[str, dict[str, int]] = {}  # decoded and dropped, at the window's start and end

            def count_frames() -> dict[str, int]:
                subjects = [Subject.stream(f"cam{i}") for i in range(streams)]
                counts = {"decoded": sum(runtime.monitor.counter(s, Count.FRAMES_DECODED) for s in subjects)}
                for reason in ("queue_full", "overload"):
                    counts[reason] = sum(
                        runtime.monitor.counter(s, Count.FRAMES_DROPPED, reason=reason) for s in subjects
                    )
                return counts

            async def run() -> tuple[float, float, float, int]:
                task = asyncio.create_task(runtime.run())
                await asyncio.sleep(warmup)
                start, cpu, frames["start"] = time.monotonic(), process.cpu_times(), count_frames()
                while time.monotonic() < start + seconds:
                    await asyncio.sleep(0.5)
                    levels.append(runtime.governor.level if runtime.governor else 0.0)
                end, cpu_end, rss = time.monotonic(), process.cpu_times(), process.memory_info().rss
                frames["end"] = count_frames()
                runtime.stop.set()
                await task
                return start, end, (cpu_end.user + cpu_end.system) - (cpu.user + cpu.system), rss

            start, end, cpu_s, rss = asyncio.run(run())
        finally:
            server.kill()
            server.wait()
            errors.close()
    report = runtime.monitor.get_performance_report()
    window = [v for v in sink.verdicts if start <= v.ts - (time.time() - time.monotonic()) <= end]
    latencies = np.array([v.latency_ms for v in window])
    # frames of the window only: the warm-up's (models' first calls, the governor finding its level) apart
    counted = {k: frames["end"][k] - frames["start"][k] for k in frames["end"]}
    decoded = counted.pop("decoded")
    dropped = sum(counted.values())
    # how often each track was scored: the slowest track of the window, tracks seen for >= 1 s
    scored: dict[tuple[str, int], list[float]] = {}
    for v in window:
        if v.scored:
            scored.setdefault((v.stream, v.track_id), []).append(v.ts)
    rates = [(len(ts) - 1) / (ts[-1] - ts[0]) for ts in scored.values() if len(ts) > 1 and ts[-1] - ts[0] >= 1.0]
    floor = config.judge.min_rate_hz
    per_stream = [sum(v.stream == f"cam{i}" for v in window) / (end - start) for i in range(streams)]
    return {
        "streams": streams,
        "seconds": round(end - start, 2),
        "cpu_s_per_stream_s": round(cpu_s / (streams * (end - start)), 3),
        "rss_mb": round(rss / 2**20, 1),
        "rss_mb_per_stream": round((rss - rss_loaded) / 2**20 / streams, 1),
        "scored_hz_min": round(min(rates), 1) if rates else None,
        "scored_per_s": round(sum(v.scored for v in window) / (end - start), 1),
        # verdicts of tracks judged at the calm rate
        "skimmed_share": round(sum(v.judge_rate_hz == floor for v in window) / len(window), 3)
        if window and floor is not None
        else 0.0,
        "verdicts_per_s": round(len(window) / (end - start), 1),
        # the slowest stream's verdicts per second over the mean's: 1 when every stream is served alike
        "slowest_stream_share": round(min(per_stream) / (sum(per_stream) / streams), 3) if any(per_stream) else None,
        "overload_level": {"mean": round(float(np.mean(levels)), 2), "max": round(max(levels), 2)} if levels else None,
        "latency_ms": {
            p: round(float(np.percentile(latencies, q)), 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))
        }
        if len(latencies)
        else None,
        "frames_decoded": decoded,
        "dropped_ratio": round(dropped / decoded, 4) if decoded else None,
        "dropped_by_reason": {k: round(v / decoded, 4) for k, v in counted.items()} if decoded else None,
        "detector_batch_mean": {
            name: round(m["items"] / m["calls"], 2) for name, m in report["models"].items() if m["calls"]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[1])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--skim", choices=["on", "off", "both"], default="on")
    parser.add_argument("--sweep-s", type=float, default=3.0, help="the face crosses and comes back in this time")
    parser.add_argument("--overload", choices=["on", "both"], default="on", help="both: also with overload off")
    parser.add_argument("--size", default="640x360", help="the clip's WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window opens")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    off = {"judge": {"min_rate_hz": None}}
    for n in args.streams:
        run = functools.partial(
            measure, n, args.seconds, args.weights, args.warmup, sweep_s=args.sweep_s, size=size, fps=args.fps
        )
        if args.overload == "both":
            shed, unshed = run(), run(overrides={"overload": {"enabled": False}})
            print(json.dumps({"streams": n, "overload_on": shed, "overload_off": unshed}))
            continue
        if args.skim != "both":
            print(json.dumps(run(overrides=off if args.skim == "off" else None)))
            continue
        skim, full = run(), run(overrides=off)
        ratio = round(skim["cpu_s_per_stream_s"] / full["cpu_s_per_stream_s"], 3)
        print(json.dumps({"streams": n, "skim": skim, "no_skim": full, "cpu_skim_over_no_skim": ratio}))


if __name__ == "__main__":
    main()
