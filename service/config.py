"""The ``api`` section of the configuration (used by ``dfstream serve``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core.strict import StrictModel


class RetentionConfig(StrictModel):
    events_days: float = Field(30, gt=0)
    media_days: float = Field(7, gt=0)
    max_disk_gb: float = Field(20, gt=0)  # media files and the SQLite file together
    interval_s: float = Field(600, gt=0)  # how often retention runs


class AnalysisConfig(StrictModel):
    frames: int = Field(32, ge=1)  # evenly spaced frames per video, as `dfstream eval --frames`
    aggregation: str = "mean"  # how frame scores make the file's P(fake): mean, confident, majority
    workers: int = Field(1, ge=1, le=8)  # jobs analysed at once (they share the CPU with the live streams)
    queue: int = Field(1000, ge=1)  # jobs waiting; an upload beyond it is refused with 503

    @field_validator("aggregation")
    @classmethod
    def _known(cls, value: str) -> str:
        from pipeline.evaluation.metrics import AGGREGATIONS

        if value not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {value!r} (known: {', '.join(AGGREGATIONS)})")
        return value


class LoginLimitConfig(StrictModel):
    failures: int = Field(5, ge=1)  # failed logins per username or client address ...
    window_s: float = Field(300, gt=0)  # ... within this many seconds, then 429 until the window passes


class ApiConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port
    # SQLAlchemy URL; None: SQLite in data_dir. PostgreSQL: postgresql+psycopg://user:${PASSWORD}@host/db
    database: str | None = None
    data_dir: Path = Path("dfstream-data")
    max_upload_mb: float = Field(512, gt=0)
    # every other request's body, refused (413) before it is read or its token looked at
    max_body_kb: float = Field(1024, gt=0)
    token_ttl_hours: float = Field(12, gt=0)  # tokens from /auth/token; API tokens choose their own ...
    max_token_days: float = Field(90, gt=0, le=3650)  # ... up to this: no token lives for ever
    cors_origins: list[str] = Field(default_factory=list)  # none: CORS off
    feed_queue: int = Field(1000, ge=1)  # events a slow feed client may lag before its oldest are dropped
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    login_limit: LoginLimitConfig = Field(default_factory=LoginLimitConfig)

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data_dir / 'dfstream.db').resolve()}"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"
