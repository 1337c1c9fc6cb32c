"""The ``sinks`` section of the configuration."""

from __future__ import annotations

from pydantic import Field

from pipeline.configbase import StrictModel

from .jsonl import JsonlConfig
from .mqtt import MqttConfig
from .prometheus import PrometheusConfig


class SinksConfig(StrictModel):
    jsonl: JsonlConfig | None = None
    mqtt: MqttConfig | None = None
    prometheus: PrometheusConfig | None = None
    outbox_capacity: int = Field(1000, ge=1)  # events waiting per sink before the oldest is dropped
    drain_timeout_s: float = Field(3.0, ge=0.0)  # at shutdown, how long the sinks may take to deliver what is queued
