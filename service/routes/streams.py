"""Streams: the configured streams as the running runtime sees them now."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from core.redaction import redact
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.runtime.events import VoiceVerdict
from service.auth import Principal
from service.deps import Service, get_service, require

router = APIRouter(tags=["streams"])


class TrackOut(BaseModel):
    track_id: int
    label: str
    fake_probability: float
    uncertainty: float
    bbox: list[float]
    models: dict[str, float]
    updated_at: float


class VoiceOut(BaseModel):
    label: str  # the last voice verdict's: real, fake, uncertain, no_speech
    spoof_probability: float | None
    speech: float  # share of its window that was speech
    models: dict[str, float]
    window_end_pts: float | None  # stream clock, like a verdict's frame_pts
    updated_at: float


class StreamOut(BaseModel):
    id: str
    url: str  # its password hidden
    status: str  # online, reconnecting, offline, or starting before the first word from the source
    reason: str | None
    up: bool
    label: str  # no_face, real, fake, uncertain
    fake_probability: float | None
    tracks: list[TrackOut]
    voice: str | None  # no_audio, no_speech, real, fake, uncertain; None: the voice is not judged
    spoof_probability: float | None
    last_voice: VoiceOut | None  # the newest voice verdict
    looks_fake: list[str]  # "face", "voice": what looks fake now
    frames_decoded: int
    updated_at: float | None


def _stream(service: Service, stream_id: str) -> StreamOut:
    config = service.stream(stream_id)
    view = service.feed.streams.get(stream_id)
    subject = Subject.stream(stream_id)
    status, state = (view.status, view.state) if view is not None else (None, None)
    tracks = []
    if view is not None and state is not None:
        for track_id, verdict in sorted(view.tracks.items()):
            tracks.append(
                TrackOut(
                    track_id=track_id,
                    label=state.tracks.get(track_id, verdict.label),
                    fake_probability=verdict.fake_probability,
                    uncertainty=verdict.uncertainty,
                    bbox=list(verdict.bbox),
                    models=verdict.models,
                    updated_at=verdict.ts,
                )
            )
    return StreamOut(
        id=stream_id,
        url=redact(config.url),
        status=status.status if status else "starting",
        reason=status.reason if status else None,
        up=service.monitor.gauge(subject, Gauge.UP) == 1,
        label=state.label if state else "no_face",
        fake_probability=state.fake_probability if state else None,
        tracks=tracks,
        voice=state.voice if state else None,
        spoof_probability=state.spoof_probability if state else None,
        last_voice=_voice(view.voice) if view is not None and view.voice is not None else None,
        looks_fake=state.looks_fake if state else [],
        frames_decoded=int(service.monitor.counter(subject, Count.FRAMES_DECODED) or 0),
        updated_at=max(
            (t for t in (status.ts if status else None, state.updated_at if state else None) if t is not None),
            default=None,
        ),
    )


def _voice(verdict: VoiceVerdict) -> VoiceOut:
    return VoiceOut(
        label=verdict.label,
        spoof_probability=verdict.spoof_probability,
        speech=verdict.speech,
        models=verdict.models,
        window_end_pts=verdict.window_end_pts,
        updated_at=verdict.ts,
    )


@router.get(
    "/streams", response_model=list[StreamOut], summary="Every configured stream: status, label and live tracks"
)
async def list_streams(
    _: Principal = Depends(require("read")), service: Service = Depends(get_service)
) -> list[StreamOut]:
    return [_stream(service, s.id) for s in service.streams]


@router.get("/streams/{stream_id}", response_model=StreamOut, summary="One stream")
async def get_stream(
    stream_id: str, _: Principal = Depends(require("read")), service: Service = Depends(get_service)
) -> StreamOut:
    return _stream(service, stream_id)
