"""Check a call, in a real browser: Chromium with fake capture devices (a y4m of the face clip as the
camera, espeak-ng speech as the microphone) opens the web UI, logs in and shares the camera; the
call becomes a stream of its own, judged (faces and voice), listed, published over MQTT and shown
back on the page with a box round the face (pixels checked); ending the call ends the stream:
offline, its events closed. Under Xvfb, the screen with a window playing the face is shared and judged.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import av
import pytest
from selenium.webdriver.common.by import By

from bench.sounds import make_wav
from tests.helpers import free_port, wait_until
from tests.mqtt_broker import Subscriber, payload_of
from tests.service.conftest import colour_mask, log_in, screenshot, scripted, wait_for

pytestmark = pytest.mark.weights
RED = (220, 38, 38)  # the palette's fake
# the page's overall badge; the smoother passes through "uncertain" on its way to "fake"
FAKE_ON_PAGE = "return document.getElementById('call-label').dataset.label === 'fake'"


def y4m(clip: Path, out: Path, seconds: float, still_at: float | None = None) -> Path:
    """The clip as the raw YUV4MPEG2 Chromium's fake camera plays (and loops); ``still_at``: the
    frame at that time held for ``seconds`` (a person sitting still: the boxes drawn over the
    preview can be checked against the face, which a moving one outruns by the glass-to-verdict
    latency)."""
    with av.open(str(clip)) as source, av.open(str(out), "w", format="yuv4mpegpipe") as sink:
        video = source.streams.video[0]
        stream = sink.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = video.codec_context.width, video.codec_context.height, "yuv420p"
        frames = (frame for frame in source.decode(video) if still_at is None or frame.time >= still_at)
        if still_at is not None:
            held = next(frames).to_ndarray(format="yuv420p")
            frames = (av.VideoFrame.from_ndarray(held, format="yuv420p") for _ in range(round(seconds * 30)))
        for i, frame in enumerate(frames):
            if i >= seconds * 30:
                break
            frame.pts = i
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return out


class Listening(threading.Thread):
    """A real MQTT subscriber beside the (synchronous) browser test."""

    def __init__(self, broker):
        super().__init__(daemon=True)
        self.broker, self.ready, self.stop = broker, threading.Event(), threading.Event()
        self.subscriber: Subscriber | None = None

    def run(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        async with Subscriber(self.broker, ("dfstream/+/state",)) as subscriber:
            self.subscriber = subscriber
            self.ready.set()
            while not self.stop.is_set():
                await asyncio.sleep(0.1)


def stream_of(served, stream_id: str) -> dict:
    with served.client("viewer") as client:
        return client.get(f"/api/v1/streams/{stream_id}").json()


@pytest.fixture
def call_server(serve, tmp_path, aasist_dir, mosquitto, creds):
    return serve(
        [],  # a server that only checks calls: no stream until one arrives
        api={"calls": {"linger_s": 30, "stall_timeout_s": 6}},
        detectors=[scripted(tmp_path, [(0, 4e9)])],  # every face fake: red boxes
        audio_detectors=[{"name": "aasist_l", "type": "aasist_l", "weights": str(aasist_dir / "AASIST-L.pth")}],
        sinks={"mqtt": {"host": "127.0.0.1", "port": mosquitto.port}},
    )


@pytest.mark.timeout(240)
def test_a_shared_camera_is_judged_shown_back_and_ended(chromium, call_server, face_clip, tmp_path, mosquitto):
    served = call_server
    camera = y4m(face_clip, tmp_path / "camera.y4m", 4.0, still_at=1.0)
    microphone = make_wav("speech", tmp_path, seconds=10.0, rate=48_000, channels=1)
    with served.client("viewer") as client:
        assert client.get("/api/v1/streams").json() == []
        assert client.get("/readyz").status_code == 200  # ready with no stream: it waits for calls
    listener = Listening(mosquitto)
    listener.start()
    assert listener.ready.wait(15)
    browser = chromium(
        1280,
        900,
        (
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
            f"--use-file-for-fake-audio-capture={microphone}",
        ),
    )
    log_in(browser, served.base)
    wait_for(browser, "return !document.getElementById('app').hidden", 20, "the logged-in UI")
    browser.get(served.base + "/#/call")
    browser.find_element(By.ID, "share-camera").click()
    wait_for(
        browser,
        FAKE_ON_PAGE,
        90,
        "the call's verdict on the page",
    )
    stream_id = browser.execute_script("return current.stream")
    assert stream_id.startswith("call-")
    seen = stream_of(served, stream_id)
    assert seen["status"] == "online" and seen["url"].startswith("webrtc://")
    assert seen["tracks"] and seen["tracks"][0]["label"] == "fake"
    wait_until(lambda: stream_of(served, stream_id)["voice"] in ("fake", "real", "uncertain"), 60, "the call's voice")
    time.sleep(1.0)  # the boxes are redrawn every 100 ms from the feed
    stage = browser.find_element(By.ID, "call-stage")
    face = stream_of(served, stream_id)["tracks"][0]["bbox"]
    pixels = screenshot(browser, tmp_path / "check-a-call.png", stage)
    screenshot(browser, tmp_path / "check-a-call-page.png")  # the whole page, for the README
    red = colour_mask(pixels, RED)
    assert red.sum() > 400, red.sum()  # the box and its label, drawn over the preview
    ys, xs = red.nonzero()
    # the face's box is in the 640x360 camera frame, shown scaled (and letterboxed) in the stage: the
    # face sits still, so the box drawn is where the face is on the preview, to the width of its line
    scale = min(pixels.shape[1] / 640, pixels.shape[0] / 360)
    left = (pixels.shape[1] - 640 * scale) / 2 + face[0] * scale
    assert abs(xs.min() - left) < 12, (xs.min(), left)

    # compact: the page as the call's overlay -- the picture, its boxes and the badge, nothing else;
    # the call goes on through the change of view
    browser.find_element(By.ID, "call-compact").click()
    wait_for(browser, "return document.body.classList.contains('compact-call')", 10, "the compact call view")
    assert browser.execute_script("return getComputedStyle(document.querySelector('header')).display") == "none"
    assert browser.execute_script("return current.stream") == stream_id
    wait_for(browser, FAKE_ON_PAGE, 30, "the verdict in the compact view")
    time.sleep(1.0)
    stage = browser.find_element(By.ID, "call-stage")
    assert stage.size["height"] > 700, stage.size  # the picture fills the window
    compact = colour_mask(screenshot(browser, tmp_path / "check-a-call-compact-stage.png", stage), RED)
    assert compact.sum() > 400, compact.sum()  # the box, not only the badge
    screenshot(browser, tmp_path / "check-a-call-compact.png")  # the whole window, for the README

    browser.find_element(By.ID, "end-call").click()
    wait_until(lambda: stream_of(served, stream_id)["status"] == "offline", 15, "the call's stream offline")
    with served.client("admin") as client:
        events = client.get("/api/v1/events", params={"stream": stream_id}).json()["items"]
    assert events and all(e["ended_at"] is not None for e in events), events
    assert {e["modality"] for e in events} >= {"face"}
    listener.stop.set()
    listener.join(10)
    published = [(str(m.topic), payload_of(m)) for m in listener.subscriber.messages]
    assert any(topic == f"dfstream/{stream_id}/state" and body["label"] == "fake" for topic, body in published)
    with served.client("admin") as client:
        metrics = client.get("/metrics").text
    assert 'dfstream_calls_total{event="ended"} 1.0' in metrics


@pytest.mark.timeout(240)
def test_a_window_shared_under_xvfb_is_judged(chromium, call_server, face_clip, tmp_path):
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is missing: apt-get install xvfb")
    served = call_server
    display = f":{free_port() % 400 + 100}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1600x900x24", "-nolisten", "tcp"])
    os.environ["DISPLAY"] = display
    try:
        time.sleep(1.0)
        page = tmp_path / "player.html"
        page.write_text(
            f'<title>face-player</title><body style="margin:0;background:#000">'
            f'<video src="{face_clip.as_uri()}" autoplay muted loop style="width:100%"></video></body>'
        )
        browser = chromium(
            1280,
            800,
            # the fake permission UI makes real capture fail ("Could not start video source"); the
            # picker's auto-selection grants it instead. Debian's Chromium on Xvfb lists no windows
            # by title, so the screen is shared, with the player's window on it
            (
                "--auto-select-desktop-capture-source=Entire screen",
                "--allow-file-access-from-files",
                "--autoplay-policy=no-user-gesture-required",
            ),
            headless=False,
        )
        log_in(browser, served.base)
        wait_for(browser, "return !document.getElementById('app').hidden", 20, "the logged-in UI")
        ui = browser.current_window_handle
        browser.switch_to.new_window("window")
        browser.get(page.as_uri())
        browser.set_window_rect(0, 0, 960, 560)
        browser.switch_to.window(ui)
        browser.set_window_rect(960, 0, 640, 900)
        browser.get(served.base + "/#/call")
        browser.find_element(By.ID, "share-screen").click()
        wait_for(
            browser,
            FAKE_ON_PAGE,
            90,
            "the shared window's verdict",
        )
        stream_id = browser.execute_script("return current.stream")
        assert stream_of(served, stream_id)["tracks"]
        browser.find_element(By.ID, "end-call").click()
        wait_until(
            lambda: stream_of(served, stream_id)["status"] == "offline", 15, "the shared window's stream offline"
        )
    finally:
        os.environ.pop("DISPLAY", None)
        xvfb.terminate()
        xvfb.wait(10)
