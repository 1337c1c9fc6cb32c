"""The one place every package meets: a config in, the runtime with its detectors, sinks and
metrics endpoint wired and running until the streams end or a signal stops it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from dfstream.config import DfstreamConfig
from pipeline.models.registry import ModelRegistry
from pipeline.models.weights import ensure_available, load_manifest
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.runtime import Runtime, share_cpu_threads
from pipeline.runtime.sink import Sink
from sinks import PrometheusExporter, build_sinks


def run(config: DfstreamConfig, offline: bool = False, say: Callable[[str], None] = print) -> None:
    """Fetch missing weights (unless ``offline``), load every detector (any failure stops here),
    then judge every stream until they end or SIGINT / SIGTERM."""
    manifest = load_manifest()
    ensure_available([d.weights for d in config.detectors if d.weights in manifest], offline, say)
    detectors = ModelRegistry().load_configured(config.detectors)
    share_cpu_threads(len(detectors) + 1)  # the face stage and each detector run side by side
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(config.sinks.prometheus, monitor).start() if config.sinks.prometheus else None

    async def supervise() -> None:
        sinks: list[Sink] = build_sinks(config.sinks, monitor)
        runtime = Runtime(config, detectors, sinks, monitor)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.stop.set)
        await runtime.run()

    try:
        asyncio.run(supervise())
    finally:
        if exporter is not None:
            exporter.close()
