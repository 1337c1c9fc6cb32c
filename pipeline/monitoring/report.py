"""Reports for people: a series' summary (throughput, latency percentiles, outcomes, precision and
recall), the whole report, and its JSON and CSV files. Built from snapshots, never under the lock."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.monitoring.keys import Kind, key_text
from pipeline.monitoring.store import SeriesSnapshot

GROUPS = {
    Kind.MODEL: "models",
    Kind.STREAM: "streams",
    Kind.STAGE: "stages",
    Kind.SINK: "sinks",
    Kind.SERVICE: "services",
}

CSV_COLUMNS = [
    "name",
    "kind",
    "calls",
    "items",
    "successes",
    "failures",
    "error_rate",
    "throughput_per_s",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "precision",
    "recall",
    "f1",
    "accuracy",
]


def summarise(series: SeriesSnapshot) -> dict[str, Any]:
    events = series.events
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
        "kind": series.subject.kind.value,
        "calls": series.calls,
        "items": series.items,
        "successes": series.successes,
        "failures": series.failures,
        "error_rate": series.failures / outcomes if outcomes else 0.0,
        "success_rate": series.successes / outcomes if outcomes else None,
        "throughput_per_s": throughput,
        "latency_ms": latency,
        "confusion": dict(c),
        "counters": {key_text(name, labelled): v for (name, labelled), v in series.counters.items()},
        "gauges": {key_text(name, labelled): v for (name, labelled), v in series.gauges.items()},
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (c["tp"] + c["tn"]) / labelled if labelled else None,
    }


def build_report(snapshots: list[SeriesSnapshot], system: dict[str, float], uptime_s: float) -> dict[str, Any]:
    report: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(), "uptime_s": uptime_s}
    report |= {group: {} for group in GROUPS.values()}
    for series in snapshots:
        report[GROUPS[series.subject.kind]][series.subject.name] = summarise(series)
    report["system"] = system
    return report


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))
    return path


def write_csv(snapshots: list[SeriesSnapshot], path: Path) -> Path:
    """One row per series (model, stream, stage or sink) with its totals, latency and accuracy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for series in snapshots:
            m = summarise(series)
            lat = m["latency_ms"]
            writer.writerow(
                [
                    series.subject.name,
                    m["kind"],
                    m["calls"],
                    m["items"],
                    m["successes"],
                    m["failures"],
                    m["error_rate"],
                    m["throughput_per_s"],
                    lat["mean"],
                    lat["p50"],
                    lat["p95"],
                    lat["p99"],
                    lat["max"],
                    m["precision"],
                    m["recall"],
                    m["f1"],
                    m["accuracy"],
                ]
            )
    return path


def summary_line(report: dict[str, Any]) -> str:
    parts = [
        f"{name}: {m['throughput_per_s']:.1f}/s p95 {m['latency_ms']['p95']:.1f} ms errors {m['failures']}"
        for group in GROUPS.values()
        for name, m in report[group].items()
        if m["latency_ms"]["p95"] is not None and m["throughput_per_s"] is not None
    ]
    return "; ".join(parts) or "nothing recorded"


def stamped_path(folder: str) -> Path:
    return Path(folder) / f"performance_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
