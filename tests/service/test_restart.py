"""`dfstream serve` SIGKILLed in the middle of a fake episode: the next start closes the event the
dead run left ongoing (at its last write, ``end_reason`` restart), so the API never shows a ghost;
the face still fake opens a new event, and an event of a stream this server does not own is left
as it is."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from service.db.models import StoredEvent, utcnow
from service.db.schema import make_engine
from tests.helpers import free_port, wait_until
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
