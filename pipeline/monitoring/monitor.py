"""``PerformanceMonitor``: the seed API's face over the monitoring parts, one set of numbers fed by
detectors and the runtime and read by reports, alerts and Prometheus.

    store (MetricStore)      counters, gauges, histograms, event windows, by typed Subject
    system (SystemSampler)   psutil and NVML readings
    alerts (evaluate)        thresholds over a report
    report                   summaries, JSON and CSV files, the periodic log line

The seed's methods take a name and a kind (``record_latency("meso4", 0.01)``); the runtime passes
``Subject``s. Totals are counted for the whole run; latency percentiles and throughput come from
the last ``metrics_history_size`` events.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from core.errors import InputError, NotRecordedError
from core.strict import StrictModel
from pipeline.monitoring import alerts, report
from pipeline.monitoring.keys import Count, Gauge, Kind, Subject, labels
from pipeline.monitoring.store import Histogram, MetricStore, SeriesSnapshot
from pipeline.monitoring.system import SystemSampler

log = logging.getLogger(__name__)

SubjectKind = Kind | str


class MonitoringConfig(StrictModel):
    save_performance_data: bool = False  # also write a JSON report every log_interval
    performance_data_path: str = "performance_data"
    log_interval: float = Field(60.0, gt=0.0)  # seconds between summary log lines
    metrics_history_size: int = Field(1000, ge=1)
    enable_system_monitoring: bool = True
    enable_gpu_monitoring: bool = True
    alert_thresholds: dict[str, float] = Field(
        default_factory=lambda: {
            "inference_time_ms": 1000.0,
            "error_rate": 0.1,
            "memory_usage_percent": 90.0,
            "cpu_usage_percent": 90.0,
        }
    )

    @field_validator("alert_thresholds")
    @classmethod
    def _known_keys(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(alerts.ALERT_KEYS))
        if unknown:
            raise ValueError(f"unknown alert threshold(s) {unknown}; known: {sorted(alerts.ALERT_KEYS)}")
        return value


def _subject(name: str | Subject, kind: SubjectKind) -> Subject:
    return name if isinstance(name, Subject) else Subject(Kind(kind), name)


class PerformanceMonitor:
    def __init__(self, config: MonitoringConfig | None = None):
        self.config = config or MonitoringConfig()
        self.store = MetricStore(self.config.metrics_history_size)
        self.system = (
            SystemSampler(gpu=self.config.enable_gpu_monitoring) if self.config.enable_system_monitoring else None
        )
        self._timers: dict[tuple[str, int], float] = {}
        self._started = time.monotonic()
        self._next_log = self._started + self.config.log_interval
        self._log_lock = threading.Lock()

    # ---- recording (seed API: a name and a kind; the runtime: a Subject) -------------------------
    def start_timer(self, name: str) -> None:
        self._timers[(name, threading.get_ident())] = time.perf_counter()

    def end_timer(self, name: str, items: int = 1, kind: SubjectKind = Kind.MODEL) -> float:
        """Stop ``name``'s timer (per thread), record the latency and return it in seconds."""
        started = self._timers.pop((name, threading.get_ident()), None)
        if started is None:
            raise InputError(f"end_timer({name!r}) without start_timer({name!r}) in this thread")
        seconds = time.perf_counter() - started
        self.record_latency(name, seconds, items=items, kind=kind)
        return seconds

    def record_latency(
        self, name: str | Subject, seconds: float, items: int = 1, kind: SubjectKind = Kind.MODEL
    ) -> None:
        self.store.record_latency(_subject(name, kind), seconds, items)
        self._maybe_log()

    def record_success(self, name: str | Subject, success: bool, kind: SubjectKind = Kind.MODEL) -> None:
        self.store.record_outcome(_subject(name, kind), success)

    def record_inference(
        self, name: str | Subject, seconds: float, images: int = 1, success: bool = True, kind: SubjectKind = Kind.MODEL
    ) -> None:
        """One call of a detector: its latency and its outcome together."""
        subject = _subject(name, kind)
        self.store.record_latency(subject, seconds, images)
        self.store.record_outcome(subject, success)
        self._maybe_log()

    def record_prediction(
        self, name: str | Subject, predicted_fake: bool, actual_fake: bool, kind: SubjectKind = Kind.MODEL
    ) -> None:
        """A prediction with its ground truth, for precision, recall and F1 (fake is positive)."""
        self.store.record_prediction(_subject(name, kind), predicted_fake, actual_fake)

    def count(self, subject: Subject, name: Count, n: int = 1, **label_values: str) -> None:
        """Add ``n`` to a total of ``subject``:
        ``count(Subject.stream("cam1"), Count.FRAMES_DROPPED, reason="fps_cap")``."""
        self.store.count(subject, name, n, labels(**label_values))

    def set_gauge(self, subject: Subject, name: Gauge, value: float, **label_values: str) -> None:
        self.store.set_gauge(subject, name, value, labels(**label_values))

    def forget(self, subject: Subject) -> None:
        """Every series of ``subject`` goes (a call's stream after its linger: one set per call, kept,
        grew /metrics from 19 KB to 303 KB over 1,100 calls)."""
        self.store.forget(subject)

    # ---- reading ------------------------------------------------------------------------------
    def snapshot(self, subject: Subject | None = None) -> list[SeriesSnapshot]:
        return self.store.snapshot(subject)

    def counter(self, subject: Subject, name: Count, **label_values: str) -> int:
        return self.store.counter(subject, name, labels(**label_values))

    def gauge(self, subject: Subject, name: Gauge, **label_values: str) -> float | None:
        return self.store.gauge(subject, name, labels(**label_values))

    def histograms(self, subject: Subject) -> tuple[Histogram, Histogram] | None:
        """(latency in seconds, items per call) since start, or None for a subject with no numbers."""
        found = self.store.snapshot(subject)
        return (found[0].latency, found[0].sizes) if found else None

    def get_model_metrics(self, name: str | Subject, kind: SubjectKind = Kind.MODEL) -> dict[str, Any]:
        found = self.store.snapshot(_subject(name, kind))
        if not found:
            raise NotRecordedError(f"no metrics recorded for {name!r}")
        return report.summarise(found[0])

    def get_system_metrics(self) -> dict[str, Any]:
        return self.system.read() if self.system is not None else {}

    def get_performance_report(self) -> dict[str, Any]:
        return self.report_of(self.store.snapshot(), self.get_system_metrics())

    def report_of(self, snapshots: list[SeriesSnapshot], system: dict[str, Any]) -> dict[str, Any]:
        """The report of readings already taken (a Prometheus scrape takes one of each and builds
        its families and its alerts from them)."""
        return report.build_report(snapshots, system, time.monotonic() - self._started)

    def check_alerts(self, performance_report: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every threshold of ``alert_thresholds`` that is exceeded, as a dict with ``type``,
        ``value``, ``threshold``, the subject (``model``, ``stream``, ``stage`` or ``sink``: its
        name, or ``system``) and a one-line ``message``."""
        return alerts.evaluate(performance_report or self.get_performance_report(), self.config.alert_thresholds)

    # ---- export ---------------------------------------------------------------------------------
    def save_performance_data(self, path: str | Path | None = None) -> Path:
        """Write the report (and the alerts it raises) as JSON; returns the path written."""
        performance = self.get_performance_report()
        performance["alerts"] = self.check_alerts(performance)
        return report.write_json(
            performance, Path(path) if path is not None else report.stamped_path(self.config.performance_data_path)
        )

    def export_metrics_csv(self, path: str | Path) -> Path:
        """One row per series (model, stream, stage or sink) with its totals, latency and accuracy."""
        return report.write_csv(self.store.snapshot(), Path(path))

    def log_summary(self) -> None:
        """The periodic summary line (and JSON report when ``save_performance_data``)."""
        performance = self.get_performance_report()
        log.info("performance: %s", report.summary_line(performance))
        if self.config.save_performance_data:
            performance["alerts"] = self.check_alerts(performance)
            report.write_json(performance, report.stamped_path(self.config.performance_data_path))

    def _maybe_log(self) -> None:
        # the report is built in a short-lived thread, never on the recording (often the event loop's) thread
        now = time.monotonic()
        if now < self._next_log or not self._log_lock.acquire(blocking=False):
            return
        self._next_log = now + self.config.log_interval
        threading.Thread(target=self._log_in_background, name="dfstream.monitor.log", daemon=True).start()

    def _log_in_background(self) -> None:
        try:
            self.log_summary()
        except Exception as exc:  # a full disk must not take the monitor down with it
            log.warning("performance report failed: %s", exc)
        finally:
            self._log_lock.release()
