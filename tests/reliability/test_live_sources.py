"""Live sources that fail: a real RTSP server SIGKILLed mid-stream, a server that accepts and never
answers, and URLs that cannot work. Each reports one clear error, a counted metric, and the other
streams go on."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time

import pytest

from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.runtime import Runtime
from sinks import PrometheusConfig, PrometheusExporter
from stream import Source, SourceStatus, StreamConfig
from stream.probe import probe
from tests.helpers import MemorySink, load_detectors, make_config, scrape


def decoded(monitor: PerformanceMonitor, stream: str) -> int:
    return monitor.counter(Subject.stream(stream), Count.FRAMES_DECODED)


@pytest.mark.weights
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_rtsp_server_killed_mid_stream_and_back(weights_dir, rtsp_server, long_clip, fault, figures):
    """cam1's server is SIGKILLed (the connection closes) or SIGSTOPped (it hangs, silent): cam1
    turns `reconnecting` within stall_timeout_s + 1 s, its reconnects counter grows on /metrics,
    cam2 (another server) keeps >= 90 % of its frame rate, and cam1's frames flow again within
    retry_max_s + 2 s of its server's return."""
    doomed, steady = rtsp_server({"/cam1": long_clip}), rtsp_server({"/cam2": long_clip})
    stream = {"stall_timeout_s": 2.0, "retry_initial_s": 0.2, "retry_max_s": 1.0}
    config = make_config(
        weights_dir,
        [{"id": "cam1", "url": doomed.url("/cam1"), **stream}, {"id": "cam2", "url": steady.url("/cam2"), **stream}],
        faces={"detect_every": 5},
    )
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(PrometheusConfig(port=0), monitor).start()
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink], monitor)

    def status_of(stream_id: str) -> str | None:
        statuses = sink.statuses(stream_id)
        return statuses[-1] if statuses else None

    async def rate(stream_id: str, seconds: float) -> float:
        before = decoded(monitor, stream_id)
        await asyncio.sleep(seconds)
        return (decoded(monitor, stream_id) - before) / seconds

    async def scenario() -> dict:
        task = asyncio.create_task(runtime.run())
        await asyncio.sleep(4.0)  # models warm, both streams online
        assert status_of("cam1") == status_of("cam2") == "online"
        before = await rate("cam2", 3.0)
        killed = time.monotonic()
        if fault == "SIGKILL":
            doomed.kill()
        else:
            doomed.process.send_signal(signal.SIGSTOP)
        during = asyncio.create_task(rate("cam2", 4.0))
        while status_of("cam1") != "reconnecting":
            assert time.monotonic() - killed < stream["stall_timeout_s"] + 1.0, "cam1 never turned reconnecting"
            await asyncio.sleep(0.05)
        detected = time.monotonic() - killed
        during = await during
        reconnects = scrape(exporter.port)["dfstream_stream_reconnects_total{stream=cam1}"]
        doomed.kill()  # a stopped server is killed and started again, as a supervisor would
        doomed.start()
        back, frames_then = time.monotonic(), decoded(monitor, "cam1")
        while decoded(monitor, "cam1") <= frames_then:
            assert time.monotonic() - back < stream["retry_max_s"] + 2.0, "cam1's frames did not come back"
            await asyncio.sleep(0.05)
        recovered = time.monotonic() - back
        runtime.stop.set()
        await asyncio.wait_for(task, 30)
        return {
            "detected_s": detected,
            "recovered_s": recovered,
            "cam2_fps_before": before,
            "cam2_fps_during": during,
            "reconnects": reconnects,
        }

    try:
        result = asyncio.run(scenario())
    finally:
        exporter.close()
    # cam2's own rate: what it did before, but never more than its clip's rate (a count taken while
    # it caught up after the start, as GStreamer bursts, is not a rate it can be expected to keep)
    own = min(result["cam2_fps_before"], float(probe(str(long_clip)).fps))
    figures(**result, cam2_rate_kept=result["cam2_fps_during"] / own)
    assert result["reconnects"] >= 1
    assert result["cam2_fps_during"] >= 0.9 * own
    # consecutive repeats apart: an `online` may be told again with a reason (degraded, overload)
    changes = [s for i, s in enumerate(sink.statuses("cam1")) if i == 0 or s != sink.statuses("cam1")[i - 1]]
    assert changes[:3] == ["online", "reconnecting", "online"]
    assert len(sink.verdicts("cam1")) > 0 and len(sink.verdicts("cam2")) > 0


