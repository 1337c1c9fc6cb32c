"""Where verdicts leave dfstream. Every sink implements ``pipeline.sink.Sink`` (publish, aclose)."""

from __future__ import annotations

from pipeline.sink import Sink

from .config import SinksConfig
from .jsonl import JsonlConfig, JsonlSink


def build_sinks(config: SinksConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.jsonl is not None:
        sinks.append(JsonlSink(config.jsonl))
    return sinks


__all__ = ["JsonlConfig", "JsonlSink", "SinksConfig", "build_sinks"]
