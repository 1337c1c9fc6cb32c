"""Glass-to-verdict over WebRTC on loopback, and what a WebRTC session costs beside RTSP.

    python -m bench.webrtc_latency --sessions 1 2 --seconds 30 --weights ../shared/models/mesonet

(figures printed, and written to bench/webrtc_results.json)

Each session is a real WebRTC peer in a process of its own (aiortc, as a browser or OBS would be):
it sends 720p30 video, 2 s of an empty room then 3 s of the sample face, over and over, encoded as
the negotiation chose (VP8). The moment a face frame is handed to the encoder is its "glass" time;
glass-to-verdict is from each face's onset to the first verdict of its track at dfstream's sink,
through the encoder, RTP, dfstream's decoder, the face finder, both MesoNets and the judge. The
receiver is dfstream's runtime with one declared ``whip://`` stream per session and the call hub
that ``dfstream serve`` uses (the HTTP exchange of the offer is not on the media path, so the offer
goes over a pipe here).

The cost: dfstream's CPU seconds per stream second for a session sending the face all along, and
for an RTSP stream of the same 720p video (GStreamer's RTSP server, as bench.rtsp_latency); the
senders' own CPU (the far side's browser) is not dfstream's and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from bench.rtsp_latency import Collect, measure, new_runtime
from bench.stages import weights_argument
from dfstream.config import parse_config
from stream.calls import CallHub

WIDTH, HEIGHT, FPS = 1280, 720, 30
EMPTY_S, FACE_S = 2.0, 3.0


# -- the far side: one process per session -------------------------------------------------------


def _sender_track(onsets: bool):
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    from stream.sample import sample_frames

    faces = list(sample_frames(3 * FPS, WIDTH, HEIGHT))  # one slide left and right, looped
    empty = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)  # the sample's background, no one in it

    class Glass(VideoStreamTrack):
        """720p30 frames; with ``onsets``, 2 s empty then 3 s of the face, each onset's wall time printed."""

        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.showing = False

        async def recv(self) -> VideoFrame:
            pts, time_base = await self.next_timestamp()
            i, self.index = self.index, self.index + 1
            cycle = i % round((EMPTY_S + FACE_S) * FPS)
            face = not onsets or cycle >= EMPTY_S * FPS
            frame = VideoFrame.from_ndarray(faces[i % len(faces)] if face else empty, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            if face and not self.showing:
                print(json.dumps({"onset": time.time()}), flush=True)
            self.showing = face
            return frame

    return Glass()


async def _send(onsets: bool) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver(_sender_track(onsets), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    print(json.dumps({"offer": pc.localDescription.sdp}), flush=True)
    answer = json.loads(await asyncio.to_thread(sys.stdin.readline))
    await pc.setRemoteDescription(RTCSessionDescription(answer["answer"], "answer"))
    await asyncio.to_thread(sys.stdin.readline)  # until the bench says stop (or closes the pipe)
    await pc.close()


# -- dfstream's side ------------------------------------------------------------------------------


def _config(sessions: int, weights: Path):
    return parse_config(
        {
            "streams": [{"id": f"call{i}", "url": "whip://", "stall_timeout_s": 10} for i in range(sessions)],
            "detectors": [
                {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")},
                {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5")},
            ],
        }
    )


async def _session(hub: CallHub, stream_id: str, onsets: bool) -> tuple[subprocess.Popen, list[float]]:
    """A sender process connected to ``stream_id``; the list fills with its onsets' wall times."""
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.webrtc_latency",
        "--send",
        *(["--onsets"] if onsets else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    offer = json.loads(await sender.stdout.readline())["offer"]
    session = await hub.publish(stream_id, offer)
    sender.stdin.write((json.dumps({"answer": session.answer}) + "\n").encode())
    await sender.stdin.drain()
    seen: list[float] = []

    async def read_onsets() -> None:
        while line := await sender.stdout.readline():
            seen.append(json.loads(line)["onset"])

    sender.reader = asyncio.create_task(read_onsets())  # type: ignore[attr-defined]
    return sender, seen


def run_sessions(sessions: int, seconds: float, weights: Path, onsets: bool, warmup: float = 4.0) -> dict:
    config = _config(sessions, weights)
    sink = Collect()
    hub = CallHub()
    runtime = new_runtime(config, sink, calls=hub)
    process = psutil.Process()

    async def scenario():
        task = asyncio.create_task(runtime.run())
        await asyncio.sleep(1.0)  # the workers wait on their inboxes
        senders = [await _session(hub, f"call{i}", onsets) for i in range(sessions)]
        await asyncio.sleep(warmup)
        start, cpu = time.time(), process.cpu_times()
        await asyncio.sleep(seconds)
        end, cpu_end = time.time(), process.cpu_times()
        for sender, _ in senders:
            sender.stdin.write(b"stop\n")
            await sender.stdin.drain()
        for sender, _ in senders:
            await sender.wait()
            await sender.reader
        runtime.stop.set()
        await task
        await hub.close()
        return start, end, (cpu_end.user + cpu_end.system) - (cpu.user + cpu.system), senders

    start, end, cpu_s, senders = asyncio.run(scenario())
    result: dict = {"sessions": sessions, "seconds": round(end - start, 1)}
    result["frame_size"] = sorted({v.frame_size for v in sink.verdicts if v.frame_size})  # what arrived
    verdicts = list(zip(sink.verdicts, sink.arrivals))
    window = [(v, at) for v, at in verdicts if start <= at <= end]
    if not onsets:
        result["cpu_s_per_stream_s"] = round(cpu_s / (sessions * (end - start)), 3)
        result["verdicts_per_s"] = round(len(window) / (end - start), 1)
        return result
    # each onset's first verdict: the first verdict after it of a track not seen before it
    flags: list[float] = []
    missed = 0
    for i, (_, seen) in enumerate(senders):
        mine = [(v, at) for v, at in verdicts if v.stream == f"call{i}"]
        for onset in (t for t in seen if start <= t <= end - FACE_S):
            before = {v.track_id for v, at in mine if at < onset}
            first = next((at for v, at in mine if at >= onset and v.track_id not in before), None)
            if first is None:
                missed += 1
            else:
                flags.append(first - onset)
    ms = np.array(flags) * 1000
    result["onsets"] = len(flags) + missed
    result["onsets_missed"] = missed
    result["glass_to_verdict_ms"] = (
        {p: round(float(np.percentile(ms, q)), 1) for p, q in (("p50", 50), ("p99", 99))} if len(ms) else None
    )
    inside = np.array([v.latency_ms for v, _ in window])
    result["decode_to_verdict_ms"] = (
        {p: round(float(np.percentile(inside, q)), 1) for p, q in (("p50", 50), ("p99", 99))} if len(inside) else None
    )
    return result


def main() -> None:
    if sys.argv[1:2] == ["--send"]:  # the far side's process: --send [--onsets]
        asyncio.run(_send("--onsets" in sys.argv))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("webrtc_results.json"))
    args = parser.parse_args()
    figures: dict = {"video": f"{WIDTH}x{HEIGHT}@{FPS}", "latency": [], "cost": {}}
    for n in args.sessions:
        figures["latency"].append(run_sessions(n, args.seconds, args.weights, onsets=True))
        print(json.dumps(figures["latency"][-1]), flush=True)
    figures["cost"]["webrtc"] = run_sessions(1, args.seconds, args.weights, onsets=False)
    figures["cost"]["rtsp"] = measure(1, args.seconds, args.weights, size=(WIDTH, HEIGHT))
    rtc, rtsp = figures["cost"]["webrtc"]["cpu_s_per_stream_s"], figures["cost"]["rtsp"]["cpu_s_per_stream_s"]
    figures["cost"]["webrtc_over_rtsp_cpu"] = round(rtc / rtsp, 2)
    print(json.dumps(figures["cost"]), flush=True)
    figures["machine"] = {"cpus": psutil.cpu_count(), "when": time.strftime("%Y-%m-%d")}
    args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
