"""Live events end to end: a real RTSP camera with a face, `dfstream serve`, a fake episode →
an event with its snapshots, readable over the API; on PostgreSQL, a database restart mid-episode
loses nothing. Also: an analysis job killed mid-way is finished on the next start, with the same
numbers an uninterrupted run gives."""

from __future__ import annotations

import signal
import time

import cv2
import numpy as np
import pytest

from tests.helpers import free_port, scrape
from tests.service.conftest import Served, scripted, write_config

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """40 s of the face: one RTSP session covers a whole test, with no reconnect splitting an episode."""
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("media") / "face_40s.mp4", seconds=40.0)


def _events(served, **params) -> list[dict]:
    with served.client("viewer") as viewer:
        return viewer.get("/api/v1/events", params=params).json()["items"]


def _wait_for_a_face(served) -> None:
    """Until the camera's face is tracked: the fake window is scripted from then on."""
    deadline = time.time() + 40
    with served.client("viewer") as viewer:
        while not viewer.get("/api/v1/streams/cam1").json()["tracks"]:
            assert time.time() < deadline, "no face tracked on cam1 within 40 s"
            time.sleep(0.1)


def _decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def test_a_fake_episode_on_a_live_camera_becomes_an_event_with_snapshots(serve, rtsp_server, long_clip, tmp_path):
    camera = rtsp_server({"/cam1": long_clip})
    served = serve(
        [{"id": "cam1", "url": camera.url("/cam1")}],
        detectors=[scripted(tmp_path, [])],
        smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2},
    )
    _wait_for_a_face(served)
    start = time.time()
    scripted(tmp_path, [(start, start + 4)])
    found: list[dict] = []

    def readable() -> bool:
        found[:] = _events(served, stream="cam1")
        return bool(found)

    while not readable():
        assert time.time() < start + 30, "no event within 30 s of the fake episode's start"
        time.sleep(0.05)
    seen_after = time.time() - start
    event = found[0]
    assert event["label"] == "fake" and event["stream"] == "cam1" and event["peak_probability"] > 0.7
    assert seen_after < 5, f"the event became readable {seen_after:.1f} s after the episode began"
    with served.client("viewer") as viewer:
        # the episode ends with the window: the event closes
        deadline = time.time() + 20
        while viewer.get(f"/api/v1/events/{event['id']}").json()["ongoing"]:
            assert time.time() < deadline, "the event never closed"
            time.sleep(0.2)
        closed = viewer.get(f"/api/v1/events/{event['id']}").json()
        face = viewer.get(closed["face_url"])
        frame = viewer.get(closed["frame_url"])
    assert face.headers["content-type"] == "image/jpeg" and frame.headers["content-type"] == "image/jpeg"
    duration = (np.datetime64(closed["ended_at"][:-1]) - np.datetime64(closed["started_at"][:-1])) / np.timedelta64(
        1, "s"
    )
    assert 2.5 < duration < 6, f"the episode lasted {duration:.1f} s for a 4 s fake window"
    assert closed["models_at_peak"] == {"scripted": pytest.approx(0.95)} and closed["verdicts"] > 10
    whole, crop = _decoded(frame.content), _decoded(face.content)
    assert whole.shape[:2] == (360, 640)
    x1, y1, x2, y2 = closed["bbox_at_peak"]
    assert crop.shape[0] >= (y2 - y1) and crop.shape[1] >= (x2 - x1)  # the face with a margin, not the frame
    assert crop.std() > 20  # a picture, not a blank
    with served.client("analyst") as analyst:
        acked = analyst.post(f"/api/v1/events/{event['id']}/ack").json()
    assert acked["acknowledged_by"] == "analyst" and acked["acknowledged_at"] is not None
    assert [e["id"] for e in _events(served, acknowledged="true")] == [event["id"]]
    assert _events(served, acknowledged="false", stream="cam1") == []
    print(f"\nevent readable over the API {seen_after:.2f} s after the fake window opened")


