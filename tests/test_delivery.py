"""The whole path with real parts: runtime → MQTT (a real Mosquitto, SIGKILLed mid-run) and
Prometheus (/metrics scraped and parsed while the pipeline runs)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import defaultdict

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.monitor import PerformanceMonitor
from pipeline.runtime import Runtime, load_detectors
from sinks import MqttSink, PrometheusConfig, PrometheusExporter, build_sinks
from tests.mqtt_broker import Mosquitto
from tests.test_mqtt import Subscriber, creds, payload_of, schema_for  # noqa: F401  (fixture)
from tests.test_runtime import make_config

pytestmark = pytest.mark.weights


def test_no_verdict_lost_across_a_broker_killed_and_restarted(weights_dir, face_clip, creds):  # noqa: F811
    broker = Mosquitto(persistent=True).start()
    config = make_config(
        weights_dir,
        [{"id": "camA", "url": str(face_clip), "pace": "realtime", "loop": True},
         {"id": "camB", "url": str(face_clip), "pace": "realtime", "loop": True}],  # fmt: skip
        sinks={"mqtt": {"port": broker.port, "verdict_interval_s": 0, "retry_initial_s": 0.2, "retry_max_s": 1.0,
                        "publish_timeout_s": 1.0, "flush_timeout_s": 10}},  # fmt: skip
        faces={"detect_every": 5},
    )
    monitor = PerformanceMonitor(config.monitoring)
    sinks = build_sinks(config.sinks, monitor)
    mqtt = next(s for s in sinks if isinstance(s, MqttSink))
    timeline = {}

    async def scenario():
        async with Subscriber(broker) as sub:
            await asyncio.sleep(2.5)  # the subscriber's session is on disk before the kill
            runtime = Runtime(config, load_detectors(config), sinks, monitor)
            task = asyncio.create_task(runtime.run())
            await sub.wait_for(lambda: len(sub.on("/verdict")) > 20, 30)
            broker.kill()
            timeline["killed"] = time.monotonic()
            await asyncio.sleep(3.0)
            timeline["queued"] = mqtt.outbox_depth()
            broker.start()
            timeline["restarted"] = time.monotonic()
            await sub.wait_for(lambda: mqtt.outbox_depth() == 0, 30)
            timeline["drained"] = time.monotonic()
            await asyncio.sleep(1.0)
            runtime.stop.set()
            await asyncio.wait_for(task, 30)
            await sub.wait_for(lambda: "offline" in sub.on("/available"), 15)
            return sub

    try:
        sub = asyncio.run(scenario())
    finally:
        broker.close()
    seqs = defaultdict(set)
    for message in sub.messages:
        jsonschema.validate(payload_of(message), schema_for(str(message.topic)))
        if str(message.topic).endswith("/verdict"):
            payload = payload_of(message)
            seqs[payload["stream"]].add(payload["seq"])
    published = mqtt._verdict_seq
    print(f"queued while down: {timeline['queued']}, drained {timeline['drained'] - timeline['restarted']:.2f}s after the "
          f"restart; verdicts published {published}")  # fmt: skip
    assert timeline["queued"] > 30  # verdicts really piled up while the broker was dead
    for stream in ("camA", "camB"):
        assert seqs[stream] == set(range(1, published[stream] + 1)), f"{stream}: lost {set(range(1, published[stream] + 1)) - seqs[stream]}"
    assert monitor.get_performance_report()["stages"]["sink:mqtt"]["counters"].get("dropped:outbox_full", 0) == 0


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
