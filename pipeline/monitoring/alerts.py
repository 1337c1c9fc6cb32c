"""Threshold alerts over a report: p95 latency and error rate of every series, and the machine's
readings. Each alert is a dict (the seed API's shape) with a one-line message."""

from __future__ import annotations

from typing import Any

from pipeline.monitoring.report import GROUPS

ALERT_KEYS = {
    "inference_time_ms": "high_inference_time",  # p95 latency of a series
    "error_rate": "high_error_rate",  # failures / outcomes of a series
    "memory_usage_percent": "high_memory_usage",
    "cpu_usage_percent": "high_cpu_usage",
    "gpu_memory_percent": "high_gpu_memory",
    "gpu_utilization_percent": "high_gpu_utilization",
}


def evaluate(report: dict[str, Any], thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """Every threshold exceeded in ``report`` (``PerformanceMonitor.get_performance_report``)."""
    alerts: list[dict[str, Any]] = []
    for group in GROUPS.values():  # every group the report has, the service's included
        for name, metrics in report[group].items():
            checks = (("inference_time_ms", metrics["latency_ms"]["p95"]), ("error_rate", metrics["error_rate"]))
            for key, value in checks:
                if key in thresholds and value is not None and value > thresholds[key]:
                    alerts.append(_alert(key, value, thresholds[key], metrics["kind"], name))
    for key, value in report["system"].items():
        if key in thresholds and value is not None and value > thresholds[key]:
            alerts.append(_alert(key, value, thresholds[key], "system", "system"))
    return alerts


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
