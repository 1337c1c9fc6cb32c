"""Performance numbers: one set, fed by detectors and the runtime, read by reports, alerts and
Prometheus.

Every series has a name (a model, a stream or a stage) and a kind. Totals are counted for the
whole run; latency percentiles and throughput come from the last ``metrics_history_size`` events.
"""

from __future__ import annotations

import bisect
import csv
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psutil
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger(__name__)

SubjectKind = Literal["model", "stream", "stage"]

# cumulative histograms for Prometheus; 0.15 s is the glass-to-verdict target
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

ALERT_KEYS = {
    "inference_time_ms": "high_inference_time",  # p95 latency of a series
    "error_rate": "high_error_rate",  # failures / outcomes of a series
    "memory_usage_percent": "high_memory_usage",
    "cpu_usage_percent": "high_cpu_usage",
    "gpu_memory_percent": "high_gpu_memory",
    "gpu_utilization_percent": "high_gpu_utilization",
}


class MonitoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        unknown = sorted(set(value) - set(ALERT_KEYS))
        if unknown:
            raise ValueError(f"unknown alert threshold(s) {unknown}; known: {sorted(ALERT_KEYS)}")
        return value


@dataclass
class _Series:
    kind: SubjectKind
    history: int
    calls: int = 0
    items: int = 0
    successes: int = 0
    failures: int = 0
    confusion: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "tn": 0, "fn": 0})
    counters: dict[str, int] = field(default_factory=dict)  # totals: frames_decoded, dropped:queue_full, ...
    gauges: dict[str, float] = field(default_factory=dict)  # current values: up, queue_depth, ...
    events: deque = field(init=False)  # (end monotonic time, seconds, items)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum: float = 0.0
    size_counts: list[int] = field(default_factory=lambda: [0] * (len(SIZE_BUCKETS) + 1))

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.history)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound (the last bound is +Inf), as Prometheus exposes them."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


def _cumulative(bounds: tuple[float, ...], counts: list[int], total: float) -> Histogram:
    running, out = 0, []
    for c in counts:
        running += c
        out.append(running)
    return Histogram((*bounds, float("inf")), tuple(out), total)


