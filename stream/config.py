"""What a stream is, as the configuration file says it: one validated model per stream."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.strict import StrictModel

from .urls import SourceKind, classify


class StreamConfig(StrictModel):
    id: str = Field(min_length=1, max_length=64)
    url: str
    transport: Literal["tcp", "udp"] = "tcp"  # RTSP only; TCP survives lossy networks and NAT
    pace: Literal["realtime", "asap"] = "realtime"  # files only: at their frame rate, or as fast as possible
    loop: bool = False  # files only
    fps: float | None = Field(None, gt=0)  # cap: frames beyond it are skipped (and counted)
    queue_size: int = Field(4, ge=1, le=1024)  # decoded frames waiting for the pipeline
    open_timeout_s: float = Field(10.0, gt=0)
    stall_timeout_s: float = Field(10.0, gt=0)
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    options: dict[str, str] = Field(default_factory=dict)  # extra FFmpeg options, passed through
    # auto: the stream's sound is judged when it has an audio track and a voice model is configured
    audio: Literal["auto", "off"] = "auto"

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        # ids become MQTT topic levels and metric labels: no wildcards, separators or spaces
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"stream id {value!r} may hold only letters, digits, '_', '.' and '-'")
        return value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        classify(value)  # raises ValueError naming the scheme
        return value

    @model_validator(mode="after")
    def _verify_retry(self) -> StreamConfig:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"retry_initial_s ({self.retry_initial_s}) is greater than retry_max_s ({self.retry_max_s})"
            )
        return self

    @property
    def kind(self) -> SourceKind:
        return classify(self.url)

    @property
    def live(self) -> bool:
        """Live sources drop the oldest frame when behind; a file read as fast as possible waits instead."""
        return self.kind not in ("file", "sample") or self.pace == "realtime"
