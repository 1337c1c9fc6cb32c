"""The annotated live view, read by a plain HTTP client: MJPEG frames that change, at most the
asked rate, scaled to the asked width, the face's box drawn in its label's colour; one JPEG; no
frame held once nobody watches."""

from __future__ import annotations

import time

import cv2
import httpx
import numpy as np
import pytest

from pipeline.runtime.drawing import COLOURS
from tests.helpers import free_port
from tests.service.conftest import Served, write_config

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    folder = tmp_path_factory.mktemp("live")
    port = free_port()
    config = write_config(
        folder, [{"id": "cam1", "url": "sample://astronaut", "pace": "realtime", "loop": True}], {"port": port}
    )
    server = Served(config, port).add_users().start()
    yield server
    server.stop()


def read_mjpeg(served: Served, seconds: float, **params) -> list[tuple[int, np.ndarray]]:
    """(frame seq, BGR image) of every part received within ``seconds``."""
    url = f"{served.base}/api/v1/streams/cam1/live.mjpeg"
    frames: list[tuple[int, np.ndarray]] = []
    with httpx.stream("GET", url, params={"access_token": served.token("viewer"), **params}, timeout=20) as answer:
        assert answer.status_code == 200
        kind, _, boundary = answer.headers["content-type"].partition("; boundary=")
        assert kind == "multipart/x-mixed-replace"
        buffer = b""
        deadline = time.monotonic() + seconds
        for chunk in answer.iter_bytes():
            buffer += chunk
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                head = buffer[:end].decode()
                length = int(
                    next(line.split(": ")[1] for line in head.split("\r\n") if line.startswith("Content-Length"))
                )
                if len(buffer) < end + 4 + length:
                    break
                seq = int(next(line.split(": ")[1] for line in head.split("\r\n") if line.startswith("X-Frame-Seq")))
                assert head.startswith(f"--{boundary}")
                image = cv2.imdecode(np.frombuffer(buffer[end + 4 : end + 4 + length], np.uint8), cv2.IMREAD_COLOR)
                frames.append((seq, image))
                buffer = buffer[end + 4 + length + 2 :]
            if time.monotonic() > deadline:
                break
    return frames


def _has_colour(image: np.ndarray, rgb: tuple[int, int, int], box: list[float], slack: int = 40) -> bool:
    """A box outline's worth of pixels in the label's colour around where the face is (the face
    moves between the frame and the reading of its box: ``slack`` pixels each way)."""
    x1, y1, x2, y2 = (round(v) for v in box)
    window = image[max(0, y1 - slack) : y2 + slack, max(0, x1 - slack) : x2 + slack].reshape(-1, 3).astype(int)
    near = np.abs(window - [rgb[2], rgb[1], rgb[0]]).sum(axis=1) < 40
    return int(near.sum()) > 2 * ((x2 - x1) + (y2 - y1))  # at least one pixel's width of the outline


def test_the_live_view_is_mjpeg_at_the_asked_rate_with_faces_drawn(served):
    with served.client("viewer") as viewer:
        deadline = time.monotonic() + 30
        while not viewer.get("/api/v1/streams/cam1").json()["tracks"]:
            assert time.monotonic() < deadline, "no face tracked"
            time.sleep(0.1)
    frames = read_mjpeg(served, 3.0, fps=4)
    seqs = [seq for seq, _ in frames]
    assert 6 <= len(frames) <= 14, f"{len(frames)} frames in 3 s at fps=4"
    assert seqs == sorted(set(seqs)) and seqs[-1] - seqs[0] >= 30  # new frames, the stream moving at 30 fps underneath
    assert frames[0][1].shape == (360, 640, 3)
    assert not np.array_equal(frames[0][1], frames[-1][1])  # the astronaut slides: the picture changes
    with served.client("viewer") as viewer:
        track = viewer.get("/api/v1/streams/cam1").json()["tracks"][0]
    colour = COLOURS[track["label"]]
    assert any(_has_colour(image, colour, track["bbox"]) for _, image in frames[-3:]), (
        f"no {track['label']} box near {track['bbox']}"
    )

    small = read_mjpeg(served, 1.5, fps=10, width=320)
    assert small and all(image.shape == (180, 320, 3) for _, image in small)


def test_a_snapshot_is_one_annotated_jpeg(served):
    with served.client("viewer") as viewer:
        answer = viewer.get("/api/v1/streams/cam1/snapshot.jpg", params={"width": 480})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (270, 480, 3)
        assert viewer.get("/api/v1/streams/cam9/snapshot.jpg").status_code == 404
        assert viewer.get("/api/v1/streams/cam1/live.mjpeg", params={"fps": 0}).status_code == 422
    assert httpx.get(f"{served.base}/api/v1/streams/cam1/snapshot.jpg").status_code == 401


def test_nobody_watching_holds_no_frame_and_the_latency_is_measured(served):
    read_mjpeg(served, 1.0, fps=5)
    time.sleep(0.5)  # the response's end reaches the server
    with served.client("viewer") as viewer:
        metrics = viewer.get("/metrics").text
    assert 'dfstream_live_viewers{stream="cam1"} 0.0' in metrics
    counts = [
        line
        for line in metrics.splitlines()
        if line.startswith('dfstream_stage_latency_seconds_count{stage="live_view"}')
    ]
    assert counts and float(counts[0].split()[-1]) >= 5
