"""The ``sinks`` section of the configuration."""

from __future__ import annotations

from pipeline.runtime.config import DeliveryConfig

from .jsonl import JsonlConfig
from .mqtt import MqttConfig
from .prometheus import PrometheusConfig
from .store import StoreConfig
from .video import VideoConfig


class SinksConfig(DeliveryConfig):
    jsonl: JsonlConfig | None = None
    mqtt: MqttConfig | None = None
    prometheus: PrometheusConfig | None = None
    # live events into the api section's database; `dfstream serve` always has it (these are its defaults)
    store: StoreConfig | None = None
    video: VideoConfig | None = None  # the annotated frames re-encoded and pushed to a server, or to files
