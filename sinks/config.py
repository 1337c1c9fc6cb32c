"""The ``sinks`` section of the configuration."""

from __future__ import annotations

from pipeline.runtime.config import DeliveryConfig

from .jsonl import JsonlConfig
from .mqtt import MqttConfig
from .prometheus import PrometheusConfig


class SinksConfig(DeliveryConfig):
    jsonl: JsonlConfig | None = None
    mqtt: MqttConfig | None = None
    prometheus: PrometheusConfig | None = None
