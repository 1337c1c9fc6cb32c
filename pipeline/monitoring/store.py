"""The store of numbers: per subject, counters and gauges with labels, a latency and a batch-size
histogram since start, and a window of the last events for percentiles and throughput.

The hot path takes the lock only to add to a few fields. Readers take ``snapshot()``: copies made
under the lock, every computation (percentiles, reports, Prometheus families) after it is released.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from core.errors import InputError
from pipeline.monitoring.keys import Count, Gauge, Labels, Subject

# cumulative histograms for Prometheus; 0.15 s is the glass-to-verdict target
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound (the last bound is +Inf), as Prometheus exposes them."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@dataclass(frozen=True)
class SeriesSnapshot:
    """One subject's numbers at one moment (a copy: safe to read without the store's lock)."""

    subject: Subject
    calls: int
    items: int
    successes: int
    failures: int
    confusion: dict[str, int]
    counters: dict[tuple[Count, Labels], int]
    gauges: dict[tuple[Gauge, Labels], float]
    events: tuple[tuple[float, float, int], ...]  # (end monotonic time, seconds, items)
    latency: Histogram
    sizes: Histogram

    def counter(self, name: Count, labelled: Labels = ()) -> int:
        return self.counters.get((name, labelled), 0)

    def gauge(self, name: Gauge, labelled: Labels = ()) -> float | None:
        return self.gauges.get((name, labelled))


@dataclass
class _Series:
    history: int
    calls: int = 0
    items: int = 0
    successes: int = 0
    failures: int = 0
    confusion: dict[str, int] = field(default_factory=lambda: {"tp": 0, "fp": 0, "tn": 0, "fn": 0})
    counters: dict[tuple[Count, Labels], int] = field(default_factory=dict)
    gauges: dict[tuple[Gauge, Labels], float] = field(default_factory=dict)
    events: deque[tuple[float, float, int]] = field(init=False)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum: float = 0.0
    size_counts: list[int] = field(default_factory=lambda: [0] * (len(SIZE_BUCKETS) + 1))

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.history)

    def snapshot(self, subject: Subject) -> SeriesSnapshot:
        return SeriesSnapshot(
            subject=subject,
            calls=self.calls,
            items=self.items,
            successes=self.successes,
            failures=self.failures,
            confusion=dict(self.confusion),
            counters=dict(self.counters),
            gauges=dict(self.gauges),
            events=tuple(self.events),
            latency=_cumulative(LATENCY_BUCKETS_S, self.latency_counts, self.latency_sum),
            sizes=_cumulative(tuple(float(b) for b in SIZE_BUCKETS), self.size_counts, float(self.items)),
        )


def _cumulative(bounds: tuple[float, ...], counts: list[int], total: float) -> Histogram:
    running, out = 0, []
    for c in counts:
        running += c
        out.append(running)
    return Histogram((*bounds, float("inf")), tuple(out), total)


class MetricStore:
    """Thread-safe: detectors record from worker threads, the runtime from the event loop."""

    def __init__(self, history: int = 1000):
        self.history = history
        self._lock = threading.Lock()
        self._series: dict[Subject, _Series] = {}

    def record_latency(self, subject: Subject, seconds: float, items: int = 1) -> None:
        now = time.monotonic()
        latency_bucket = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
        size_bucket = bisect.bisect_left(SIZE_BUCKETS, items)
        with self._lock:
            series = self._get(subject)
            series.calls += 1
            series.items += items
            series.events.append((now, seconds, items))
            series.latency_counts[latency_bucket] += 1
            series.latency_sum += seconds
            series.size_counts[size_bucket] += 1

    def record_outcome(self, subject: Subject, success: bool) -> None:
        with self._lock:
            series = self._get(subject)
            if success:
                series.successes += 1
            else:
                series.failures += 1

    def record_prediction(self, subject: Subject, predicted_fake: bool, actual_fake: bool) -> None:
        key = ("t" if predicted_fake == actual_fake else "f") + ("p" if predicted_fake else "n")
        with self._lock:
            self._get(subject).confusion[key] += 1

    def count(self, subject: Subject, name: Count, n: int = 1, labelled: Labels = ()) -> None:
        with self._lock:
            counters = self._get(subject).counters
            counters[(name, labelled)] = counters.get((name, labelled), 0) + n

    def set_gauge(self, subject: Subject, name: Gauge, value: float, labelled: Labels = ()) -> None:
        with self._lock:
            self._get(subject).gauges[(name, labelled)] = float(value)

    def counter(self, subject: Subject, name: Count, labelled: Labels = ()) -> int:
        with self._lock:
            series = self._series.get(subject)
            return 0 if series is None else series.counters.get((name, labelled), 0)

    def gauge(self, subject: Subject, name: Gauge, labelled: Labels = ()) -> float | None:
        with self._lock:
            series = self._series.get(subject)
            return None if series is None else series.gauges.get((name, labelled))

    def snapshot(self, subject: Subject | None = None) -> list[SeriesSnapshot]:
        """Every series (or only ``subject``'s, an empty list when it recorded nothing)."""
        with self._lock:
            if subject is not None:
                series = self._series.get(subject)
                return [] if series is None else [series.snapshot(subject)]
            return [series.snapshot(s) for s, series in self._series.items()]

    def forget(self, subject: Subject) -> None:
        """``subject``'s series go (a stream that ended for good: its series would be kept forever)."""
        with self._lock:
            self._series.pop(subject, None)

    def _get(self, subject: Subject) -> _Series:
        series = self._series.get(subject)
        if series is None:
            series = self._series[subject] = _Series(history=self.history)
        return series


# gauges that say whether something is well: the merged value is the worst (every MQTT client
# connected, every runtime's models ready); the others (queue depths, capacities, viewers) add up
_WORST_OF = frozenset({Gauge.UP, Gauge.CONNECTED, Gauge.MODELS_READY, Gauge.OUTPUT_UP})


def merge_snapshots(groups: list[list[SeriesSnapshot]]) -> list[SeriesSnapshot]:
    """Several monitors' snapshots (one list per process: the Ray engine's actors and replicas)
    as one: a subject seen in several adds its totals and histograms; its gauges add up, except the
    well-or-not ones, which take the worst; its event windows are joined (percentiles stay right;
    each process's times are its own clock)."""
    merged: dict[Subject, SeriesSnapshot] = {}
    for group in groups:
        for s in group:
            m = merged.get(s.subject)
            if m is None:
                merged[s.subject] = s
                continue
            counters = dict(m.counters)
            for key, value in s.counters.items():
                counters[key] = counters.get(key, 0) + value
            gauges = dict(m.gauges)
            for key, value in s.gauges.items():
                gauges[key] = (
                    value
                    if key not in gauges
                    else (min(gauges[key], value) if key[0] in _WORST_OF else gauges[key] + value)
                )
            merged[s.subject] = SeriesSnapshot(
                subject=s.subject,
                calls=m.calls + s.calls,
                items=m.items + s.items,
                successes=m.successes + s.successes,
                failures=m.failures + s.failures,
                confusion={k: m.confusion.get(k, 0) + s.confusion.get(k, 0) for k in {*m.confusion, *s.confusion}},
                counters=counters,
                gauges=gauges,
                events=tuple(sorted(m.events + s.events)),
                latency=_add_histograms(m.latency, s.latency),
                sizes=_add_histograms(m.sizes, s.sizes),
            )
    return list(merged.values())


def _add_histograms(a: Histogram, b: Histogram) -> Histogram:
    if a.bounds != b.bounds:
        raise InputError(f"histograms with different bounds cannot be added: {a.bounds} and {b.bounds}")
    return Histogram(a.bounds, tuple(x + y for x, y in zip(a.cumulative, b.cumulative)), a.total + b.total)
