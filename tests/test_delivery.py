"""The whole path with real parts: the runtime and Prometheus (/metrics scraped and parsed while the
pipeline runs). Broker failures under load are in tests/reliability/test_broker_faults.py."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.monitor import PerformanceMonitor
from pipeline.runtime import Runtime, load_detectors
from sinks import PrometheusConfig, PrometheusExporter
from tests.test_runtime import make_config

pytestmark = pytest.mark.weights


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def status(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_metrics_move_while_the_pipeline_runs(weights_dir, face_clip):
    config = make_config(weights_dir, [{"id": "cam1", "url": str(face_clip), "pace": "realtime"}])
    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(PrometheusConfig(port=0), monitor).start()
    assert exporter.config.host == "127.0.0.1"
    try:
        assert status(exporter.port, "/healthz") == 200 and status(exporter.port, "/readyz") == 503

        async def scenario():
            runtime = Runtime(config, load_detectors(config), [], monitor)
            task = asyncio.create_task(runtime.run())
            await asyncio.sleep(2.5)
            first, ready = scrape(exporter.port), status(exporter.port, "/readyz")
            await asyncio.sleep(1.5)
            second = scrape(exporter.port)
            runtime.stop.set()
            await task
            return first, ready, second

        first, ready, second = asyncio.run(scenario())
    finally:
        exporter.close()
    assert ready == 200
    for name in ("dfstream_frames_decoded_total{stream=cam1}", "dfstream_verdicts_total{label=real,stream=cam1}",
                 "dfstream_end_to_end_latency_seconds_count{}", "dfstream_detector_batch_size_count{detector=meso4}"):  # fmt: skip
        assert second[name] > first[name] > 0, name
    assert first["dfstream_stream_up{stream=cam1}"] == 1 and first["dfstream_models_ready{}"] == 2
    assert "dfstream_end_to_end_latency_seconds_bucket{le=0.15}" in first
    assert first["dfstream_stream_expected_fps{stream=cam1}"] == pytest.approx(30)
    assert second["process_resident_memory_bytes{}"] > 50e6
