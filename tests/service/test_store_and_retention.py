"""The store sink against a real database: episodes open, update and close as the label, the
tracks and the stream say; a database that fails keeps events waiting (up to the capacity, the
rest counted) and gets them all when it is back. Retention by age and by disk budget, counted."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import StreamState, StreamStatus, Verdict
from service.config import ApiConfig
from service.db.events import DatabaseEventWriter
from service.db.models import EventSnapshot, MediaFile, StoredEvent, utcnow
from service.db.schema import make_engine, upgrade
from service.retention import prune
from sinks.store import StoreConfig, StoreSink

STORE = Subject.sink("store")
T0 = 1_800_000_000.0


def verdict(
    track: int, t: float, label: str, p: float, stream: str = "cam1", image: np.ndarray | None = None
) -> Verdict:
    return Verdict(
        stream=stream,
        track_id=track,
        seq=int(t * 10),
        ts=t,
        frame_seq=int(t * 30),
        frame_pts=None,
        label=label,  # type: ignore[arg-type]
        label_since=T0 + 1 if label == "fake" else t,
        fake_probability=p,
        raw_probability=p,
        uncertainty=0.1,
        models={"meso4": p, "mesoinception4": p / 2},
        bbox=(100.0, 50.0, 180.0, 150.0),
        faces_in_frame=1,
        latency_ms=20.0,
        image=image,
    )


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def events(engine) -> dict[tuple[str, int], StoredEvent]:
    with Session(engine) as session:
        return {(e.stream, e.track_id): e for e in session.scalars(select(StoredEvent))}


def test_episodes_open_update_and_close_with_label_track_and_stream(engine, astronaut):
    monitor = PerformanceMonitor()
    frame = np.ascontiguousarray(astronaut[:360, :480])

    async def play() -> None:
        sink = StoreSink(StoreConfig(flush_interval_s=0.05), DatabaseEventWriter(engine), monitor)
        async with sink:
            await sink.publish(verdict(1, T0 + 1.0, "real", 0.2))
            await sink.publish(verdict(1, T0 + 1.1, "fake", 0.8, image=frame))
            await sink.publish(verdict(1, T0 + 1.2, "fake", 0.9, image=frame))
            await sink.publish(verdict(1, T0 + 1.3, "fake", 0.85, image=frame))
            await sink.publish(verdict(2, T0 + 1.3, "fake", 0.75, stream="cam2", image=frame))
            await asyncio.sleep(0.3)
            assert events(engine)[("cam1", 1)].ended_at is None  # written while it lasts
            await sink.publish(verdict(1, T0 + 2.0, "real", 0.3))  # the label left fake
            await sink.publish(verdict(3, T0 + 2.1, "fake", 0.8))
            await sink.publish(StreamState("cam1", "real", {1: "real"}, 0.3, T0 + 2.5))  # track 3 is gone
            await sink.publish(StreamStatus("cam2", "reconnecting", "stalled", T0 + 3.0))  # cam2 went away

    asyncio.run(play())
    found = events(engine)
    first = found[("cam1", 1)]
    assert first.started_at == dt.datetime.fromtimestamp(T0 + 1, dt.UTC)
    assert first.ended_at == dt.datetime.fromtimestamp(T0 + 2.0, dt.UTC)
    assert (first.peak_probability, first.verdicts, first.mean_probability) == (0.9, 3, pytest.approx(0.85))
    assert first.models_at_peak == {"meso4": 0.9, "mesoinception4": 0.45}
    assert first.peak_at == dt.datetime.fromtimestamp(T0 + 1.2, dt.UTC)
    assert found[("cam1", 3)].ended_at == dt.datetime.fromtimestamp(T0 + 2.5, dt.UTC)
    assert found[("cam2", 2)].ended_at == dt.datetime.fromtimestamp(T0 + 3.0, dt.UTC)
    # and each says why
    assert (first.end_reason, found[("cam1", 3)].end_reason, found[("cam2", 2)].end_reason) == (
        "label",
        "track_gone",
        "stream_down",
    )
    with Session(engine) as session:
        kinds = {(s.event_id, s.kind) for s in session.scalars(select(EventSnapshot))}
    assert kinds == {
        (first.id, "face"),
        (first.id, "frame"),
        (found[("cam2", 2)].id, "face"),
        (found[("cam2", 2)].id, "frame"),
    }
    assert monitor.counter(STORE, Count.ROWS_WRITTEN) >= 3 and monitor.counter(STORE, Count.WRITE_ERRORS) == 0


def test_a_failing_database_keeps_events_waiting_and_counts_what_does_not_fit(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db'}")
    upgrade(engine)
    monitor = PerformanceMonitor()

    async def play() -> None:
        sink = StoreSink(
            StoreConfig(flush_interval_s=0.05, retry_max_s=0.2, capacity=5), DatabaseEventWriter(engine), monitor
        )
        async with sink:
            with engine.begin() as connection:  # the table is away: every write fails, as on a database restart
                connection.exec_driver_sql("ALTER TABLE events RENAME TO events_away")
            for track in range(8):  # eight closed episodes, five fit
                await sink.publish(verdict(track, T0 + track, "fake", 0.9))
                await sink.publish(verdict(track, T0 + track + 0.5, "real", 0.1))
            await asyncio.sleep(0.6)
            assert monitor.counter(STORE, Count.WRITE_ERRORS) >= 2
            assert monitor.gauge(STORE, Gauge.PENDING_WRITES) == 5
            with engine.begin() as connection:
                connection.exec_driver_sql("ALTER TABLE events_away RENAME TO events")
            await asyncio.sleep(0.6)
            assert monitor.gauge(STORE, Gauge.PENDING_WRITES) == 0

    asyncio.run(play())
    assert sorted(track for _, track in events(engine)) == [3, 4, 5, 6, 7]  # the newest five; the oldest three counted
    assert monitor.counter(STORE, Count.EVENTS_DROPPED, reason="store_full") == 3


def test_a_record_the_database_refuses_is_set_aside_and_holds_back_no_other(engine, caplog):
    monitor = PerformanceMonitor()

    async def play() -> None:
        sink = StoreSink(StoreConfig(flush_interval_s=0.05, max_tries=3), DatabaseEventWriter(engine), monitor)
        async with sink:
            # a track id no SQL INTEGER holds: the driver refuses that record, every time
            await sink.publish(verdict(2**64, T0 + 1.0, "fake", 0.9))
            for i in range(20):  # an episode that goes on, written at every flush, and one that ends
                await sink.publish(verdict(1, T0 + 1.0 + i * 0.1, "fake", 0.8))
                await sink.publish(verdict(2, T0 + 1.0 + i * 0.1, "fake" if i < 5 else "real", 0.8))
                await asyncio.sleep(0.06)

    asyncio.run(play())
    assert {track for _, track in events(engine)} == {1, 2}  # both written, whatever the third did
    assert monitor.counter(STORE, Count.EVENTS_DROPPED, reason="refused") == 1
    said = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    # once, with the database's reason (SQLite's driver: too large; PostgreSQL: out of range)
    assert len(said) == 1 and re.search(r"after 3 refused writes: .*(too large|out of range)", said[0]), said
    assert not [r for r in caplog.records if "not written at shutdown" in r.getMessage()]


def _event(session: Session, event_id: str, started: dt.datetime) -> None:
    session.add(
        StoredEvent(
            id=event_id,
            stream="cam1",
            track_id=1,
            label="fake",
            started_at=started,
            ended_at=started,
            peak_probability=0.9,
            peak_at=started,
            mean_probability=0.8,
            verdicts=3,
            models_at_peak={},
            models_mean={},
            bbox_at_peak=[0, 0, 1, 1],
        )
    )
    session.flush()  # the event's row first: no relationship tells SQLAlchemy the snapshot depends on it
    session.add(EventSnapshot(event_id=event_id, kind="frame", jpeg=b"\xff" * 200_000, taken_at=started))


def _media(
    config: ApiConfig, session: Session, name: str, created: dt.datetime, size: int, status: str = "done"
) -> None:
    config.media_dir.mkdir(parents=True, exist_ok=True)
    (config.media_dir / name).write_bytes(b"\0" * size)
    session.add(
        MediaFile(
            original_name=name,
            sha256="0" * 64,
            size=size,
            container="mp4",
            codec="h264",
            width=1,
            height=1,
            storage_path=f"media/{name}",
            status=status,
            created_at=created,
        )
    )


def test_retention_prunes_by_age_then_by_each_budget_and_counts(tmp_path):
    config = ApiConfig(
        data_dir=tmp_path,
        retention={"events_days": 30, "media_days": 7, "max_media_gb": 0.0012, "max_events_gb": 0.00045},
    )
    engine = make_engine(config.database_url)
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    now = utcnow()
    with sessions() as session, session.begin():
        _event(session, "old", now - dt.timedelta(days=31))
        _event(session, "e_a", now - dt.timedelta(days=3))  # 200 kB of snapshot each: three are over 0.45 MB
        _event(session, "e_b", now - dt.timedelta(days=2))
        _event(session, "e_c", now - dt.timedelta(days=1))
        _media(config, session, "m_old", now - dt.timedelta(days=8), 1000)
        _media(config, session, "m_old_running", now - dt.timedelta(days=8), 1000, status="running")
        _media(config, session, "m_a", now - dt.timedelta(days=3), 600_000)
        _media(config, session, "m_b", now - dt.timedelta(days=2), 600_000)
        _media(config, session, "m_c", now - dt.timedelta(days=1), 600_000)
    monitor = PerformanceMonitor()
    removed = prune(config, sessions, monitor)
    with sessions() as session:
        left_events = set(session.scalars(select(StoredEvent.id)))
        left_media = set(session.scalars(select(MediaFile.original_name)))
    # by age: m_old (a running job is never pruned); by the media budget (1.2 MB): the oldest finished first
    assert left_media == {"m_old_running", "m_c"}
    assert sorted(p.name for p in config.media_dir.iterdir()) == ["m_c", "m_old_running"]
    # by age: old; by the events budget (0.45 MB), on its own: the oldest event
    assert left_events == {"e_b", "e_c"}
    assert removed == {"events/age": 1, "media/age": 1, "media/disk": 2, "events/disk": 1}
    retention = Subject.service("retention")
    assert monitor.counter(retention, Count.PRUNED, what="media", reason="disk") == 2
    assert monitor.counter(retention, Count.PRUNED, what="events", reason="age") == 1
    engine.dispose()


def test_uploads_over_their_budget_never_delete_an_event(tmp_path):
    """The finding: past max_disk_gb retention deleted every finished media, then every event."""
    config = ApiConfig(data_dir=tmp_path, retention={"max_media_gb": 0.0001})
    engine = make_engine(config.database_url)
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    now = utcnow()
    with sessions() as session, session.begin():
        _event(session, "evidence", now - dt.timedelta(days=1))
        _media(config, session, "queued_big", now, 5_000_000, status="queued")  # nothing retention may remove
    removed = prune(config, sessions, PerformanceMonitor())
    with sessions() as session:
        assert set(session.scalars(select(StoredEvent.id))) == {"evidence"}
    assert not +removed  # nothing removed
    engine.dispose()


def test_the_old_single_budget_is_refused_with_what_replaced_it():
    with pytest.raises(ValueError, match="max_disk_gb is now two budgets: max_media_gb .uploads. and max_events_gb"):
        ApiConfig(retention={"max_disk_gb": 20})
