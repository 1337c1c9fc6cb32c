"""Tables, as SQLAlchemy 2 typed ORM models. Times are timezone-aware UTC; JSON columns hold the
per-model score maps (their keys are the configured detectors, which change without a migration)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.errors import InputError

ROLES = ("admin", "analyst", "viewer")
MEDIA_STATUSES = ("queued", "running", "done", "failed")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise InputError("naive datetime: dfstream stores UTC only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UtcDateTime, dict[str, Any]: JSON, list[str]: JSON, list[float]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, with its parameters
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    """A bearer token: from a login (``kind`` login) or made by a user for a script (``kind`` api).
    Only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship(back_populates="tokens")


class MediaFile(Base):
    """An uploaded file, what PyAV found in it, and its analysis (status, progress, the verdict)."""

    __tablename__ = "media_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    original_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    container: Mapped[str] = mapped_column(String(64))
    codec: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float | None] = mapped_column(Float)
    frames: Mapped[int | None] = mapped_column(Integer)
    storage_path: Mapped[str] = mapped_column(String(255))  # relative to data_dir, chosen by the server
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    # analyses started; one that ends (done, failed, or stopped with the server) gives its start back
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str | None] = mapped_column(String(16))
    fake_probability: Mapped[float | None] = mapped_column(Float)
    uncertainty: Mapped[float | None] = mapped_column(Float)
    aggregation: Mapped[str | None] = mapped_column(String(16))
    frames_scored: Mapped[int | None] = mapped_column(Integer)
    models: Mapped[dict[str, Any] | None] = mapped_column()  # each detector's file-level P(fake)
    # the voice's result when voice models are configured: verdict (real, fake, uncertain, no_speech,
    # no_audio), spoof_probability, models, windows [{start, end, speech, spoof_probability}], or error
    voice: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    results: Mapped[list[FaceResult]] = relationship(
        back_populates="media", cascade="all, delete-orphan", order_by="(FaceResult.frame, FaceResult.face)"
    )


class FaceResult(Base):
    """One face in one sampled frame of a media file: every detector's P(fake) and the fusion."""

    __tablename__ = "detection_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media_files.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)  # index in the decoded video
    face: Mapped[int] = mapped_column(Integer)  # 0: the largest face of the frame
    bbox: Mapped[list[float]] = mapped_column()  # x1, y1, x2, y2 in frame pixels
    models: Mapped[dict[str, Any]] = mapped_column()
    fake_probability: Mapped[float] = mapped_column(Float)  # fused
    uncertainty: Mapped[float | None] = mapped_column(Float)

    media: Mapped[MediaFile] = relationship(back_populates="results")

    __table_args__ = (Index("ix_detection_results_media_frame", "media_id", "frame", "face"),)


class StoredEvent(Base):
    """A live episode: one track of one stream labelled fake (or the stream's voice: ``modality``
    voice, track 0), from entering that label to leaving it."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # chosen by the store sink, so it can retry
    stream: Mapped[str] = mapped_column(String(128))
    modality: Mapped[str] = mapped_column(String(8), default="face", server_default="face")
    track_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()
    # label (it left fake), track_gone, sound_gone, stream_down, shutdown, restart (left open by a run that died)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    peak_probability: Mapped[float] = mapped_column(Float)
    peak_at: Mapped[dt.datetime] = mapped_column()
    mean_probability: Mapped[float] = mapped_column(Float)
    verdicts: Mapped[int] = mapped_column(Integer)
    models_at_peak: Mapped[dict[str, Any]] = mapped_column()
    models_mean: Mapped[dict[str, Any]] = mapped_column()
    bbox_at_peak: Mapped[list[float]] = mapped_column()
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_events_started_id", "started_at", "id"),
        Index("ix_events_stream_started", "stream", "started_at"),
        Index("ix_events_open", "stream", "ended_at"),
    )


class EventAudio(Base):
    """A voice event's evidence: the sound of its peak window, as a 16 kHz mono WAV file."""

    __tablename__ = "event_audio"

    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    wav: Mapped[bytes] = mapped_column(LargeBinary)
    taken_at: Mapped[dt.datetime] = mapped_column()


class EventSnapshot(Base):
    """A JPEG of an event at its peak: ``kind`` face (the crop) or frame (the whole frame)."""

    __tablename__ = "event_snapshots"

    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    taken_at: Mapped[dt.datetime] = mapped_column()
