"""The ``sinks`` section of the configuration."""

from __future__ import annotations

from pathlib import Path

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

    def with_spool_defaults(self, data_dir: Path, durable: bool) -> SinksConfig:
        """The spools' defaults filled in: ``durable`` where the config leaves it open (``serve``:
        on, ``run``: off), their files under ``data_dir/spool``."""
        if self.mqtt is None:
            return self
        outbox = self.mqtt.outbox
        filled = outbox.model_copy(
            update={
                "durable": durable if outbox.durable is None else outbox.durable,
                "path": outbox.path or data_dir / "spool" / "mqtt.sqlite3",
            }
        )
        return self.model_copy(update={"mqtt": self.mqtt.model_copy(update={"outbox": filled})})
