"""The store sink's writer: event records upserted into ``events``, ``event_snapshots`` and ``event_audio``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from pipeline.monitoring.monitor import PerformanceMonitor
from service.db.models import EventAudio, EventSnapshot, StoredEvent, utcnow
from sinks.store import EventRecord, StoreConfig, StoreSink


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class DatabaseEventWriter:
    def __init__(self, engine: Engine):
        self.engine = engine

    def reachable(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(select(1))
        return True

    def write(self, records: list[EventRecord]) -> None:
        with Session(self.engine) as session, session.begin():
            for r in records:
                event = session.get(StoredEvent, r.id) or StoredEvent(id=r.id)
                event.stream, event.track_id, event.label, event.modality = r.stream, r.track_id, r.label, r.modality
                event.started_at, event.ended_at = (
                    _time(r.started_at),
                    _time(r.ended_at) if r.ended_at is not None else None,
                )
                event.end_reason = r.end_reason
                event.peak_probability, event.peak_at = r.peak_probability, _time(r.peak_at)
                event.mean_probability, event.verdicts = r.mean_probability, r.verdicts
                event.models_at_peak, event.models_mean = r.models_at_peak, r.models_mean
                event.bbox_at_peak = [round(v, 1) for v in r.bbox_at_peak]
                event.updated_at = utcnow()
                session.add(event)
                if r.face_jpeg is not None and r.frame_jpeg is not None:
                    session.flush()
                    session.execute(delete(EventSnapshot).where(EventSnapshot.event_id == r.id))
                    taken = _time(r.peak_at)
                    session.add_all(
                        [
                            EventSnapshot(event_id=r.id, kind="face", jpeg=r.face_jpeg, taken_at=taken),
                            EventSnapshot(event_id=r.id, kind="frame", jpeg=r.frame_jpeg, taken_at=taken),
                        ]
                    )
                if r.audio_wav is not None:
                    session.flush()
                    session.merge(EventAudio(event_id=r.id, wav=r.audio_wav, taken_at=_time(r.peak_at)))


def store_sink(config: StoreConfig | None, engine: Engine, monitor: PerformanceMonitor) -> StoreSink:
    """Live events into the database ``engine`` reaches (``dfstream run``, ``serve`` and every Ray node runtime)."""
    return StoreSink(config or StoreConfig(), DatabaseEventWriter(engine), monitor)


def close_left_open(engine: Engine, streams: list[str]) -> int:
    """Events of ``streams`` (the ones this process owns) still ongoing when it starts were left open
    by a run that died: each ends at its last write (the store sink writes an ongoing event every
    ``flush_interval_s``), ``end_reason`` restart. Returns how many."""
    if not streams:
        return 0
    with Session(engine) as session, session.begin():
        closed = session.execute(
            update(StoredEvent)
            .where(StoredEvent.stream.in_(streams), StoredEvent.ended_at.is_(None))
            .values(
                ended_at=func.coalesce(StoredEvent.updated_at, StoredEvent.started_at),
                end_reason="restart",
                updated_at=utcnow(),
            )
        )
        return closed.rowcount or 0
