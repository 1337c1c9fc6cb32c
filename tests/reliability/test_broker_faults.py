"""The MQTT broker misbehaves: killed and restarted under load, unreachable when dfstream starts,
wrong credentials, a TLS certificate from another CA, an outbox that overflows. Detection goes on,
one clear error is logged (not one per retry), and every accepted verdict is delivered or counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import jsonschema
import pytest

from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from pipeline.runtime.runtime import Runtime
from sinks import MqttSink, build_sinks
from sinks.mqtt import MqttConfig
from tests.helpers import MemorySink, load_detectors, make_config, until
from tests.mqtt_broker import USERS, Mosquitto, Subscriber, payload_of, schema_for, verdict

MQTT = Subject.sink("mqtt")


@pytest.mark.weights
def test_no_verdict_lost_across_a_broker_killed_and_restarted(weights_dir, face_clip, creds, caplog, figures):
    broker = Mosquitto(persistent=True).start()
    config = make_config(
        weights_dir,
        [
            {"id": "camA", "url": str(face_clip), "pace": "realtime", "loop": True},
            {"id": "camB", "url": str(face_clip), "pace": "realtime", "loop": True},
        ],
        sinks={
            "mqtt": {
                "port": broker.port,
                "verdict_interval_s": 0,
                "retry_initial_s": 0.2,
                "retry_max_s": 1.0,
                "publish_timeout_s": 1.0,
                "flush_timeout_s": 10,
            }
        },
        faces={"detect_every": 5},
    )
    monitor = PerformanceMonitor(config.monitoring)
    sinks = build_sinks(config.sinks, monitor, LiveTap(), [s.id for s in config.streams])
    mqtt = next(s for s in sinks if isinstance(s, MqttSink))
    memory = MemorySink()  # what the pipeline decided, whatever the broker does
    timeline = {}

    async def scenario():
        async with Subscriber(broker) as sub:
            await asyncio.sleep(2.5)  # the subscriber's session is on disk before the kill
            runtime = Runtime(config, load_detectors(config), [*sinks, memory], monitor)
            task = asyncio.create_task(runtime.run())
            await sub.wait_for(lambda: len(sub.on("/verdict")) > 20, 30)
            broker.kill()
            timeline["killed"], judged = time.monotonic(), len(memory.verdicts())
            await asyncio.sleep(3.0)
            timeline["queued"] = mqtt.outbox_depth()
            timeline["judged_while_down"] = len(memory.verdicts()) - judged
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
    published = {stream: mqtt.last_verdict_seq(stream) for stream in ("camA", "camB")}
    lost = {stream: set(range(1, published[stream] + 1)) - seqs[stream] for stream in ("camA", "camB")}
    errors = [r.getMessage() for r in caplog.records if r.name == "sinks.mqtt" and r.levelno >= logging.WARNING]
    figures(
        queued_while_down=timeline["queued"],
        judged_while_down=timeline["judged_while_down"],
        drained_s=timeline["drained"] - timeline["restarted"],
        published=sum(published.values()),
        lost=sum(len(v) for v in lost.values()),
        error_lines=len(errors),
    )
    assert timeline["queued"] > 30  # verdicts really piled up while the broker was dead
    assert timeline["judged_while_down"] > 30  # and detection went on
    assert lost == {"camA": set(), "camB": set()}
    assert len(errors) <= 3, errors  # lost, the first failed retry, back: not one line per retry
    assert monitor.counter(MQTT, Count.MESSAGES_DROPPED) == 0


@pytest.mark.parametrize(
    "case, expected_log",
    [
        ("wrong_password", "Not authorized"),
        ("wrong_ca", "CERTIFICATE_VERIFY_FAILED"),
        ("no_broker", "Connection refused"),
    ],
)
def test_connection_problems_are_one_clear_error_and_counted(
    mosquitto, monkeypatch, caplog, case, expected_log, figures
):
    monkeypatch.setenv("DFSTREAM_MQTT_USERNAME", "dfstream")
    monkeypatch.setenv("DFSTREAM_MQTT_PASSWORD", "wrong" if case == "wrong_password" else USERS["dfstream"])
    config = {"port": mosquitto.port, "retry_initial_s": 0.05, "retry_max_s": 0.1, "flush_timeout_s": 0.2}
    if case == "wrong_ca":
        config.update(host="localhost", port=mosquitto.tls_port, tls={"ca_file": str(mosquitto.dir / "other.crt")})
    if case == "no_broker":
        config.update(port=9)
    monitor = PerformanceMonitor()

    async def scenario():
        sink = MqttSink(MqttConfig(**config), monitor)
        async with sink:
            for i in range(1, 4):
                await sink.publish(verdict("cam1", i, ts=i * 2.0))
            await until(lambda: monitor.counter(MQTT, Count.CONNECTION_ERRORS) >= 3, 10, "three failed connections")
            depth = sink.outbox_depth()
        return depth

    depth = asyncio.run(scenario())
    connection_errors = monitor.counter(MQTT, Count.CONNECTION_ERRORS)
    assert connection_errors >= 3 and monitor.gauge(MQTT, Gauge.CONNECTED) == 0
    assert depth >= 3  # nothing accepted was thrown away
    errors = [r.getMessage() for r in caplog.records if r.name == "sinks.mqtt" and r.levelname == "ERROR"]
    figures(connection_errors=connection_errors, error_lines=len(errors), kept=depth)
    assert expected_log in errors[0] and len([e for e in errors if "retrying" in e]) == 1
    assert all(USERS["dfstream"] not in r.getMessage() for r in caplog.records)


def test_outbox_overflow_drops_the_oldest_and_delivers_the_rest_in_order(creds, figures):
    broker = Mosquitto(persistent=True).start()
    monitor = PerformanceMonitor()

    async def scenario():
        async with Subscriber(broker) as sub:
            await asyncio.sleep(2.5)  # the subscriber's session is saved (autosave every second)
            broker.kill()  # the broker is unreachable when dfstream starts
            sink = MqttSink(
                MqttConfig(port=broker.port, outbox_capacity=50, retry_initial_s=0.1, retry_max_s=0.2, discovery=False),
                monitor,
            )
            async with sink:
                for i in range(1, 201):
                    await sink.publish(verdict("cam1", i, ts=float(i)))  # 1 s apart: every one is due
                broker.start()
                await sub.wait_for(lambda: sink.outbox_depth() == 0)
            await sub.wait_for(lambda: "offline" in sub.on("/available"))
            return [v["seq"] for v in sub.on("/verdict")]

    try:
        seqs = asyncio.run(scenario())
    finally:
        broker.close()
    # 200 verdicts into 50 slots: the first 150 were pushed out, and counted
    dropped = monitor.counter(MQTT, Count.MESSAGES_DROPPED)
    figures(accepted=200, delivered=len(seqs), dropped_counted=dropped)
    assert dropped == 150
    assert seqs == list(range(151, 201))