def test_postgres_restarting_mid_episode_loses_no_event(serve, rtsp_server, long_clip, postgres, tmp_path):
    url = postgres.create(f"live_{int(time.time())}")
    camera = rtsp_server({"/cam1": long_clip})
    prometheus_port = free_port()
    served = serve(
        [{"id": "cam1", "url": camera.url("/cam1")}],
        api={"database": url},
        detectors=[scripted(tmp_path, [])],
        smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2},
        # two fakes 3 s apart are two incidents (two events) only with a quiet time shorter than that
        incidents={"quiet_s": 1.0},
        sinks={"prometheus": {"port": prometheus_port}},
    )
    _wait_for_a_face(served)
    start = time.time()
    scripted(tmp_path, [(start, start + 3), (start + 6, start + 9)])
    while not _events(served):
        assert time.time() < start + 30, "the first event never appeared"
        time.sleep(0.1)
    postgres.stop()  # down through the end of the first episode and all of the second
    try:
        with served.client() as anonymous:
            assert anonymous.get("/readyz").status_code == 503
        with served.client("viewer") as viewer:
            away = viewer.get("/api/v1/events")
        assert away.status_code == 503 and away.json()["detail"].startswith("the database is unavailable, try again")
        time.sleep(max(0.0, start + 10 - time.time()))
        assert scrape(prometheus_port)["dfstream_store_write_errors_total{}"] >= 1
        pending = scrape(prometheus_port)["dfstream_store_pending_writes{}"]
        assert pending >= 1
    finally:
        postgres.start()
    deadline = time.time() + 30
    while len(_events(served)) < 2 or any(e["ongoing"] for e in _events(served)):
        assert time.time() < deadline, f"events after the restart: {_events(served)}"
        time.sleep(0.2)
    events = _events(served)
    assert len(events) == 2 and all(e["peak_probability"] > 0.7 for e in events)
    assert scrape(prometheus_port)["dfstream_store_pending_writes{}"] == 0
    with served.client("viewer") as viewer:
        assert viewer.get(events[0]["face_url"]).status_code == 200  # the snapshot of the episode the database missed


def test_an_analysis_killed_mid_job_finishes_on_restart_with_the_same_result(tmp_path, face_clip):
    port = free_port()
    config = write_config(
        tmp_path, [{"id": "cam1", "url": "sample://astronaut", "fps": 1}], {"port": port, "analysis": {"frames": 150}}
    )
    served = Served(config, port).add_users().start()
    try:
        with served.client("analyst") as analyst, face_clip.open("rb") as fh:
            interrupted = analyst.post("/api/v1/media", files={"file": ("clip.mp4", fh)}).json()
        served.wait_media(interrupted["id"], until=("running",))
        with served.client("viewer") as viewer:
            deadline = time.time() + 60
            while viewer.get(f"/api/v1/media/{interrupted['id']}").json()["progress"] < 0.2:
                assert time.time() < deadline
                time.sleep(0.1)
        served.kill(signal.SIGKILL)  # no chance to clean up
        served.start()
        assert served.wait_media(interrupted["id"], timeout=180)["status"] == "done"
        with served.client("analyst") as analyst, face_clip.open("rb") as fh:
            clean = analyst.post("/api/v1/media", files={"file": ("clip.mp4", fh)}).json()
        assert served.wait_media(clean["id"], timeout=180)["status"] == "done"
        with served.client("viewer") as viewer:
            resumed_results = viewer.get(f"/api/v1/media/{interrupted['id']}/results").json()
            clean_results = viewer.get(f"/api/v1/media/{clean['id']}/results").json()
            metrics = viewer.get("/metrics").text
        assert resumed_results["rows"] == clean_results["rows"] and len(clean_results["rows"]) >= 100
        assert resumed_results["fake_probability"] == clean_results["fake_probability"]
        assert 'dfstream_analysis_jobs_total{outcome="resumed"} 1.0' in metrics
        assert "analysis was interrupted (the process stopped); running it again" in served.log.read_text()
    finally:
        served.stop()
