"""Sources against real media: files decoded by PyAV and a real RTSP server on loopback."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream import Source, SourceStatus, StreamConfig


async def collect(config: StreamConfig, limit: int | None = None, delay: float = 0.0, **kwargs):
    frames, statuses = [], []
    source = Source(config, on_status=lambda _id, status, reason: statuses.append((time.monotonic(), status, reason)), **kwargs)
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


def test_a_missing_file_goes_offline_with_one_error(tmp_path):
    frames, statuses, source = asyncio.run(collect(StreamConfig(id="f", url=str(tmp_path / "nope.mp4"))))
    assert frames == [] and statuses[-1][1] is SourceStatus.OFFLINE
    assert "No such file or directory" in source.last_error and source.counters.values["errors"] == 1


def test_rtsp_frames_from_a_real_server(rtsp_server):
    server = rtsp_server()
    frames, statuses, source = asyncio.run(collect(StreamConfig(id="cam1", url=server.url("/cam1")), limit=45))
    assert len(frames) == 45 and frames[0].image.shape == (360, 640, 3)
    pts = [f.pts for f in frames if f.pts is not None]
    assert pts == sorted(pts) and np.median(np.diff(pts)) == pytest.approx(1 / 30, abs=1e-3)
    assert statuses[0][1] is SourceStatus.ONLINE and source.counters.values.get("reconnects", 0) == 0


def test_rtsp_server_killed_then_back(rtsp_server):
    """The real server is SIGKILLed mid-stream: the source says reconnecting within the stall
    timeout (+1 s), and frames flow again within retry_max_s + 2 s of the server's return."""
    server = rtsp_server()
    config = StreamConfig(id="cam1", url=server.url("/cam1"), stall_timeout_s=2.0, retry_initial_s=0.2, retry_max_s=1.0)

    async def scenario():
        statuses = []
        source = Source(config, on_status=lambda _i, s, r: statuses.append((time.monotonic(), s)))
        async with source:
            frames = source.__aiter__()
            for _ in range(15):
                await frames.__anext__()
            killed = time.monotonic()
            server.kill()
            while not any(s is SourceStatus.RECONNECTING for _, s in statuses):
                assert time.monotonic() - killed < config.stall_timeout_s + 1.0, "no reconnecting status"
                await asyncio.sleep(0.05)
            detected = time.monotonic() - killed
            server.start()
            back = time.monotonic()
            frame = await asyncio.wait_for(frames.__anext__(), config.retry_max_s + 2.0)
            while frame.arrival_mono < back:  # frames queued before the kill do not count
                frame = await asyncio.wait_for(frames.__anext__(), config.retry_max_s + 2.0)
            recovered = time.monotonic() - back
            await frames.aclose()
        return detected, recovered, statuses, source

    detected, recovered, statuses, source = asyncio.run(scenario())
    print(f"reconnecting after {detected:.2f}s, frames again {recovered:.2f}s after the restart")
    assert source.counters.values["reconnects"] >= 1
    assert [s for _, s in statuses][:3] == [SourceStatus.ONLINE, SourceStatus.RECONNECTING, SourceStatus.ONLINE]


def test_rtsp_over_udp(rtsp_server):
    server = rtsp_server()
    frames, _, _ = asyncio.run(collect(StreamConfig(id="cam1", url=server.url("/cam1"), transport="udp"), limit=30))
    assert len(frames) == 30 and frames[-1].image.shape == (360, 640, 3)


@pytest.fixture
def hls_server(tmp_path):
    """An HLS playlist (1 s segments of the face clip) served over HTTP on loopback."""
    import functools
    import http.server
    import threading
    from fractions import Fraction

    import av

    from stream.sample import sample_frames

    root = tmp_path / "hls"
    root.mkdir()
    with av.open(str(root / "index.m3u8"), "w", format="hls",
                 options={"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"}) as container:  # fmt: skip
        video = container.add_stream("libx264", rate=Fraction(30))
        video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
        video.options = {"g": "30", "tune": "zerolatency"}
        for image in sample_frames(90):
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hls_over_http(hls_server):
    frames, statuses, _ = asyncio.run(collect(StreamConfig(id="hls", url=f"{hls_server}/index.m3u8"), limit=90))
    assert [f.seq for f in frames] == list(range(90)) and statuses[0][1] is SourceStatus.ONLINE


@pytest.mark.parametrize(
    "url, message",
    [
        ("rtsp://127.0.0.1:9/cam", "Connection refused"),
        ("rtsp://no-such-host.invalid/cam", "no-such-host.invalid"),
        ("/dev/video97", "/dev/video97"),
    ],
)
def test_unreachable_live_sources_retry_with_one_clear_error(url, message, caplog):
    config = StreamConfig(id="bad", url=url, retry_initial_s=0.1, retry_max_s=0.2, open_timeout_s=2)

    async def scenario():
        statuses = []
        async with Source(config, on_status=lambda _i, s, r: statuses.append((s, r))) as source:
            await asyncio.sleep(1.5)
        return statuses, source

    statuses, source = asyncio.run(scenario())
    assert statuses[0][0] is SourceStatus.RECONNECTING and message in statuses[0][1]
    assert source.counters.values["reconnects"] >= 3
    warnings = [r for r in caplog.records if r.name == "stream.source" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and message in warnings[0].getMessage()  # one line, not one per retry


def test_http_404_is_reported(hls_server):
    config = StreamConfig(id="gone", url=f"{hls_server}/missing.m3u8", retry_initial_s=0.1, retry_max_s=0.2)

    async def scenario():
        statuses = []
        async with Source(config, on_status=lambda _i, s, r: statuses.append((s, r))):
            await asyncio.sleep(1.0)
        return statuses

    statuses = asyncio.run(scenario())
    assert statuses[0][0] is SourceStatus.RECONNECTING and "404" in statuses[0][1]


def test_credentials_never_reach_the_logs(caplog):
    config = StreamConfig(id="door", url="rtsp://admin:hunter2@127.0.0.1:9/live", retry_initial_s=0.1, retry_max_s=0.2)

    async def scenario():
        statuses = []
        async with Source(config, on_status=lambda _i, s, r: statuses.append(r)):
            await asyncio.sleep(0.6)
        return statuses

    reasons = asyncio.run(scenario())
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "admin:***@127.0.0.1" in reasons[0] + logged
    assert "hunter2" not in logged and not any("hunter2" in (r or "") for r in reasons)


def test_the_end_of_a_file_never_displaces_a_queued_frame(short_clip):
    # a consumer slower than decoding: the queue is full when the file ends
    frames, _, source = asyncio.run(collect(StreamConfig(id="f", url=str(short_clip), pace="asap", queue_size=2), delay=0.01))
    assert [f.seq for f in frames] == list(range(60)) and "dropped:queue_full" not in source.counters.values
