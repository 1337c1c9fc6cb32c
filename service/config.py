"""The ``api`` section of the configuration (used by ``dfstream serve``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from core.strict import StrictModel
from stream.calls import CallPolicy, IceServerConfig


class RetentionConfig(StrictModel):
    """Two budgets, each pruned on its own: uploads filling theirs never delete an event."""

    events_days: float = Field(30, gt=0)
    media_days: float = Field(7, gt=0)
    max_media_gb: float = Field(20, gt=0)  # uploaded files; past it the oldest finished go first
    max_events_gb: float = Field(5, gt=0)  # events' snapshots; past it the oldest events go first
    interval_s: float = Field(600, gt=0)  # how often retention runs

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "max_disk_gb" in data:
            raise ValueError("max_disk_gb is now two budgets: max_media_gb (uploads) and max_events_gb (events)")
        return data


class AnalysisConfig(StrictModel):
    frames: int = Field(32, ge=1)  # evenly spaced frames per video, as `dfstream eval --frames`
    aggregation: str = "mean"  # how frame scores make the file's P(fake): mean, confident, majority
    workers: int = Field(1, ge=1, le=8)  # jobs analysed at once (they share the CPU with the live streams)
    queue: int = Field(1000, ge=1)  # jobs waiting; an upload beyond it is refused with 503
    job_timeout_s: float = Field(900, gt=0)  # one job's wall-clock limit; past it the job fails, named so
    # a job started this many times without finishing (the process died under it each time: a file
    # that kills the decoder, or the memory) is failed with that reason instead of retried for ever
    max_attempts: int = Field(2, ge=1)
    rescan_s: float = Field(30, gt=0)  # how often `queued` rows the queue does not hold are picked up

    @field_validator("aggregation")
    @classmethod
    def _known(cls, value: str) -> str:
        from pipeline.evaluation.metrics import AGGREGATIONS

        if value not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {value!r} (known: {', '.join(AGGREGATIONS)})")
        return value


# demuxers an upload may be read with: no playlist (hls, concat, ...) or image sequence that would
# make FFmpeg open other files on this machine, no text formats it would read as pictures
UPLOAD_CONTAINERS = (
    "mov",
    "mp4",
    "matroska",
    "webm",
    "avi",
    "mpegts",
    "flv",
    "ogg",
    "mpeg",
    "asf",
    "gif",
    "h264",
    "hevc",
    "ivf",
    "nut",
)


class MediaLimitsConfig(StrictModel):
    """What an upload may be, checked when it is probed (before it is stored) and again as it is
    decoded: a header can lie."""

    max_width: int = Field(4096, ge=16)
    max_height: int = Field(4096, ge=16)
    max_fps: float = Field(240, gt=0)
    max_duration_s: float = Field(3600, gt=0)
    max_frames: int = Field(216_000, ge=1)  # an hour at 60 fps
    max_sample_rate: int = Field(192_000, ge=8000)  # of an audio stream, if it has one
    containers: list[str] = Field(default_factory=lambda: list(UPLOAD_CONTAINERS), min_length=1)

    @property
    def ffmpeg_options(self) -> dict[str, str]:
        """What FFmpeg may do when it opens an upload: read this one local file, with these demuxers."""
        return {"protocol_whitelist": "file", "format_whitelist": ",".join(self.containers)}


class ViewerLimitsConfig(StrictModel):
    """Long-lived responses held at once: /feed subscribers and live.mjpeg viewers."""

    feed_total: int = Field(200, ge=1)
    feed_per_user: int = Field(20, ge=1)
    live_total: int = Field(64, ge=1)
    live_per_user: int = Field(16, ge=1)  # the UI's grid opens one per stream


class FeedHistoryConfig(StrictModel):
    """What the feed keeps for clients that reconnect (Last-Event-ID) or open with replay_s, up to
    whichever bound comes first. A verdict is about 500 bytes, 700 kept: 50,000 take about 35 MB,
    two minutes of 400 verdicts a second (16 streams of one face at 25 fps)."""

    minutes: float = Field(2, ge=0, le=60)  # 0: none kept, every reconnect is a reset
    events: int = Field(50_000, ge=0, le=1_000_000)


class LoginLimitConfig(StrictModel):
    failures: int = Field(5, ge=1)  # failed logins per client address (then 429) or username (then slowed) ...
    window_s: float = Field(300, gt=0)  # ... within this many seconds
    max_delay_s: float = Field(10, ge=0)  # the longest a username under attack makes each attempt wait
    # password checks at once: argon2 takes 64 MiB and tens of milliseconds of CPU for each; they run
    # on threads of their own, and a login beyond `waiting` more is answered 503
    concurrent: int = Field(2, ge=1, le=16)
    waiting: int = Field(32, ge=0)


class CallsConfig(CallPolicy):
    """Calls pushed over WebRTC: the "Check a call" page and WHIP (``POST /whip/{stream}``); what a
    peer may send (``CallPolicy``: offers, candidates, picture size and rate) and, here, how many."""

    max_sessions: int = Field(4, ge=1)  # WebRTC sessions at once, page calls and WHIP pushes together; beyond: 503
    per_user: int = Field(2, ge=1)  # ... of them one user's; beyond: 429
    # ICE gathers host candidates (loopback and LAN); STUN / TURN servers add what a call across NAT needs
    ice_servers: list[IceServerConfig] = Field(default_factory=list)
    # a page call's stream: reconnecting after half of this without media, ended (offline) after all of it
    stall_timeout_s: float = Field(10.0, gt=0)
    open_timeout_s: float = Field(10.0, gt=0)  # from the answer to the first picture
    fps: float | None = Field(None, gt=0)  # a page call's frame cap (a 60 fps screen share costs twice a camera)
    linger_s: float = Field(60.0, ge=0)  # an ended page call stays listed (offline) this long, then goes
    # calls (page calls and WHIP pushes) one user may start a minute; beyond: 429 (each page call is
    # a stream of its own: 1,100 in 19 s once left 1,100 streams' state behind)
    starts_per_minute: int = Field(20, ge=1)


class ConnectionLimitsConfig(StrictModel):
    """What uvicorn lets in before any route runs."""

    max_connections: int = Field(512, ge=8)  # connections and requests at once; beyond: 503
    max_header_kb: float = Field(16, ge=1, le=1024)  # a request's line and headers together; beyond: 400
    keep_alive_s: float = Field(5, gt=0)  # an idle keep-alive connection is closed after this


class TlsConfig(StrictModel):
    """HTTPS served by dfstream itself (or leave it to a reverse proxy: README, "On a network")."""

    certfile: Path  # PEM, the chain included
    keyfile: Path
    key_password: str | None = None  # ${DFSTREAM_TLS_KEY_PASSWORD}

    @field_validator("certfile", "keyfile")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"{value}: no such file")
        return value


class ApiConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port
    # SQLAlchemy URL; None: SQLite in data_dir. PostgreSQL: postgresql+psycopg://user:${PASSWORD}@host/db
    database: str | None = None
    data_dir: Path = Path("dfstream-data")
    max_upload_mb: float = Field(512, gt=0)
    # what one user's uploads may take on disk together (those not yet pruned); beyond: 413
    upload_quota_gb: float = Field(5, gt=0)
    # every other request's body, refused (413) before it is read or its token looked at
    max_body_kb: float = Field(1024, gt=0)
    token_ttl_hours: float = Field(12, gt=0)  # tokens from /auth/token; API tokens choose their own ...
    max_token_days: float = Field(90, gt=0, le=3650)  # ... up to this: no token lives for ever
    # how often the feed and the live view check their token again: revoked, expired or its user
    # disabled, the response ends within this
    stream_recheck_s: float = Field(10, gt=0, le=30)
    # reverse proxies (addresses or networks) whose X-Forwarded-For names the client; from anyone
    # else the header is ignored, so a client cannot pick the address its logins are counted under
    trusted_proxies: list[str] = Field(default_factory=list)
    # who may embed the overlay in a frame (CSP frame-ancestors); OBS loads it as a page, not a frame,
    # so "'none'" suits OBS too. Every other page may be framed by nobody.
    overlay_frame_ancestors: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    cors_origins: list[str] = Field(default_factory=list)  # none: CORS off
    feed_queue: int = Field(1000, ge=1)  # events a slow feed client may lag before its oldest are dropped
    feed_history: FeedHistoryConfig = Field(default_factory=FeedHistoryConfig)
    connections: ConnectionLimitsConfig = Field(default_factory=ConnectionLimitsConfig)
    tls: TlsConfig | None = None
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    media: MediaLimitsConfig = Field(default_factory=MediaLimitsConfig)
    viewers: ViewerLimitsConfig = Field(default_factory=ViewerLimitsConfig)
    login_limit: LoginLimitConfig = Field(default_factory=LoginLimitConfig)
    calls: CallsConfig = Field(default_factory=CallsConfig)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or network (e.g. 10.0.0.5, 10.0.0.0/8)") from None
        return value

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data_dir / 'dfstream.db').resolve()}"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"
