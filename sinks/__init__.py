"""Where verdicts leave dfstream. Every sink implements ``pipeline.runtime.sink.Sink`` (start, publish, aclose)."""

from __future__ import annotations

from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.sink import Sink

from .config import SinksConfig
from .jsonl import JsonlConfig, JsonlSink
from .mqtt import MqttConfig, MqttSink
from .prometheus import PrometheusConfig, PrometheusExporter


def build_sinks(config: SinksConfig, monitor: PerformanceMonitor) -> list[Sink]:
    """The event sinks the config asks for (Prometheus is not one: it reads the monitor)."""
    sinks: list[Sink] = []
    if config.jsonl is not None:
        sinks.append(JsonlSink(config.jsonl))
    if config.mqtt is not None:
        sinks.append(MqttSink(config.mqtt, monitor))
    return sinks


__all__ = ["JsonlConfig", "JsonlSink", "MqttConfig", "MqttSink", "PrometheusConfig", "PrometheusExporter", "SinksConfig", "build_sinks"]
