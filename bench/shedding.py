"""What a frame shed under overload costs, where it is shed: by the source before the RGB conversion
and the hand-over to the event loop (``Feed.shed_frames``, today), or by the consumer after both
(as the worker did before). One run, the same clip, the same share shed.

    python -m bench.shedding [--share 0.75] [--size 640x480] [--seconds 20]

Prints CPU milliseconds per decoded frame of the whole process (decode thread and event loop) for
each way, and the saving per shed frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from stream import Source, StreamConfig, make_sample_clip
from stream.source import EvenDrop


async def measure(clip: Path, share: float, at_source: bool) -> dict[str, float]:
    source = Source(StreamConfig(id="bench", url=str(clip), pace="asap"))
    if at_source:
        source.shed_frames(share)
    drop, kept = EvenDrop(), 0
    cpu, wall = time.process_time(), time.perf_counter()
    async with source:
        async for _frame in source:
            if not at_source and drop(share):
                continue  # converted and handed over for nothing
            kept += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    decoded = source.counters.values["frames_decoded"]
    return {
        "frames_decoded": decoded,
        "kept": kept,
        "cpu_ms_per_frame": round(1000 * cpu / decoded, 3),
        "frames_per_s": round(decoded / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.75, help="the share of frames shed (max_drop: 0.75)")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=20.0, help="the clip's length")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(Path(tmp) / "clip.mp4", args.seconds, args.fps, width, height)
        asyncio.run(measure(clip, 0.0, True))  # warm: the file in the page cache, the codec loaded
        rounds = [(one_round(clip, args.share)) for _ in range(3)]
    best = {way: min(r[way]["cpu_ms_per_frame"] for r in rounds) for way in ("at_consumer", "at_source", "none")}
    saved = (best["at_consumer"] - best["at_source"]) / args.share
    print(
        json.dumps(
            {
                "command": f"python -m bench.shedding --share {args.share} --size {args.size} --fps {args.fps} "
                f"--seconds {args.seconds:g}",
                "share_shed": args.share,
                "rounds": rounds,
                "best_cpu_ms_per_decoded_frame": best,
                "cpu_ms_saved_per_shed_frame": round(saved, 3),
                "cpu_saved_share": round(1 - best["at_source"] / best["at_consumer"], 3),
            },
            indent=1,
        )
    )


def one_round(clip: Path, share: float) -> dict[str, dict[str, float]]:
    """The three ways one after the other (best of three rounds is taken: the machine is noisy)."""
    return {
        "none": asyncio.run(measure(clip, 0.0, True)),
        "at_consumer": asyncio.run(measure(clip, share, False)),
        "at_source": asyncio.run(measure(clip, share, True)),
    }


if __name__ == "__main__":
    main()
