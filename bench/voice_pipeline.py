"""What judging the voice adds to a live stream, through the whole path, at the defaults:

    python -m bench.voice_pipeline --aasist DIR [--weights DIR] [--streams 2] [--seconds 30] [--model aasist]

Real media: the sample face clip with espeak-ng speech as an AAC track (44.1 kHz stereo), read at
its own pace and looped, as a live camera with a microphone. The same streams run twice in this
process, one after the other, with the default config (both MesoNets, BlazeFace): without an audio
detector, then with one (``--model``, backend auto). Printed: the cores the process used in each
run (after a warm-up), the share of a core the voice added per stream, the window-to-verdict
latency (a window's last sample decoded → its voice verdict published: gating, batching, the
model), frames and audio dropped. Numbers depend on the machine; the difference between the two
runs, measured minutes apart on the same machine, is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from bench.sounds import make_wav, mux_with_sound
from bench.stages import weights_argument
from dfstream.config import parse_config
from pipeline.models.audio.loading import load_voice_models
from pipeline.models.registry import ModelRegistry
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import Event, Verdict, VoiceVerdict
from pipeline.runtime.runtime import Runtime, share_cpu_threads
from stream import make_sample_clip

WARM_UP_S = 6.0


class Tally:
    """A sink that keeps what the figures need."""

    name = "tally"

    def __init__(self) -> None:
        self.voices: list[VoiceVerdict] = []
        self.verdicts = 0

    async def __aenter__(self) -> Tally:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def publish(self, event: Event) -> None:
        if isinstance(event, VoiceVerdict):
            self.voices.append(event)
        elif isinstance(event, Verdict):
            self.verdicts += 1


def one_run(clip: Path, weights: Path, streams: int, seconds: float, voice: dict | None) -> dict:
    config = parse_config(
        {
            "streams": [{"id": f"cam{i}", "url": str(clip), "loop": True} for i in range(streams)],
            "detectors": [
                {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")},
                {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5")},
            ],
            "audio_detectors": [voice] if voice else [],
        }
    )
    share_cpu_threads(len(config.detectors) + len(config.audio_detectors) + 1)
    monitor = PerformanceMonitor(config.monitoring)
    tally = Tally()
    runtime = Runtime(
        config,
        ModelRegistry().load_configured(config.detectors),
        [tally],
        monitor,
        voices=load_voice_models(config.audio_detectors),
    )
    process = psutil.Process()

    async def measure() -> tuple[float, float]:
        task = asyncio.create_task(runtime.run())
        await asyncio.sleep(WARM_UP_S)
        cpu0, wall0 = sum(process.cpu_times()[:2]), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, wall1 = sum(process.cpu_times()[:2]), time.monotonic()
        runtime.stop.set()
        await task
        return (cpu1 - cpu0) / (wall1 - wall0), wall0

    cores, started = asyncio.run(measure())
    subjects = [Subject.stream(f"cam{i}") for i in range(streams)]
    decoded = sum(monitor.counter(s, Count.FRAMES_DECODED) or 0 for s in subjects)
    dropped = sum(monitor.counter(s, Count.FRAMES_DROPPED, reason="queue_full") or 0 for s in subjects)
    audio = sum(monitor.counter(s, Count.AUDIO_CHUNKS) or 0 for s in subjects)
    audio_dropped = sum(monitor.counter(s, Count.AUDIO_DROPPED) or 0 for s in subjects)
    judged = [v for v in tally.voices if v.spoof_probability is not None]
    latencies = np.array([v.latency_ms for v in judged]) if judged else np.array([np.nan])
    return {
        "cores": cores,
        "frames_dropped": dropped / max(decoded, 1),
        "audio_dropped": audio_dropped / max(audio, 1),
        "voice_verdicts": len(tally.voices),
        "windows_judged": len(judged),
        "window_to_voice_ms_p50": float(np.percentile(latencies, 50)),
        "window_to_voice_ms_p95": float(np.percentile(latencies, 95)),
        "window_to_voice_ms_max": float(np.max(latencies)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.voice_pipeline")
    parser.add_argument("--aasist", type=Path, required=True, help="folder with AASIST.pth and AASIST-L.pth")
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", choices=["aasist", "aasist_l"], default="aasist")
    args = parser.parse_args()
    files = {"aasist": "AASIST.pth", "aasist_l": "AASIST-L.pth"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        face = make_sample_clip(folder / "face.mp4", seconds=10.0)
        clip = mux_with_sound(face, make_wav("speech", folder, 10.0, 44_100, 2), folder / "call.mp4", 10.0)
        voice = {"name": args.model, "type": args.model, "weights": str(args.aasist / files[args.model])}
        without = one_run(clip, args.weights, args.streams, args.seconds, None)
        with_voice = one_run(clip, args.weights, args.streams, args.seconds, voice)
    added = (with_voice["cores"] - without["cores"]) / args.streams
    print(f"{args.streams} live streams (the sample face + espeak speech, AAC), {args.seconds:g} s each run:")
    for name, run in (("faces only", without), (f"faces + voice ({args.model})", with_voice)):
        print(
            f"  {name:<24} {run['cores']:.2f} cores, frames dropped {100 * run['frames_dropped']:.1f} %, "
            f"audio dropped {100 * run['audio_dropped']:.1f} %, voice windows judged {run['windows_judged']}"
        )
    print(f"  the voice adds {100 * added:.1f} % of a core per stream (a window every 2 s)")
    print(
        f"  window → voice verdict: p50 {with_voice['window_to_voice_ms_p50']:.0f} ms, "
        f"p95 {with_voice['window_to_voice_ms_p95']:.0f} ms, max {with_voice['window_to_voice_ms_max']:.0f} ms"
    )
    print(json.dumps({"without": without, "with": with_voice, "added_core_share_per_stream": added}, indent=1))


if __name__ == "__main__":
    main()
