"""MQTT against a real Mosquitto (password file, ACL, TLS): topics, payload schemas, Home
Assistant discovery. Broker failures are in tests/reliability/test_broker_faults.py."""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import jsonschema
import pytest

from pipeline.runtime.events import Alert, StreamState, StreamStatus
from sinks.mqtt import MqttConfig, MqttSink
from tests.mqtt_broker import USERS, Subscriber, payload_of, schema_for, verdict


def test_topics_payloads_and_discovery_follow_the_schemas(mosquitto, creds):
    async def scenario():
        async with Subscriber(mosquitto) as sub:
            sink = MqttSink(MqttConfig(port=mosquitto.port, verdict_interval_s=1.0))
            async with sink:
                await sink.publish(StreamStatus("cam1", "online", None, time.time()))
                await sink.publish(StreamState("cam1", "real", {1: "real"}, 0.1, time.time()))
                start = time.time()
                for i in range(1, 11):  # ten verdicts within a second: one message, then the label change
                    await sink.publish(verdict("cam1", i, ts=start + i * 0.05, label="fake" if i == 10 else "real"))
                await sink.publish(
                    Alert("high_error_rate", 0.2, 0.1, "meso4", "firing", time.time(), "meso4: error_rate is 0.2")
                )
                await sub.wait_for(lambda: len(sub.on("/verdict")) == 2 and sub.on("/alerts"))
            await sub.wait_for(lambda: "offline" in sub.on("/available"))
            return sub.messages

    messages = asyncio.run(scenario())
    topics = [str(m.topic) for m in messages]
    for message in messages:
        jsonschema.validate(payload_of(message), schema_for(str(message.topic)))
    assert topics[0] == "dfstream/available" and payload_of(messages[0]) == "online"
    assert topics[-1] == "dfstream/available" and payload_of(messages[-1]) == "offline"
    assert {
        "homeassistant/binary_sensor/dfstream/cam1_deepfake/config",
        "homeassistant/sensor/dfstream/cam1_fake_probability/config",
    } <= set(topics)
    binary = next(payload_of(m) for m in messages if "binary_sensor" in str(m.topic))
    assert binary["device_class"] == "problem" and binary["state_topic"] == "dfstream/cam1/state"
    assert [a["topic"] for a in binary["availability"]] == ["dfstream/available", "dfstream/cam1/status"]
    verdicts = [payload_of(m) for m in messages if str(m.topic) == "dfstream/cam1/verdict"]
    assert [(v["seq"], v["verdict_seq"], v["label"]) for v in verdicts] == [(1, 1, "real"), (2, 10, "fake")]
    (alert,) = [payload_of(m) for m in messages if str(m.topic) == "dfstream/alerts"]
    assert alert["type"] == "high_error_rate" and alert["state"] == "firing" and alert["subject"] == "meso4"
    retained = {str(m.topic) for m in messages if m.retain}
    assert retained == set()  # a live subscriber gets them as live messages...


def test_retained_topics_reach_a_late_subscriber(mosquitto, creds):
    async def scenario():
        sink = MqttSink(MqttConfig(port=mosquitto.port))
        async with sink:
            await sink.publish(StreamStatus("cam1", "reconnecting", "no frame for 10s", time.time()))
            await sink.publish(StreamState("cam1", "no_face", {}, None, time.time()))
            await asyncio.sleep(0.5)
            async with Subscriber(mosquitto) as late:  # ...and a subscriber that comes later finds them retained
                await late.wait_for(lambda: late.on("/status") and late.on("/state") and late.on("/available"))
                result = {str(m.topic): (payload_of(m), m.retain) for m in late.messages}
        return result

    seen = asyncio.run(scenario())
    assert seen["dfstream/cam1/status"] == ("reconnecting", True) and seen["dfstream/available"] == ("online", True)
    assert seen["dfstream/cam1/state"][0]["label"] == "no_face" and seen["dfstream/cam1/state"][1]


def test_mqtt5_verdicts_carry_a_message_expiry(mosquitto, creds):
    async def scenario():
        async with aiomqtt.Client(
            "127.0.0.1",
            mosquitto.port,
            username="reader",
            password=USERS["reader"],
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.subscribe("dfstream/+/verdict", qos=1)
            sink = MqttSink(MqttConfig(port=mosquitto.port, protocol="5", message_expiry_s=120))
            async with sink:
                await sink.publish(verdict("cam1", 1))
                message = await asyncio.wait_for(anext(client.messages), 10)
            return message

    message = asyncio.run(scenario())
    assert 100 < message.properties.MessageExpiryInterval <= 120


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_tls_with_the_brokers_ca(mosquitto, creds, protocol):
    async def scenario():
        async with Subscriber(mosquitto) as sub:
            tls = {"ca_file": mosquitto.ca_file}
            sink = MqttSink(MqttConfig(host="localhost", port=mosquitto.tls_port, protocol=protocol, tls=tls))
            async with sink:
                await sink.publish(verdict("cam9", 1))
                await sub.wait_for(lambda: sub.on("cam9/verdict"))

    asyncio.run(scenario())
