"""Where verdicts leave dfstream. Every sink implements ``pipeline.runtime.sink.Sink`` (start, publish, aclose)."""

from __future__ import annotations

from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from pipeline.runtime.numbering import Numbering
from pipeline.runtime.sink import Sink

from .config import SinksConfig
from .jsonl import JsonlConfig, JsonlSink
from .mqtt import MqttConfig, MqttSink
from .prometheus import PrometheusConfig, PrometheusExporter
from .store import EventRecord, EventWriter, StoreConfig, StoreSink
from .video import VideoConfig, VideoSink


def build_sinks(
    config: SinksConfig,
    monitor: PerformanceMonitor,
    tap: LiveTap,
    streams: list[str],
    numbering: Numbering | None = None,
) -> list[Sink]:
    """The sinks the config asks for (Prometheus is not one: it reads the monitor; the store needs
    a database writer, which the composition root adds). The video sink reads ``tap``; MQTT
    numbers its messages with ``numbering``."""
    sinks: list[Sink] = []
    if config.jsonl is not None:
        sinks.append(JsonlSink(config.jsonl))
    if config.mqtt is not None:
        sinks.append(MqttSink(config.mqtt, monitor, numbering))
    if config.video is not None:
        sinks.append(VideoSink(config.video, monitor, tap, streams))
    return sinks


__all__ = [
    "EventRecord",
    "EventWriter",
    "JsonlConfig",
    "JsonlSink",
    "MqttConfig",
    "MqttSink",
    "PrometheusConfig",
    "PrometheusExporter",
    "SinksConfig",
    "StoreConfig",
    "StoreSink",
    "VideoConfig",
    "VideoSink",
    "build_sinks",
]
