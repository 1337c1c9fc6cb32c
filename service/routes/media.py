"""Media: upload (streamed, capped, probed by PyAV), list, one, its results, delete."""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from core.errors import QueueFullError, UploadError
from service.auth import Principal
from service.db.models import MediaFile, User
from service.deps import Service, db, get_service, require
from service.uploads import FIELD, check_video, quota_left, receive

log = logging.getLogger("dfstream.api")
router = APIRouter(tags=["media"])


class MediaOut(BaseModel):
    id: int
    owner: str | None
    original_name: str
    sha256: str
    size: int
    container: str
    codec: str
    width: int
    height: int
    duration_s: float | None
    frames: int | None
    status: str
    progress: float
    attempts: int  # analyses started (``analysis.max_attempts`` of them without an end: failed)
    error: str | None
    verdict: str | None
    fake_probability: float | None
    # when voice models are configured: {verdict (real, fake, uncertain, no_speech, no_audio),
    # spoof_probability, models, windows: [{start, end, speech, spoof_probability}]}, or {error}
    voice: dict | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class FaceRow(BaseModel):
    frame: int
    face: int
    bbox: list[float]
    models: dict[str, float]
    fake_probability: float
    uncertainty: float | None


class ResultsOut(BaseModel):
    media_id: int
    verdict: str
    fake_probability: float
    uncertainty: float | None
    aggregation: str
    frames_scored: int
    models: dict[str, float]
    rows: list[FaceRow]


def _out(media: MediaFile, service: Service, owner: str | None) -> MediaOut:
    progress = service.analyzer.progress.get(media.id, media.progress) if media.status == "running" else media.progress
    return MediaOut(
        id=media.id,
        owner=owner,
        original_name=media.original_name,
        sha256=media.sha256,
        size=media.size,
        container=media.container,
        codec=media.codec,
        width=media.width,
        height=media.height,
        duration_s=media.duration_s,
        frames=media.frames,
        status=media.status,
        progress=round(progress, 3),
        attempts=media.attempts or 0,
        error=media.error,
        verdict=media.verdict,
        fake_probability=media.fake_probability,
        voice=media.voice,
        created_at=media.created_at,
        finished_at=media.finished_at,
    )


def _get(session: Session, media_id: int) -> MediaFile:
    media = session.get(MediaFile, media_id)
    if media is None:
        raise HTTPException(404, f"no media {media_id}")
    return media


def _owner(session: Session, media: MediaFile) -> str | None:
    return (
        session.scalar(select(User.username).where(User.id == media.owner_id)) if media.owner_id is not None else None
    )


