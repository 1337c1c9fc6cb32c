"""Events: live episodes of a track labelled fake, with filters, cursor pages, snapshots, ack."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from service.auth import Principal
from service.db.models import EventAudio, EventSnapshot, StoredEvent, User, utcnow
from service.deps import db, require

router = APIRouter(tags=["events"])


class EventOut(BaseModel):
    id: str
    stream: str
    modality: str  # face, or voice (track_id 0, no box; its evidence is audio_url)
    track_id: int
    label: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    # label, track_gone, sound_gone, stream_down, shutdown, restart (left open by a run that died)
    end_reason: str | None
    ongoing: bool
    peak_probability: float
    peak_at: dt.datetime
    mean_probability: float
    verdicts: int
    models_at_peak: dict[str, float]
    models_mean: dict[str, float]
    bbox_at_peak: list[float]
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    face_url: str | None  # a face event's snapshots
    frame_url: str | None
    audio_url: str | None  # a voice event's peak window, WAV


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


def _out(event: StoredEvent, acknowledged_by: str | None) -> EventOut:
    base = f"/api/v1/events/{event.id}"
    return EventOut(
        id=event.id,
        stream=event.stream,
        modality=event.modality,
        track_id=event.track_id,
        label=event.label,
        started_at=event.started_at,
        ended_at=event.ended_at,
        end_reason=event.end_reason,
        ongoing=event.ended_at is None,
        peak_probability=event.peak_probability,
        peak_at=event.peak_at,
        mean_probability=event.mean_probability,
        verdicts=event.verdicts,
        models_at_peak=event.models_at_peak,
        models_mean=event.models_mean,
        bbox_at_peak=event.bbox_at_peak,
        acknowledged_by=acknowledged_by,
        acknowledged_at=event.acknowledged_at,
        face_url=f"{base}/face.jpg" if event.modality == "face" else None,
        frame_url=f"{base}/frame.jpg" if event.modality == "face" else None,
        audio_url=f"{base}/audio.wav" if event.modality == "voice" else None,
    )


def _cursor(event: StoredEvent) -> str:
    raw = json.dumps([event.started_at.isoformat(), event.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(text: str) -> tuple[dt.datetime, str]:
    try:
        started, event_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        when = dt.datetime.fromisoformat(started)
        if when.tzinfo is None or not isinstance(event_id, str):
            raise ValueError
        return when, event_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPException(400, "cursor: not a cursor this server gave (pass next_cursor back as it is)") from None


def _aware(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, f"{name}: give a time zone (2026-11-24T20:00:00Z) or epoch seconds")
    return value


@router.get("/events", response_model=EventPage, summary="Events, newest first, filtered, one page at a time")
def list_events(
    stream: str | None = Query(None, max_length=128),
    label: Literal["fake", "real", "uncertain"] | None = None,
    modality: Literal["face", "voice"] | None = None,
    since: dt.datetime | None = Query(
        None, description="events that started at or after (ISO 8601 with zone, or epoch seconds)"
    ),
    until: dt.datetime | None = Query(None, description="events that started before"),
    acknowledged: bool | None = None,
    cursor: str | None = Query(None, max_length=512),
    limit: int = Query(50, ge=1, le=500),
    _: Principal = Depends(require("read")),
    session: Session = Depends(db),
) -> EventPage:
    since, until = _aware(since, "since"), _aware(until, "until")
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    query = select(StoredEvent, User.username).outerjoin(User, User.id == StoredEvent.acknowledged_by)
    if stream is not None:
        query = query.where(StoredEvent.stream == stream)
    if label is not None:
        query = query.where(StoredEvent.label == label)
    if modality is not None:
        query = query.where(StoredEvent.modality == modality)
    if since is not None:
        query = query.where(StoredEvent.started_at >= since)
    if until is not None:
        query = query.where(StoredEvent.started_at < until)
    if acknowledged is not None:
        query = query.where(
            StoredEvent.acknowledged_at.is_not(None) if acknowledged else StoredEvent.acknowledged_at.is_(None)
        )
    if cursor is not None:
        at, last_id = _parse_cursor(cursor)
        query = query.where(
            or_(StoredEvent.started_at < at, and_(StoredEvent.started_at == at, StoredEvent.id < last_id))
        )
    rows = session.execute(query.order_by(StoredEvent.started_at.desc(), StoredEvent.id.desc()).limit(limit + 1)).all()
    items = [_out(event, who) for event, who in rows[:limit]]
    page = EventPage(items=items, next_cursor=_cursor(rows[limit - 1][0]) if len(rows) > limit else None)
    # serialised by the model itself: FastAPI would validate the page again (measured: 6.7 → 6.1 ms a request)
    return Response(page.model_dump_json(), media_type="application/json")  # type: ignore[return-value]


def _get(session: Session, event_id: str) -> StoredEvent:
    event = session.get(StoredEvent, event_id) if len(event_id) <= 32 else None
    if event is None:
        raise HTTPException(404, f"no event {event_id!r}")
    return event


@router.get("/events/{event_id}", response_model=EventOut, summary="One event")
def get_event(event_id: str, _: Principal = Depends(require("read")), session: Session = Depends(db)) -> EventOut:
    event = _get(session, event_id)
    who = session.get(User, event.acknowledged_by) if event.acknowledged_by is not None else None
    return _out(event, who.username if who else None)


def _snapshot(session: Session, event_id: str, kind: str) -> Response:
    _get(session, event_id)
    snap = session.get(EventSnapshot, (event_id, kind))
    if snap is None:
        raise HTTPException(404, f"event {event_id}: no {kind} snapshot yet (it is taken at the peak, within a second)")
    return Response(snap.jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=5"})


@router.get(
    "/events/{event_id}/face.jpg",
    response_class=Response,
    summary="The face at the event's peak (JPEG)",
    responses={200: {"content": {"image/jpeg": {}}}},
)
def face_jpg(
    event_id: str, _: Principal = Depends(require("read", in_url=True)), session: Session = Depends(db)
) -> Response:
    return _snapshot(session, event_id, "face")


@router.get(
    "/events/{event_id}/frame.jpg",
    response_class=Response,
    summary="The whole frame at the event's peak (JPEG)",
    responses={200: {"content": {"image/jpeg": {}}}},
)
def frame_jpg(
    event_id: str, _: Principal = Depends(require("read", in_url=True)), session: Session = Depends(db)
) -> Response:
    return _snapshot(session, event_id, "frame")


@router.get(
    "/events/{event_id}/audio.wav",
    response_class=Response,
    summary="A voice event's evidence: the sound of its peak window (16 kHz mono WAV)",
    responses={200: {"content": {"audio/wav": {}}}},
)
def audio_wav(
    event_id: str, _: Principal = Depends(require("read", in_url=True)), session: Session = Depends(db)
) -> Response:
    event = _get(session, event_id)
    sound = session.get(EventAudio, event_id)
    if sound is None:
        what = "a face event has no sound" if event.modality == "face" else "it is kept at the peak, within a second"
        raise HTTPException(404, f"event {event_id}: no audio ({what})")
    return Response(sound.wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=5"})


@router.post(
    "/events/{event_id}/ack", response_model=EventOut, summary="Acknowledge an event (once; later calls keep the first)"
)
def acknowledge(event_id: str, who: Principal = Depends(require("write")), session: Session = Depends(db)) -> EventOut:
    event = _get(session, event_id)
    if event.acknowledged_at is None:
        event.acknowledged_by, event.acknowledged_at = who.user_id, utcnow()
        session.commit()
    by = session.get(User, event.acknowledged_by) if event.acknowledged_by is not None else None
    return _out(event, by.username if by else None)
