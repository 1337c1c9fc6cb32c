"""Retention: events (and their snapshots) older than ``events_days``, finished media older than
``media_days``, then, while media files and the SQLite file take more than ``max_disk_gb``, the
oldest finished media and then the oldest events. Every removal is counted."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import one_line
from core.ratelog import RateLimitedLog
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from service.config import ApiConfig
from service.db.models import EventSnapshot, MediaFile, StoredEvent, utcnow

log = logging.getLogger(__name__)
RETENTION = Subject.service("retention")
_FINISHED = ("done", "failed")


def disk_bytes(config: ApiConfig, sessions: sessionmaker[Session]) -> int:
    """What dfstream keeps on this disk: media files and, for SQLite, the database's pages in use
    (pages freed by deletes are reused, not given back: counting the file would never shrink)."""
    total = sum(p.stat().st_size for p in config.media_dir.glob("*") if p.is_file()) if config.media_dir.is_dir() else 0
    if config.database is None:
        with sessions() as session:
            pragma = session.connection().exec_driver_sql
            pages = pragma("PRAGMA page_count").scalar_one() - pragma("PRAGMA freelist_count").scalar_one()
            total += pages * pragma("PRAGMA page_size").scalar_one()
    return total


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
    budget = int(rc.max_disk_gb * 1e9)
    while disk_bytes(config, sessions) > budget:
        with sessions() as session, session.begin():
            media = session.scalars(
                select(MediaFile).where(MediaFile.status.in_(_FINISHED)).order_by(MediaFile.created_at).limit(1)
            ).first()
            if media is not None:
                _remove_media(config, session, media)
                removed["media/disk"] += 1
                continue
            oldest = session.scalars(
                select(StoredEvent.id).join(EventSnapshot).order_by(StoredEvent.started_at).limit(100)
            ).all()
            if not oldest:
                break  # nothing left that retention may remove
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