@pytest.fixture
def silent_server():
    """A TCP server that accepts every connection and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http", "rtmp"])
def test_a_server_that_never_answers_gives_up_after_open_timeout(silent_server, scheme, figures):
    path = "/live.m3u8" if scheme == "http" else "/live/cam"
    config = StreamConfig(
        id="mute",
        url=f"{scheme}://127.0.0.1:{silent_server}{path}",
        open_timeout_s=1.5,
        retry_initial_s=0.2,
        retry_max_s=0.5,
    )

    async def scenario():
        statuses = []
        start = time.monotonic()
        source = Source(config, on_status=lambda _i, s, r: statuses.append((time.monotonic() - start, s, r)))
        async with source:
            while not statuses:
                await asyncio.sleep(0.05)
            closing = time.monotonic()
        return statuses, time.monotonic() - closing, source

    statuses, close_s, source = asyncio.run(asyncio.wait_for(scenario(), 30))
    gave_up_s, status, reason = statuses[0]
    figures(gave_up_s=gave_up_s, close_s=close_s, reason=reason)
    assert status is SourceStatus.RECONNECTING and "no answer within 1.5s" in reason
    assert gave_up_s < config.open_timeout_s * 2 + 1.0  # FFmpeg may spend the timeout twice (connect, read)
    assert close_s < 3.0 and source.counters.values["errors"] >= 1


@pytest.fixture
def http_server(tmp_path, serve_folder):
    return serve_folder(tmp_path)


@pytest.mark.parametrize(
    "url, message",
    [
        ("rtsp://127.0.0.1:9/cam", "Connection refused"),
        ("rtmp://127.0.0.1:9/live/cam", "Connection refused"),
        ("rtsp://no-such-host.invalid/cam", "no-such-host.invalid"),
        ("{http}/missing.m3u8", "404"),
        ("/dev/video97", "/dev/video97"),
        ("rtsp://admin:hunter2@127.0.0.1:9/live", "admin:***@127.0.0.1"),
    ],
)
def test_unreachable_live_sources_retry_with_one_clear_error(url, message, http_server, caplog, figures):
    config = StreamConfig(
        id="bad", url=url.format(http=http_server), retry_initial_s=0.1, retry_max_s=0.2, open_timeout_s=2
    )

    async def scenario():
        statuses = []
        start = time.monotonic()
        async with Source(
            config, on_status=lambda _i, s, r: statuses.append((time.monotonic() - start, s, r))
        ) as source:
            await asyncio.sleep(1.5)
        return statuses, source

    statuses, source = asyncio.run(scenario())
    first_error_s, status, reason = statuses[0]
    figures(first_error_s=first_error_s, retries=source.counters.values["reconnects"])
    assert status is SourceStatus.RECONNECTING and message in reason and "\n" not in reason
    assert source.counters.values["reconnects"] >= 3 and source.counters.values["errors"] >= 3
    logged = [r.getMessage() for r in caplog.records if r.name == "stream.source"]
    warnings = [r for r in caplog.records if r.name == "stream.source" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and message in warnings[0].getMessage()  # one line, not one per retry
    assert not any("hunter2" in line for line in logged + [reason])


def test_a_missing_file_ends_the_stream_with_one_error(tmp_path, caplog):
    async def scenario():
        async with Source(StreamConfig(id="f", url=str(tmp_path / "nope.mp4"))) as source:
            frames = [frame async for frame in source]
        return frames, source

    frames, source = asyncio.run(scenario())
    assert frames == [] and source.status is SourceStatus.OFFLINE
    assert "No such file or directory" in source.last_error and source.counters.values["errors"] == 1
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1


@pytest.mark.parametrize("url", ["rtp+x://cam", "ftp://127.0.0.1/a.mp4", "srt://127.0.0.1:9"])
def test_an_unsupported_scheme_is_a_config_error(url):
    from core.errors import ConfigError
    from dfstream.config import parse_config

    with pytest.raises(ConfigError, match=r"streams\[0\]\.url: unsupported scheme"):
        parse_config({"streams": [{"id": "x", "url": url}], "detectors": [{"name": "m", "type": "meso4"}]})
