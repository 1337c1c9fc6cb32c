"""Retention: events (and their snapshots) older than ``events_days``, finished media older than
``media_days``; then two budgets, each on its own: while uploaded files take more than
``max_media_gb`` the oldest finished media go, while events' snapshots take more than
``max_events_gb`` the oldest events go. One analyst's uploads never delete anyone's evidence.
Every removal is counted."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import one_line
from core.ratelog import RateLimitedLog
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from service.config import ApiConfig
from service.db.models import EventAudio, EventSnapshot, MediaFile, StoredEvent, utcnow

log = logging.getLogger(__name__)
RETENTION = Subject.service("retention")
_FINISHED = ("done", "failed")


def media_bytes(config: ApiConfig) -> int:
    """What uploaded files take on disk (partial ones included: they are on the disk too)."""
    if not config.media_dir.is_dir():
        return 0
    return sum(p.stat().st_size for p in config.media_dir.iterdir() if p.is_file())


def event_bytes(sessions: sessionmaker[Session]) -> int:
    """What events' snapshots and sound take in the database, whichever database it is."""
    with sessions() as session:
        pictures = session.scalar(select(func.coalesce(func.sum(func.length(EventSnapshot.jpeg)), 0))) or 0
        sound = session.scalar(select(func.coalesce(func.sum(func.length(EventAudio.wav)), 0))) or 0
        return int(pictures) + int(sound)


def prune(
    config: ApiConfig, sessions: sessionmaker[Session], monitor: PerformanceMonitor, now: dt.datetime | None = None
) -> Counter[str]:
    now = now or utcnow()
    removed: Counter[str] = Counter()
    rc = config.retention
    with sessions() as session, session.begin():
        result = session.execute(
            delete(StoredEvent).where(StoredEvent.started_at < now - dt.timedelta(days=rc.events_days))
        )
        removed["events/age"] += result.rowcount or 0
        old = session.scalars(
            select(MediaFile).where(
                MediaFile.status.in_(_FINISHED), MediaFile.created_at < now - dt.timedelta(days=rc.media_days)
            )
        ).all()
        for media in old:
            _remove_media(config, session, media)
        removed["media/age"] += len(old)
    while media_bytes(config) > rc.max_media_gb * 1e9:
        with sessions() as session, session.begin():
            media = session.scalars(
                select(MediaFile).where(MediaFile.status.in_(_FINISHED)).order_by(MediaFile.created_at).limit(1)
            ).first()
            if media is None:
                break  # only queued and running files left: uploads are refused by the quota instead
            _remove_media(config, session, media)
            removed["media/disk"] += 1
    while (excess := event_bytes(sessions) - rc.max_events_gb * 1e9) > 0:
        with sessions() as session, session.begin():
            pictures = (
                select(EventSnapshot.event_id.label("id"), func.length(EventSnapshot.jpeg).label("size"))
                .union_all(select(EventAudio.event_id, func.length(EventAudio.wav)))
                .subquery()
            )
            sizes = session.execute(
                select(StoredEvent.id, func.sum(pictures.c.size))
                .join(pictures, pictures.c.id == StoredEvent.id)
                .group_by(StoredEvent.id, StoredEvent.started_at)
                .order_by(StoredEvent.started_at)
                .limit(500)
            ).all()
            oldest: list[str] = []
            for event_id, size in sizes:  # the oldest, just enough of them to be under the budget
                oldest.append(event_id)
                excess -= size or 0
                if excess <= 0:
                    break
            if not oldest:
                break
            session.execute(delete(StoredEvent).where(StoredEvent.id.in_(oldest)))
            removed["events/disk"] += len(oldest)
    for key, n in removed.items():
        if n:
            what, reason = key.split("/")
            monitor.count(RETENTION, Count.PRUNED, n, what=what, reason=reason)
    if sum(removed.values()):
        log.info("retention removed %s", ", ".join(f"{n} {k}" for k, n in removed.items() if n))
    return removed


def _remove_media(config: ApiConfig, session: Session, media: MediaFile) -> None:
    (config.data_dir / media.storage_path).unlink(missing_ok=True)
    session.delete(media)


async def run_retention(config: ApiConfig, sessions: sessionmaker[Session], monitor: PerformanceMonitor) -> None:
    """Prune now and then every ``interval_s``; a failure (the database away) is logged and retried."""
    problems = RateLimitedLog(log, logging.ERROR)
    while True:
        try:
            await asyncio.to_thread(prune, config, sessions, monitor)
            problems.clear("prune", "retention: pruning works again")
        except Exception as exc:  # noqa: BLE001 -- retention must outlive a database restart
            problems("prune", "retention failed (will retry in %.0f s): %s", config.retention.interval_s, one_line(exc))
        await asyncio.sleep(config.retention.interval_s)
