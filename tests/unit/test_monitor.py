"""PerformanceMonitor: timers, percentiles, accuracy, alerts and exports from known inputs."""

from __future__ import annotations

import csv
import json
import logging
import time

import pytest
from pydantic import ValidationError

from pipeline import MonitoringConfig, PerformanceMonitor
from tests.helpers import wait_until


def fed_monitor(**config) -> PerformanceMonitor:
    monitor = PerformanceMonitor(MonitoringConfig(enable_system_monitoring=False, **config))
    for ms in range(1, 101):  # latencies 1..100 ms
        monitor.record_inference("meso4", ms / 1000.0, success=ms % 10 != 0)  # every 10th fails
    return monitor


def test_timers_measure_and_record():
    monitor = PerformanceMonitor()
    monitor.start_timer("ensemble")
    time.sleep(0.02)
    seconds = monitor.end_timer("ensemble")
    assert 0.015 < seconds < 0.5
    assert monitor.get_model_metrics("ensemble")["calls"] == 1
    with pytest.raises(ValueError, match="end_timer\\('ensemble'\\) without start_timer"):
        monitor.end_timer("ensemble")


def test_latency_percentiles_and_error_rate():
    m = fed_monitor().get_model_metrics("meso4")
    assert m["calls"] == 100 and m["failures"] == 10 and m["error_rate"] == pytest.approx(0.1)
    assert m["latency_ms"]["p50"] == pytest.approx(50.5) and m["latency_ms"]["max"] == pytest.approx(100)
    assert m["latency_ms"]["p95"] == pytest.approx(95.05) and m["latency_ms"]["p99"] == pytest.approx(99.01)
    assert m["throughput_per_s"] > 0


def test_history_is_bounded_but_totals_are_not():
    m = fed_monitor(metrics_history_size=10).get_model_metrics("meso4")
    assert m["calls"] == 100 and m["latency_ms"]["p50"] == pytest.approx(95.5)  # the last ten: 91..100 ms


def test_precision_recall_f1_from_ground_truth():
    monitor = PerformanceMonitor(MonitoringConfig(enable_system_monitoring=False))
    # 3 TP, 1 FP, 2 FN, 4 TN
    for predicted, actual, n in ((True, True, 3), (True, False, 1), (False, True, 2), (False, False, 4)):
        for _ in range(n):
            monitor.record_prediction("ensemble", predicted, actual)
    m = monitor.get_model_metrics("ensemble")
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35) and m["accuracy"] == pytest.approx(0.7)


def test_alerts_name_type_value_threshold_and_subject():
    monitor = fed_monitor(alert_thresholds={"inference_time_ms": 90.0, "error_rate": 0.05})
    monitor.record_latency("cam1", 0.001, kind="stream")
    alerts = {a["type"]: a for a in monitor.check_alerts()}
    assert set(alerts) == {"high_inference_time", "high_error_rate"}
    assert alerts["high_inference_time"]["value"] == pytest.approx(95.05)
    assert alerts["high_inference_time"]["threshold"] == 90.0 and alerts["high_inference_time"]["model"] == "meso4"
    assert alerts["high_error_rate"]["value"] == pytest.approx(0.1)
    assert fed_monitor(alert_thresholds={"error_rate": 0.5}).check_alerts() == []


def test_system_alerts_use_real_readings():
    monitor = PerformanceMonitor(MonitoringConfig(alert_thresholds={"memory_usage_percent": 0.0}))
    system = monitor.get_system_metrics()
    assert system["process_rss_bytes"] > 10_000_000 and 0 < system["memory_usage_percent"] <= 100
    (alert,) = monitor.check_alerts()
    assert alert["type"] == "high_memory_usage" and alert["system"] == "system"


def test_unknown_alert_threshold_is_refused():
    with pytest.raises(ValidationError, match="unknown alert threshold\\(s\\) \\['inference_ms'\\]"):
        MonitoringConfig(alert_thresholds={"inference_ms": 10})


def test_json_and_csv_exports(tmp_path):
    monitor = fed_monitor()
    report = json.loads(monitor.save_performance_data(tmp_path / "report.json").read_text())
    assert report["models"]["meso4"]["calls"] == 100 and report["alerts"] == []
    rows = list(csv.DictReader(monitor.export_metrics_csv(tmp_path / "m.csv").open()))
    assert rows[0]["name"] == "meso4" and rows[0]["failures"] == "10" and float(rows[0]["latency_p50_ms"]) == 50.5


def test_periodic_summary_saves_when_asked(tmp_path):
    monitor = PerformanceMonitor(
        MonitoringConfig(log_interval=0.01, save_performance_data=True, performance_data_path=str(tmp_path / "perf"))
    )
    time.sleep(0.02)
    monitor.record_inference("meso4", 0.01)  # due: the report is written by a background thread, not this call
    wait_until(lambda: len(list((tmp_path / "perf").glob("performance_*.json"))) == 1, 10, "the periodic report")


def test_gpu_monitoring_without_a_gpu_is_quiet(caplog):
    """GPU readings appear exactly where NVML finds a GPU; without one, nothing is logged above DEBUG."""
    import pynvml

    try:
        pynvml.nvmlInit()
        has_gpu = pynvml.nvmlDeviceGetCount() > 0
    except pynvml.NVMLError:
        has_gpu = False
    with caplog.at_level(logging.INFO):
        system = PerformanceMonitor(MonitoringConfig(enable_gpu_monitoring=True)).get_system_metrics()
    assert any(key.startswith("gpu_") for key in system) == has_gpu
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
    assert 0 <= system["cpu_usage_percent"] <= 100 and system["process_rss_bytes"] > 0


def test_snapshots_of_several_processes_merge_into_one():
    """The Ray engine's metrics hub merges every actor's and replica's monitor."""
    from pipeline.monitoring.keys import END_TO_END, Count, Gauge, Subject
    from pipeline.monitoring.monitor import PerformanceMonitor
    from pipeline.monitoring.store import merge_snapshots

    mqtt, meso = Subject.sink("mqtt"), Subject.model("meso4")
    a, b = PerformanceMonitor(), PerformanceMonitor()
    for monitor, connected, published, depth, latency in ((a, 1, 5, 3, 0.02), (b, 0, 7, 4, 0.2)):
        monitor.set_gauge(mqtt, Gauge.CONNECTED, connected)
        monitor.set_gauge(mqtt, Gauge.OUTBOX_DEPTH, depth)
        monitor.count(mqtt, Count.PUBLISHED, published)
        monitor.record_latency(END_TO_END, latency)
        monitor.record_inference(meso, 0.01, images=4)
    a.set_gauge(Subject.stream("cam1"), Gauge.UP, 1)
    merged = {s.subject: s for s in merge_snapshots([a.snapshot(), b.snapshot()])}
    assert merged[mqtt].counter(Count.PUBLISHED) == 12
    assert merged[mqtt].gauge(Gauge.CONNECTED) == 0  # one client is down: the cluster's is
    assert merged[mqtt].gauge(Gauge.OUTBOX_DEPTH) == 7  # queues add up
    assert merged[END_TO_END].latency.count == 2 and merged[END_TO_END].latency.total == pytest.approx(0.22)
    assert merged[meso].calls == 2 and merged[meso].items == 8 and merged[meso].successes == 2
    assert merged[Subject.stream("cam1")].gauge(Gauge.UP) == 1  # seen by one process only: as it is
