"""`dfstream serve` SIGKILLed in the middle of a fake episode: the next start closes the event the
dead run left ongoing (at its last write, ``end_reason`` restart), so the API never shows a ghost;
the face still fake opens a new event, and an event of a stream this server does not own is left
as it is."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy.orm import Session

from service.db.models import StoredEvent, utcnow
from service.db.schema import make_engine
from tests.helpers import free_port, scrape, wait_until
from tests.service.conftest import Served, scripted, write_config

pytestmark = pytest.mark.weights


def ongoing(served: Served) -> list[dict]:
    with served.client("viewer") as client:
        return [e for e in client.get("/api/v1/events", params={"stream": "cam1"}).json()["items"] if e["ongoing"]]


def test_an_event_left_ongoing_by_a_killed_server_is_closed_at_the_next_start(tmp_path):
    port = free_port()
    config = write_config(
        tmp_path,
        [{"id": "cam1", "url": "sample://astronaut", "pace": "realtime", "loop": True, "fps": 10}],
        {"port": port},
        detectors=[scripted(tmp_path, [(0, 4e9)])],  # the face fake all along
    )
    served = Served(config, port).add_users()
    # another server's stream in the same database: not this one's to close
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'dfstream.db'}")
    now = utcnow()
    with Session(engine) as session, session.begin():
        session.add(
            StoredEvent(
                id="elsewhere1",
                stream="lobby",
                track_id=1,
                label="fake",
                started_at=now,
                peak_probability=0.9,
                peak_at=now,
                mean_probability=0.9,
                verdicts=3,
                models_at_peak={},
                models_mean={},
                bbox_at_peak=[0, 0, 1, 1],
            )
        )
    try:
        served.start()
        wait_until(lambda: len(ongoing(served)) == 1, 60, "an ongoing fake event")
        (ghost,) = ongoing(served)
        served.kill()  # SIGKILL: the store sink never closes it
        served.start()
        wait_until(lambda: ongoing(served) and ongoing(served)[0]["id"] != ghost["id"], 60, "a new episode")
        with served.client("viewer") as client:
            closed = client.get(f"/api/v1/events/{ghost['id']}").json()
            lobby = client.get("/api/v1/events/elsewhere1").json()
        assert closed["ongoing"] is False and closed["end_reason"] == "restart"
        # ended at its last write before the kill: after it started, before this check
        ended = dt.datetime.fromisoformat(closed["ended_at"])
        assert dt.datetime.fromisoformat(closed["started_at"]) <= ended < dt.datetime.now(dt.UTC)
        assert lobby["ongoing"] is True and lobby["end_reason"] is None
        assert "closed 1 event(s) a previous run left ongoing" in served.log.read_text()
    finally:
        served.stop()
        engine.dispose()


@pytest.fixture(scope="module")
def minute_clip(tmp_path_factory):
    """60 s of the face: through a kill and a restart without the RTSP server ending it."""
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("media") / "face_60s.mp4", seconds=60.0)


def events_of(served: Served) -> list[dict]:
    with served.client("viewer") as client:
        return client.get("/api/v1/events", params={"stream": "cam1"}).json()["items"]


@pytest.mark.timeout(240)
def test_events_waiting_for_postgresql_survive_a_kill_and_are_written_after_it(
    rtsp_server, minute_clip, postgres, tmp_path
):
    url = postgres.create(f"crash_{int(time.time())}")
    camera = rtsp_server({"/cam1": minute_clip})
    port, prometheus = free_port(), free_port()
    config = write_config(
        tmp_path,
        [{"id": "cam1", "url": camera.url("/cam1")}],
        {"port": port, "database": url},
        detectors=[scripted(tmp_path, [])],
        smoothing={"method": "ema", "alpha": 0.5, "enter": 0.7, "leave": 0.4, "min_duration_s": 0.2},
        incidents={"quiet_s": 1.0},  # the two episodes, 3 s apart, are two incidents (two events)
        sinks={"prometheus": {"port": prometheus}},
    )
    served = Served(config, port).add_users()
    try:
        served.start()
        wait_until(lambda: stream_tracks(served), 40, "a face tracked on cam1")
        start = time.time()
        # a first episode that ends while the database is down, a second that starts while it is down
        scripted(tmp_path, [(start, start + 3), (start + 6, start + 120)])
        wait_until(lambda: events_of(served), 30, "the first event written")
        (first,) = events_of(served)
        postgres.stop()
        try:
            wait_until(lambda: time.time() > start + 9, 15)
            figures = scrape(prometheus)
            assert figures["dfstream_store_pending_writes{}"] >= 2  # the first's end, the second
            assert figures["dfstream_spool_bytes{sink=store}"] > 10_000  # with their snapshots, on disk
            served.kill()  # SIGKILL: nothing of it is in the database
        finally:
            postgres.start()
        restarted = time.monotonic()
        served.start()

        def written() -> dict:
            found = {e["id"]: e for e in events_of(served)}
            return found if found.get(first["id"], {}).get("end_reason") == "label" and len(found) >= 2 else {}

        wait_until(written, 60, "the killed run's events written")
        print(
            f"pending at the kill: {figures['dfstream_store_pending_writes{}']:.0f} writes, "
            f"{figures['dfstream_spool_bytes{sink=store}'] / 1000:.0f} kB spooled; "
            f"written {time.monotonic() - restarted:.1f} s after the restart began (its start included)"
        )
        found = written()
        second = [e for e in found.values() if e["id"] != first["id"] and e["end_reason"] == "restart"]
        assert len(second) == 1, found  # born while the database was down, open when dfstream died
        assert dt.datetime.fromisoformat(second[0]["started_at"]).timestamp() >= start + 5
        with served.client("viewer") as viewer:
            assert viewer.get(second[0]["face_url"]).status_code == 200  # its snapshot, from the spool
        wait_until(lambda: scrape(prometheus)["dfstream_store_pending_writes{}"] == 0, 10, "nothing left waiting")
    finally:
        served.stop()


def stream_tracks(served: Served) -> list:
    with served.client("viewer") as client:
        return client.get("/api/v1/streams/cam1").json()["tracks"]
