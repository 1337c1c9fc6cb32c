"""Sources against real media: files decoded by PyAV and a real RTSP server on loopback."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream import Source, SourceStatus, StreamConfig


async def collect(config: StreamConfig, limit: int | None = None, delay: float = 0.0, **kwargs):
    frames, statuses = [], []
    source = Source(
        config, on_status=lambda _id, status, reason: statuses.append((time.monotonic(), status, reason)), **kwargs
    )
    async with source:
        async for frame in source:
            frames.append(frame)
            if delay:
                await asyncio.sleep(delay)
            if limit is not None and len(frames) >= limit:
                break
    return frames, statuses, source


def test_file_asap_delivers_every_frame_in_order(short_clip):
    frames, statuses, source = asyncio.run(collect(StreamConfig(id="f", url=str(short_clip), pace="asap")))
    assert [f.seq for f in frames] == list(range(60))
    assert frames[1].pts == pytest.approx(1 / 30) and frames[0].image.shape == (360, 640, 3)
    assert frames[0].image.dtype == np.uint8 and frames[0].arrival_ts > 1e9
    assert [s for _, s, _ in statuses] == [SourceStatus.ONLINE, SourceStatus.OFFLINE]
    assert source.counters.values == {"frames_decoded": 60}


def test_file_realtime_is_paced_at_its_frame_rate(short_clip):
    start = time.monotonic()
    frames, _, _ = asyncio.run(collect(StreamConfig(id="f", url=str(short_clip), pace="realtime")))
    elapsed = time.monotonic() - start
    assert len(frames) == 60 and 1.8 < elapsed < 4.0
    spread = frames[-1].arrival_mono - frames[0].arrival_mono
    assert spread == pytest.approx(59 / 30, abs=0.25)


def test_file_loop_restarts_and_keeps_counting(short_clip):
    frames, _, _ = asyncio.run(collect(StreamConfig(id="f", url=str(short_clip), pace="asap", loop=True), limit=150))
    assert [f.seq for f in frames] == list(range(150))


def test_fps_cap_skips_and_counts(short_clip):
    frames, _, source = asyncio.run(collect(StreamConfig(id="f", url=str(short_clip), pace="asap", fps=10)))
    assert len(frames) == 20 and source.counters.values["dropped:fps_cap"] == 40


def test_a_slow_consumer_of_live_input_loses_the_oldest_frames(short_clip):
    config = StreamConfig(id="f", url=str(short_clip), pace="realtime", queue_size=2)
    frames, _, source = asyncio.run(collect(config, delay=0.1))
    dropped = source.counters.values["dropped:queue_full"]
    assert dropped > 20 and len(frames) + dropped == 60  # every frame is delivered or counted
    assert frames[-1].seq == 59  # the newest frame survives


def test_frames_shed_under_overload_are_dropped_evenly_where_they_are_decoded(short_clip):
    """Shed before the RGB conversion and the hand-over; their numbers skipped, so the gap says how many."""
    source = Source(StreamConfig(id="f", url=str(short_clip), pace="realtime"))
    source.shed_frames(0.25)

    async def run() -> list:
        frames = []
        async with source:
            async for frame in source:
                frames.append(frame)
        return frames

    frames = asyncio.run(run())
    assert source.counters.values["dropped:overload"] == 15 and len(frames) == 45
    assert [f.seq for f in frames] == [n for n in range(60) if n % 4 != 3]  # every fourth, not in a burst
    assert "dropped:queue_full" not in source.counters.values


def test_rtsp_frames_from_a_real_server(rtsp_server):
    server = rtsp_server()
    frames, statuses, source = asyncio.run(collect(StreamConfig(id="cam1", url=server.url("/cam1")), limit=45))
    assert len(frames) == 45 and frames[0].image.shape == (360, 640, 3)
    pts = [f.pts for f in frames if f.pts is not None]
    assert pts == sorted(pts) and np.median(np.diff(pts)) == pytest.approx(1 / 30, abs=1e-3)
    assert statuses[0][1] is SourceStatus.ONLINE and source.counters.values.get("reconnects", 0) == 0


def test_rtsp_over_udp(rtsp_server):
    server = rtsp_server()
    frames, _, _ = asyncio.run(collect(StreamConfig(id="cam1", url=server.url("/cam1"), transport="udp"), limit=30))
    assert len(frames) == 30 and frames[-1].image.shape == (360, 640, 3)


@pytest.fixture
def hls_server(tmp_path, serve_folder):
    """An HLS playlist (1 s segments of the face clip) served over HTTP on loopback."""
    from fractions import Fraction

    import av

    from stream.sample import sample_frames

    root = tmp_path / "hls"
    root.mkdir()
    with av.open(
        str(root / "index.m3u8"),
        "w",
        format="hls",
        options={"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"},
    ) as container:
        video = container.add_stream("libx264", rate=Fraction(30))
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.options = {"g": "30", "tune": "zerolatency"}
        for image in sample_frames(90):
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return serve_folder(root)


def test_hls_over_http(hls_server):
    frames, statuses, source = asyncio.run(collect(StreamConfig(id="hls", url=f"{hls_server}/index.m3u8"), limit=90))
    seqs = [f.seq for f in frames]
    assert len(seqs) == 90 and seqs[0] == 0 and seqs == sorted(set(seqs)) and statuses[0][1] is SourceStatus.ONLINE
    # HLS arrives a segment at a time, faster than its frame rate: live input keeps the newest frames,
    # so a consumer held up for a moment (a busy CI machine) loses some, every one of them counted
    assert source.counters.values.get("dropped:queue_full", 0) >= seqs[-1] + 1 - 90


def test_the_end_of_a_file_never_displaces_a_queued_frame(short_clip):
    # a consumer slower than decoding: the queue is full when the file ends
    frames, _, source = asyncio.run(
        collect(StreamConfig(id="f", url=str(short_clip), pace="asap", queue_size=2), delay=0.01)
    )
    assert [f.seq for f in frames] == list(range(60)) and "dropped:queue_full" not in source.counters.values
