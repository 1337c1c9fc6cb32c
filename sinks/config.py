"""The ``sinks`` section of the configuration."""

from __future__ import annotations

from pathlib import Path

from pipeline.runtime.config import DeliveryConfig

from .jsonl import JsonlConfig
from .mqtt import MqttConfig
from .prometheus import PrometheusConfig
from .spool import SpoolConfig
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
        filled = {}
        if self.mqtt is not None:
            outbox = _filled(self.mqtt.outbox, data_dir, "mqtt", durable)
            filled["mqtt"] = self.mqtt.model_copy(update={"outbox": outbox})
        if self.store is not None:
            spool = _filled(self.store.spool, data_dir, "store", durable)
            filled["store"] = self.store.model_copy(update={"spool": spool})
        return self.model_copy(update=filled)


def _filled(spool: SpoolConfig, data_dir: Path, sink: str, durable: bool) -> SpoolConfig:
    return spool.model_copy(
        update={
            "durable": durable if spool.durable is None else spool.durable,
            "path": spool.path or data_dir / "spool" / f"{sink}.sqlite3",
        }
    )