@router.post(
    "/media",
    status_code=201,
    response_model=MediaOut,
    summary="Upload a video (multipart field 'file'); it is analysed in the background",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FIELD],
                        "properties": {FIELD: {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
)
async def upload(
    request: Request, who: Principal = Depends(require("write")), service: Service = Depends(get_service)
) -> MediaOut:
    config = service.config
    if not service.analyzer.has_room():  # refused before a byte is stored: nothing waits that was not accepted
        raise HTTPException(
            503, f"{config.analysis.queue} analyses are waiting; try again later", {"Retry-After": "30"}
        )
    quota = int(config.upload_quota_gb * 1e9)

    def room() -> int:
        with service.sessions() as session:
            return quota_left(session, who.user_id, quota)

    left = await run_in_threadpool(room)
    declared = request.headers.get("content-length", "")
    if (
        declared.isascii() and declared.isdigit() and int(declared) > left + 1_000_000
    ):  # the multipart framing is not the file
        raise UploadError(413, _over_quota(config.upload_quota_gb, left))
    received = await receive(request, config.media_dir, int(config.max_upload_mb * 1_000_000))
    try:
        found = await run_in_threadpool(check_video, received.path, config.media)
        final = received.path.with_suffix("")  # the server's name; the client's name is only shown

        def record() -> MediaOut:
            with service.upload_lock, service.sessions() as session:  # two uploads of one user: one check at a time
                room_left = quota_left(session, who.user_id, quota)
                if received.size > room_left:
                    raise UploadError(413, _over_quota(config.upload_quota_gb, room_left))
                received.path.rename(final)
                media = MediaFile(
                    owner_id=who.user_id,
                    original_name=received.original_name,
                    sha256=received.sha256,
                    size=received.size,
                    container=found.container,
                    codec=found.codec,
                    width=found.width,
                    height=found.height,
                    duration_s=found.duration_s,
                    frames=found.frames,
                    storage_path=str(final.relative_to(config.data_dir)),
                    status="queued",
                )
                session.add(media)
                session.commit()
                return _out(media, service, who.username)

        out = await run_in_threadpool(record)
    except BaseException:
        received.path.unlink(missing_ok=True)
        received.path.with_suffix("").unlink(missing_ok=True)
        raise
    try:
        service.analyzer.submit(out.id)
    except QueueFullError as exc:
        # the queue filled while this one streamed in: it is not kept, so nothing refused waits in the database

        def forget() -> None:
            with service.sessions() as session:
                media = session.get(MediaFile, out.id)
                if media is not None:
                    session.delete(media)
                    session.commit()
            received.path.with_suffix("").unlink(missing_ok=True)  # the stored file

        await run_in_threadpool(forget)
        raise HTTPException(503, f"not stored: {exc}", {"Retry-After": "30"}) from None
    log.info(
        "media %d: %s (%d bytes, %s/%s) uploaded by %s",
        out.id,
        out.original_name,
        out.size,
        out.container,
        out.codec,
        who.username,
    )
    return out


def _over_quota(quota_gb: float, left: int) -> str:
    return (
        f"over your upload quota of {quota_gb:g} GB (api.upload_quota_gb): {max(0, left) / 1e6:.0f} MB left; "
        "delete media you no longer need"
    )


@router.get("/media", response_model=list[MediaOut], summary="Uploaded media, newest first")
def list_media(
    mine: bool = False,
    status: str | None = Query(None, pattern="^(queued|running|done|failed)$"),
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Depends(require("read")),
    session: Session = Depends(db),
    service: Service = Depends(get_service),
) -> list[MediaOut]:
    query = (
        select(MediaFile, User.username)
        .outerjoin(User, User.id == MediaFile.owner_id)
        .order_by(MediaFile.id.desc())
        .limit(limit)
    )
    if mine:
        query = query.where(MediaFile.owner_id == who.user_id)
    if status is not None:
        query = query.where(MediaFile.status == status)
    return [_out(media, service, owner) for media, owner in session.execute(query)]


@router.get("/media/{media_id}", response_model=MediaOut, summary="One media file, with its status and progress (0..1)")
def get_media(
    media_id: int,
    _: Principal = Depends(require("read")),
    session: Session = Depends(db),
    service: Service = Depends(get_service),
) -> MediaOut:
    media = _get(session, media_id)
    return _out(media, service, _owner(session, media))


@router.get(
    "/media/{media_id}/results", response_model=ResultsOut, summary="The verdict for the file and every scored face"
)
def get_results(media_id: int, _: Principal = Depends(require("read")), session: Session = Depends(db)) -> ResultsOut:
    media = _get(session, media_id)
    if media.status == "failed":
        raise HTTPException(409, f"media {media_id}: analysis failed: {media.error}")
    if media.status != "done":
        raise HTTPException(
            409, f"media {media_id}: not analysed yet (status {media.status}, progress {media.progress:.2f})"
        )
    rows = [
        FaceRow(
            frame=r.frame,
            face=r.face,
            bbox=r.bbox,
            models=r.models,
            fake_probability=r.fake_probability,
            uncertainty=r.uncertainty,
        )
        for r in media.results
    ]
    return ResultsOut(
        media_id=media.id,
        verdict=media.verdict or "uncertain",
        fake_probability=media.fake_probability or 0.0,
        uncertainty=media.uncertainty,
        aggregation=media.aggregation or "",
        frames_scored=media.frames_scored or 0,
        models=media.models or {},
        rows=rows,
    )


@router.delete(
    "/media/{media_id}", status_code=204, summary="Delete a media file and its results (yours; an admin: any)"
)
def delete_media(
    media_id: int,
    who: Principal = Depends(require("write")),
    session: Session = Depends(db),
    service: Service = Depends(get_service),
) -> None:
    media = _get(session, media_id)
    if media.owner_id != who.user_id and "admin" not in who.scopes:
        raise HTTPException(403, f"media {media_id} belongs to another user; only an admin may delete it")
    if media.status == "running":
        raise HTTPException(409, f"media {media_id} is being analysed; delete it when it is done")
    session.delete(media)
    session.commit()
    (service.config.data_dir / media.storage_path).unlink(missing_ok=True)
