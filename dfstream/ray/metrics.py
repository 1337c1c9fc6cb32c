"""One /metrics for the whole cluster: every node runtime and Serve replica reports its monitor's
numbers to a detached hub actor (``dfstream.metrics``) every ``runtime.metrics_interval_s``; the
hub serves them merged through the same exporter as the local engine, so the Prometheus families,
the alert rules and the Grafana dashboard are the same on both engines.

A source not heard from for ``STALE`` intervals (its node runtime or replica gone) is dropped: its
counters leave with it, and a new one starts its own from 0, which Prometheus' ``rate()`` reads as
a reset.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import ray

from core.lifecycle import Lifecycle
from pipeline.monitoring.keys import Gauge, Labels, Subject
from pipeline.monitoring.monitor import MonitoringConfig, PerformanceMonitor
from pipeline.monitoring.store import SeriesSnapshot, merge_snapshots

log = logging.getLogger(__name__)

HUB = "dfstream.metrics"
STALE = 3


class GatheredMonitor(PerformanceMonitor):
    """A monitor whose numbers are the latest reports of many others (and its own system readings)."""

    def __init__(self, config: MonitoringConfig, interval_s: float):
        super().__init__(config)
        self.interval_s = interval_s
        self._reports: dict[str, tuple[float, list[SeriesSnapshot]]] = {}
        self._lock = threading.Lock()

    def receive(self, source: str, snapshots: list[SeriesSnapshot]) -> None:
        with self._lock:
            self._reports[source] = (time.monotonic(), snapshots)

    def snapshot(self, subject: Subject | None = None) -> list[SeriesSnapshot]:
        oldest = time.monotonic() - STALE * self.interval_s
        with self._lock:
            for source in [s for s, (at, _) in self._reports.items() if at < oldest]:
                del self._reports[source]
            groups = [snapshots for _, snapshots in self._reports.values()]
        merged = merge_snapshots([super().snapshot(), *groups])
        return merged if subject is None else [s for s in merged if s.subject == subject]

    def gauge(self, subject: Subject, name: Gauge, **label_values: str) -> float | None:
        found = self.snapshot(subject)
        key: tuple[Gauge, Labels] = (name, tuple(sorted(label_values.items())))
        return found[0].gauges.get(key) if found else None


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class MetricsHub:
    """Serves /metrics, /healthz and /readyz on ``sinks.prometheus`` (on the node it runs on: the head)."""

    def __init__(self, host: str, port: int, monitoring: dict, interval_s: float):
        from sinks import PrometheusConfig, PrometheusExporter

        self.monitor = GatheredMonitor(
            MonitoringConfig.model_validate({**monitoring, "enable_system_monitoring": True}), interval_s
        )
        self.exporter = PrometheusExporter(PrometheusConfig(host=host, port=port), self.monitor).start()

    def receive(self, source: str, snapshots: list[SeriesSnapshot]) -> None:
        self.monitor.receive(source, snapshots)

    def address(self) -> tuple[str, int]:
        return ray.util.get_node_ip_address(), self.exporter.port


class Reporter(Lifecycle):
    """Sends ``monitor``'s snapshot to the hub every ``interval_s`` while inside ``async with``, and
    once more on leaving (the last numbers, before anyone reads them). A report is small and
    fire-and-forget: the hub being away costs nothing but the report."""

    def __init__(self, namespace: str, source: str, monitor: PerformanceMonitor, interval_s: float):
        super().__init__(f"{source}.metrics")
        self.namespace, self.source, self.monitor, self.interval_s = namespace, source, monitor, interval_s
        self._hub = None

    async def _open(self) -> None:
        self.spawn("report", self._loop)

    async def _close(self) -> None:
        await self._end_loops()
        await asyncio.to_thread(self.report)

    def report(self) -> None:
        """One report (in a thread: looking the hub up is a blocking call to Ray's control store)."""
        if self._hub is None:
            try:
                self._hub = ray.get_actor(HUB, namespace=self.namespace)
            except ValueError:
                return  # no hub (no prometheus sink configured, or not started yet)
        try:
            self._hub.receive.remote(self.source, self.monitor.snapshot())
        except Exception as exc:  # a dead hub handle: look it up again next time
            log.debug("%s: metrics report failed: %s", self.source, exc)
            self._hub = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await asyncio.to_thread(self.report)