class PerformanceMonitor:
    def __init__(self, config: MonitoringConfig | None = None):
        self.config = config or MonitoringConfig()
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._timers: dict[tuple[str, int], float] = {}
        self._started = time.monotonic()
        self._last_log = self._started
        self._process = psutil.Process()
        self._gpu = _Gpu() if self.config.enable_gpu_monitoring else None
        if self.config.enable_system_monitoring:
            psutil.cpu_percent(interval=None)  # the first reading is always 0: prime it

    # ---- recording ----------------------------------------------------------------------------
    def start_timer(self, name: str) -> None:
        self._timers[(name, threading.get_ident())] = time.perf_counter()

    def end_timer(self, name: str, items: int = 1, kind: SubjectKind = "model") -> float:
        """Stop ``name``'s timer (per thread), record the latency and return it in seconds."""
        started = self._timers.pop((name, threading.get_ident()), None)
        if started is None:
            raise ValueError(f"end_timer({name!r}) without start_timer({name!r}) in this thread")
        seconds = time.perf_counter() - started
        self.record_latency(name, seconds, items=items, kind=kind)
        return seconds

    def record_latency(self, name: str, seconds: float, items: int = 1, kind: SubjectKind = "model") -> None:
        with self._lock:
            series = self._get(name, kind)
            series.calls += 1
            series.items += items
            series.events.append((time.monotonic(), seconds, items))
            series.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
            series.latency_sum += seconds
            series.size_counts[bisect.bisect_left(SIZE_BUCKETS, items)] += 1
        self._maybe_log()

    def record_success(self, name: str, success: bool, kind: SubjectKind = "model") -> None:
        with self._lock:
            series = self._get(name, kind)
            if success:
                series.successes += 1
            else:
                series.failures += 1

    def record_inference(
        self, name: str, seconds: float, images: int = 1, success: bool = True, kind: SubjectKind = "model"
    ) -> None:
        """One call of a detector: its latency and its outcome together."""
        self.record_latency(name, seconds, items=images, kind=kind)
        self.record_success(name, success, kind=kind)

    def record_prediction(self, name: str, predicted_fake: bool, actual_fake: bool, kind: SubjectKind = "model") -> None:
        """A prediction with its ground truth, for precision, recall and F1 (fake is positive)."""
        key = ("t" if predicted_fake == actual_fake else "f") + ("p" if predicted_fake else "n")
        with self._lock:
            self._get(name, kind).confusion[key] += 1

    def count(self, name: str, key: str, n: int = 1, kind: SubjectKind = "stream") -> None:
        """Add ``n`` to a named total of a series (frames decoded, frames dropped by reason, ...)."""
        with self._lock:
            counters = self._get(name, kind).counters
            counters[key] = counters.get(key, 0) + n

    def set_gauge(self, name: str, key: str, value: float, kind: SubjectKind = "stream") -> None:
        with self._lock:
            self._get(name, kind).gauges[key] = float(value)

    # ---- reading ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def histograms(self, name: str) -> tuple[Histogram, Histogram] | None:
        """(latency in seconds, items per call) since start, or None for an unknown series."""
        with self._lock:
            s = self._series.get(name)
            if s is None:
                return None
            sizes = float(s.items)
            return (_cumulative(LATENCY_BUCKETS_S, s.latency_counts, s.latency_sum),
                    _cumulative(tuple(float(b) for b in SIZE_BUCKETS), s.size_counts, sizes))  # fmt: skip

    def get_model_metrics(self, name: str) -> dict[str, Any]:
        with self._lock:
            series = self._series.get(name)
            if series is None:
                raise KeyError(f"no metrics recorded for {name!r}")
            return _summarise(series)

    def get_system_metrics(self) -> dict[str, Any]:
        if not self.config.enable_system_monitoring:
            return {}
        memory = psutil.virtual_memory()
        metrics: dict[str, Any] = {
            "cpu_usage_percent": psutil.cpu_percent(interval=None),
            "memory_usage_percent": memory.percent,
            "memory_available_bytes": memory.available,
            "process_rss_bytes": self._process.memory_info().rss,
            "process_cpu_percent": self._process.cpu_percent(interval=None),
        }
        if self._gpu is not None:
            metrics.update(self._gpu.read())
        return metrics

    def get_performance_report(self) -> dict[str, Any]:
        with self._lock:
            series = {name: _summarise(s) for name, s in self._series.items()}
        return {
            "generated_at": datetime.now(UTC).isoformat(),
            "uptime_s": time.monotonic() - self._started,
            "models": {n: m for n, m in series.items() if m["kind"] == "model"},
            "streams": {n: m for n, m in series.items() if m["kind"] == "stream"},
            "stages": {n: m for n, m in series.items() if m["kind"] == "stage"},
            "system": self.get_system_metrics(),
        }

    def check_alerts(self, report: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every threshold of ``alert_thresholds`` that is exceeded, as a dict with ``type``,
        ``value``, ``threshold``, the subject (``model``, ``stream`` or ``stage``: its name, or
        ``system``) and a one-line ``message``."""
        report = report or self.get_performance_report()
        thresholds = self.config.alert_thresholds
        alerts: list[dict[str, Any]] = []
        for group in ("models", "streams", "stages"):
            for name, metrics in report[group].items():
                checks = (("inference_time_ms", metrics["latency_ms"]["p95"]), ("error_rate", metrics["error_rate"]))
                for key, value in checks:
                    if key in thresholds and value is not None and value > thresholds[key]:
                        alerts.append(_alert(key, value, thresholds[key], metrics["kind"], name))
        for key, value in report["system"].items():
            if key in thresholds and value is not None and value > thresholds[key]:
                alerts.append(_alert(key, value, thresholds[key], "system", "system"))
        return alerts

    # ---- export ---------------------------------------------------------------------------------
    def save_performance_data(self, path: str | Path | None = None) -> Path:
        """Write the report (and the alerts it raises) as JSON; returns the path written."""
        if path is None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            path = Path(self.config.performance_data_path) / f"performance_{stamp}.json"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        report = self.get_performance_report()
        report["alerts"] = self.check_alerts(report)
        path.write_text(json.dumps(report, indent=2, default=float))
        return path

    def export_metrics_csv(self, path: str | Path) -> Path:
        """One row per series (model, stream or stage) with its totals, latency and accuracy."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            rows = [(name, _summarise(s)) for name, s in self._series.items()]
        columns = ["name", "kind", "calls", "items", "successes", "failures", "error_rate", "throughput_per_s",
                   "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_max_ms",
                   "precision", "recall", "f1", "accuracy"]  # fmt: skip
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for name, m in rows:
                lat = m["latency_ms"]
                writer.writerow([name, m["kind"], m["calls"], m["items"], m["successes"], m["failures"], m["error_rate"],
                                 m["throughput_per_s"], lat["mean"], lat["p50"], lat["p95"], lat["p99"], lat["max"],
                                 m["precision"], m["recall"], m["f1"], m["accuracy"]])  # fmt: skip
        return path

    # ---- internals ------------------------------------------------------------------------------
    def _get(self, name: str, kind: SubjectKind) -> _Series:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _Series(kind=kind, history=self.config.metrics_history_size)
        return series

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log < self.config.log_interval:
            return
        self._last_log = now
        report = self.get_performance_report()
        parts = [
            f"{name}: {m['throughput_per_s']:.1f}/s p95 {m['latency_ms']['p95']:.1f} ms errors {m['failures']}"
            for group in ("models", "streams", "stages")
            for name, m in report[group].items()
            if m["latency_ms"]["p95"] is not None
        ]
        log.info("performance: %s", "; ".join(parts) or "nothing recorded")
        if self.config.save_performance_data:
            self.save_performance_data()


def _summarise(series: _Series) -> dict[str, Any]:
    events = list(series.events)
    latencies = np.array([e[1] for e in events], dtype=np.float64) * 1000.0
    if len(events):
        window = events[-1][0] - (events[0][0] - events[0][1])
        throughput = sum(e[2] for e in events) / window if window > 0 else None
        latency = {
            "mean": float(latencies.mean()),
            "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
            "p99": float(np.percentile(latencies, 99)),
            "max": float(latencies.max()),
        }
    else:
        throughput = None
        latency = dict.fromkeys(("mean", "p50", "p95", "p99", "max"))
    outcomes = series.successes + series.failures
    c = series.confusion
    labelled = sum(c.values())
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if labelled else None)
    return {
        "kind": series.kind,
        "calls": series.calls,
        "items": series.items,
        "successes": series.successes,
        "failures": series.failures,
        "error_rate": series.failures / outcomes if outcomes else 0.0,
        "success_rate": series.successes / outcomes if outcomes else None,
        "throughput_per_s": throughput,
        "latency_ms": latency,
        "confusion": dict(c),
        "counters": dict(series.counters),
        "gauges": dict(series.gauges),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (c["tp"] + c["tn"]) / labelled if labelled else None,
    }


def _alert(key: str, value: float, threshold: float, subject_kind: str, subject: str) -> dict[str, Any]:
    return {
        "type": ALERT_KEYS[key],
        "metric": key,
        "value": float(value),
        "threshold": float(threshold),
        subject_kind: subject,
        "subject": subject,
        "message": f"{subject}: {key} is {value:.3g}, above the threshold {threshold:.3g}",
    }


class _Gpu:
    """GPU readings through NVML; absent driver or GPU means no readings, said once in the log."""

    def __init__(self) -> None:
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as exc:  # NVMLError_LibraryNotFound without a driver, ImportError without the package
            log.debug("GPU monitoring off: %s", exc)

    def read(self) -> dict[str, float]:
        if not self._handles:
            return {}
        used = total = util = 0.0
        for handle in self._handles:
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            used, total = used + memory.used, total + memory.total
            util = max(util, float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        return {"gpu_memory_percent": 100.0 * used / total, "gpu_utilization_percent": util, "gpu_memory_used_bytes": used}
