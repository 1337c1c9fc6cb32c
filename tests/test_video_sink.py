"""The annotated video sink: to a file, and pushed over TCP (MPEG-TS) to a real FFmpeg listener
that goes away mid-stream and comes back: the sink reconnects by itself, counted."""

from __future__ import annotations

import asyncio
import threading

import av
import numpy as np
import pytest

from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.drawing import COLOURS
from pipeline.runtime.live import LiveTap
from pipeline.runtime.runtime import Runtime
from sinks.video import VideoConfig, VideoSink
from tests.helpers import free_port, load_detectors, make_config, run_for, wait_until

pytestmark = pytest.mark.weights
VIDEO = Subject.sink("video")


def runtime_with_video(weights_dir, streams: list[dict], video: dict) -> tuple[Runtime, PerformanceMonitor]:
    config = make_config(weights_dir, streams)
    monitor, tap = PerformanceMonitor(config.monitoring), LiveTap()
    sink = VideoSink(VideoConfig(**video), monitor, tap, [s.id for s in config.streams])
    return Runtime(config, load_detectors(config), [sink], monitor, tap=tap), monitor


def coloured(image: np.ndarray) -> int:
    return max(int((np.abs(image.astype(int) - c).sum(axis=2) < 50).sum()) for c in map(np.array, COLOURS.values()))


def test_annotated_frames_to_a_file(weights_dir, short_clip, tmp_path):
    runtime, monitor = runtime_with_video(
        weights_dir,
        [{"id": "cam1", "url": str(short_clip), "pace": "realtime"}],
        {"url": str(tmp_path / "{stream}.mp4"), "fps": 10, "width": 320},
    )
    asyncio.run(run_for(runtime, None))
    with av.open(str(tmp_path / "cam1.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert 12 <= len(frames) <= 22, len(frames)  # 2 s at 10 fps
    assert frames[0].shape == (180, 320, 3)
    assert coloured(frames[-1]) > 100  # a box in a label's colour
    assert monitor.counter(VIDEO, Count.FRAMES_WRITTEN, stream="cam1") == len(frames)


def test_a_server_that_goes_away_is_reconnected_to(weights_dir, tmp_path):
    port = free_port()
    received: list[list[int]] = [[], []]

    def listen(k: int, frames: int) -> None:
        """A real FFmpeg endpoint: accepts one connection, reads ``frames`` frames, hangs up."""
        with av.open(f"tcp://127.0.0.1:{port}?listen=1", format="mpegts", timeout=30) as container:
            for frame in container.decode(video=0):
                received[k].append(frame.width)
                if len(received[k]) >= frames:
                    return

    first = threading.Thread(target=listen, args=(0, 15), daemon=True)
    first.start()
    runtime, monitor = runtime_with_video(
        weights_dir,
        [{"id": "cam1", "url": "sample://astronaut", "pace": "realtime", "loop": True}],
        {"url": f"tcp://127.0.0.1:{port}", "fps": 10, "retry_initial_s": 0.3, "retry_max_s": 1},
    )

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run())
        await asyncio.to_thread(first.join, 30)
        assert len(received[0]) == 15
        await asyncio.to_thread(
            wait_until, lambda: monitor.counter(VIDEO, Count.OUTPUT_ERRORS, stream="cam1") >= 1, 20, "a write error"
        )
        second = threading.Thread(target=listen, args=(1, 10), daemon=True)  # the server is back
        second.start()
        await asyncio.to_thread(second.join, 30)
        runtime.stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(scenario())
    assert len(received[1]) == 10 and set(received[0] + received[1]) == {640}
    assert monitor.counter(VIDEO, Count.FRAMES_WRITTEN, stream="cam1") >= 25
