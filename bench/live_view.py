"""What the live view costs the pipeline, and its latency:

    python -m bench.live_view --weights DIR [--frames 600] [--fps 5]

The same clip through the runtime read as fast as possible with 0, 1 and 10 viewers (each does
what GET /streams/{id}/live.mjpeg does, with its code: waits for the tap's newest frame, has it
drawn and encoded in a thread, at most ``--fps`` a second), and through ``dfstream annotate`` (every frame drawn and
encoded), in one run; then on a clip played in real time, the latency from a frame's decode to its
JPEG being ready, p50 / p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from dfstream.config import parse_config
from pipeline.models.registry import ModelRegistry
from pipeline.monitoring.keys import Count
from pipeline.runtime.runtime import Runtime
from service.routes.live import render
from stream import make_sample_clip

from .rtsp_latency import Collect, new_runtime


def _config(clip: Path, weights: Path, pace: str):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "streams": [{"id": "cam", "url": str(clip), "pace": pace}],
            "detectors": [
                {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")},
                {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5")},
            ],
        }
    )


async def _viewer(runtime: Runtime, fps: float, latencies: list[float]) -> None:
    tap, seen, sent_at = runtime.tap, -1, 0.0
    with tap.watch("cam"):
        while True:
            shot = await tap.next("cam", seen, timeout=1.0)
            if shot is None:
                continue
            wait = sent_at + 1 / fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                shot = tap.latest("cam") or shot
            await asyncio.to_thread(render, shot, None)
            latencies.append(time.monotonic() - shot.arrival_mono)
            seen, sent_at = shot.seq, time.monotonic()


def run(config, viewers: int, fps: float) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """(frames processed per second, live view latencies) of one run of the clip."""
    runtime = new_runtime(config, Collect())
    latencies: list[float] = []

    async def main() -> float:
        watchers = [asyncio.create_task(_viewer(runtime, fps, latencies)) for _ in range(viewers)]
        started = time.perf_counter()
        await runtime.run()
        elapsed = time.perf_counter() - started
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        return elapsed

    elapsed = asyncio.run(main())
    frames = runtime.monitor.counter(runtime.workers[0].subject, Count.FRAMES_PROCESSED)
    return frames / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_view")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--fps", type=float, default=5.0, help="each viewer's rate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(Path(tmp) / "clip.mp4", seconds=args.frames / 30)
        asap = _config(clip, args.weights, "asap")
        run(asap, 0, args.fps)  # warm-up: models, caches
        base, _ = run(asap, 0, args.fps)
        import timeit

        from pipeline.runtime.live import LiveTap

        unwatched = timeit.timeit("tap.watching('cam')", globals={"tap": LiveTap()}, number=1_000_000) / 1_000_000
        print(
            f"unwatched, a stream pays {unwatched * 1e9:.0f} ns a frame for the live view: "
            f"{unwatched * base:.1e} of its time at {base:.1f} frames/s"
        )
        for viewers in (1, 10):
            fps, _ = run(asap, viewers, args.fps)
            print(
                f"{viewers:>2} viewer(s) at {args.fps:g} fps: pipeline {fps:.1f} frames/s, {fps / base:.3f} of "
                f"{base:.1f} with none"
            )
        from dfstream.annotate import STREAM, annotate

        config = _config(clip, args.weights, "asap").model_copy(deep=True)
        config.streams[0].id = STREAM
        done = annotate(
            config, ModelRegistry().load_configured(config.detectors), str(clip), Path(tmp) / "annotated.mp4"
        )
        print(
            f"dfstream annotate: {done['fps']:.1f} frames/s, {done['fps'] / base:.3f} of the pipeline's "
            f"{base:.1f} without writing video"
        )
        _, latencies = run(_config(clip, args.weights, "realtime"), 1, args.fps)
        latencies.sort()
        p50, p99 = statistics.median(latencies) * 1e3, latencies[int(0.99 * (len(latencies) - 1))] * 1e3
        print(
            f"live view latency (decode → JPEG ready), real-time clip, 1 viewer: p50 {p50:.1f} ms, p99 "
            f"{p99:.1f} ms ({len(latencies)} frames)"
        )


if __name__ == "__main__":
    main()
