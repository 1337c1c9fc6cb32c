"""MQTT: verdicts, stream status and state, alerts and Home Assistant discovery, never lost while
the broker is away (within the outbox's capacity).

Topics (``p`` = ``topic_prefix``):
    p/available          online | offline   retained; Last Will offline
    p/<stream>/status    online | reconnecting | offline   retained
    p/<stream>/state     JSON stream state   retained (republished every state_refresh_s)
    p/<stream>/verdict   JSON verdict per track: on a label change, else at most every verdict_interval_s
    p/<stream>/voice     JSON voice verdict, every one (a window every voice.hop_s) while the voice is judged
    p/alerts             JSON alert, firing | resolved

Delivery: every message goes through one bounded, ordered outbox; a message leaves it only once
the broker acknowledged it and every message before it (QoS >= 1), so a dead connection means a
retry on the next one, never a loss (at least once: a subscriber may see a duplicate, never a
gap). Up to ``max_inflight`` messages are on their way at once: one at a time, a broker 100 ms
away took 10 messages a second; each in flight adds one per round trip (within the broker's
Receive Maximum, which paho honours). When the outbox is full,
the oldest message is dropped and counted. ``seq`` in a verdict counts that stream's verdict
messages, so a subscriber can prove nothing was lost. Reconnection waits a capped, jittered
exponential backoff. Credentials come from DFSTREAM_MQTT_USERNAME / DFSTREAM_MQTT_PASSWORD.

With ``outbox.durable`` the outbox is also on disk (``sinks/spool.py``): a message counts as
accepted once it is written there, leaves it when the broker acknowledged it, and what a killed
dfstream left is sent first at the next start, in order, with the same ``seq`` (which goes on from
the last one handed out). ``outbox.max_mb`` bounds it in bytes as ``outbox_capacity`` does in
messages; beyond either the oldest is dropped and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator, model_validator

from core.backoff import Backoff
from core.lifecycle import Lifecycle
from core.queues import DropOldestQueue
from core.strict import StrictModel
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import Alert, Event, StreamState, StreamStatus, Verdict, VoiceVerdict
from pipeline.runtime.numbering import Counting, Numbering

from .spool import Spool, SpoolConfig, SpoolError

log = logging.getLogger(__name__)

MQTT = Subject.sink("mqtt")
SPOOL_PATH = Path("dfstream-data/spool/mqtt.sqlite3")  # outbox.durable with no path: beside serve's default data


class MqttTls(StrictModel):
    ca_file: str | None = None  # None: the system's trusted CAs
    cert_file: str | None = None  # client certificate, for brokers that require one
    key_file: str | None = None
    insecure: bool = False  # skip the hostname check: for tests against self-made certificates only

    @model_validator(mode="after")
    def _verify_pair(self) -> "MqttTls":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "dfstream"
    client_id: str = Field(default_factory=lambda: f"dfstream-{socket.gethostname()}")  # stable across restarts
    qos: Literal[0, 1, 2] = 1
    protocol: Literal["3.1.1", "5"] = "5"
    tls: MqttTls | None = None
    keepalive_s: int = Field(30, ge=5)
    outbox_capacity: int = Field(10000, ge=1)
    outbox: SpoolConfig = Field(default_factory=SpoolConfig)  # durable: on disk, across a crash of dfstream
    verdict_interval_s: float = Field(1.0, ge=0.0)
    message_expiry_s: int | None = Field(3600, ge=1)  # MQTT 5: the broker drops verdicts and alerts older than this
    state_refresh_s: float = Field(30.0, gt=0.0)  # retained state is refreshed so Home Assistant's expire_after holds
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    retry_initial_s: float = Field(0.5, gt=0.0)
    retry_max_s: float = Field(30.0, gt=0.0)
    flush_timeout_s: float = Field(3.0, ge=0.0)  # at shutdown, how long to wait for the broker to take the outbox
    # a PUBACK lost with its connection is only noticed by this timeout; the message is then resent
    publish_timeout_s: float = Field(5.0, gt=0.0)
    # messages sent and not yet acknowledged; throughput to a distant broker is about this many per
    # round trip (python -m bench.mqtt_distance)
    max_inflight: int = Field(100, ge=1, le=65535)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if not value or re.search(r"[#+\s]", value) or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"{value!r} must be a topic without wildcards, spaces or leading/trailing '/'")
        return value


@dataclass
class MqttMessage:
    topic: str
    payload: bytes
    retain: bool
    expires: bool = False
    n: int = 0  # its place in the outbox order: acknowledged in order, re-sent from the first unacknowledged

    def to_record(self) -> bytes:
        """As the spool keeps it: a JSON header line, then the payload as it is."""
        header = {"topic": self.topic, "retain": self.retain, "expires": self.expires}
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.payload

    @classmethod
    def from_record(cls, n: int, record: bytes) -> MqttMessage:
        header, _, payload = record.partition(b"\n")
        fields = json.loads(header)
        return cls(fields["topic"], payload, bool(fields["retain"]), bool(fields["expires"]), n)


class MqttSink(Lifecycle):
    def __init__(
        self, config: MqttConfig, monitor: PerformanceMonitor | None = None, numbering: Numbering | None = None
    ):
        """``numbering``: where each stream's ``seq`` comes from (from 1 unless it outlives this sink, as under Ray)."""
        super().__init__("mqtt")
        self.config = config
        self.monitor = monitor or PerformanceMonitor()
        self._username = os.environ.get("DFSTREAM_MQTT_USERNAME") or None
        self._password = os.environ.get("DFSTREAM_MQTT_PASSWORD") or None
        self._outbox: DropOldestQueue[MqttMessage] = DropOldestQueue(config.outbox_capacity, on_drop=self._dropped)
        self._retained: dict[
            str, MqttMessage
        ] = {}  # republished on every connect: a restarted broker may have lost them
        self._wakeup = asyncio.Event()  # set by a new message and by each acknowledgement
        self._numbers = itertools.count(1)
        self._streams: set[str] = set()
        self._voices: set[str] = set()
        self._numbering = numbering or Counting()
        self._own_numbering = numbering is None  # resumed from the spool's numbers (under Ray they live elsewhere)
        self._verdict_seq: dict[str, int] = {}  # the last made per stream
        outbox = config.outbox
        self._spool = Spool(outbox.path or SPOOL_PATH, outbox.sync, "mqtt") if outbox.durable else None
        self._spool_max = int(outbox.max_mb * 2**20)
        self._last_verdict: dict[tuple[str, int], tuple[float, str]] = {}
        self.monitor.set_gauge(MQTT, Gauge.OUTBOX_CAPACITY, config.outbox_capacity)
        self.monitor.set_gauge(MQTT, Gauge.CONNECTED, 0)

    @property
    def available_topic(self) -> str:
        return f"{self.config.topic_prefix}/available"

    # ---- the Sink interface ------------------------------------------------------------------
    async def _open(self) -> None:
        if self._spool is not None:
            self._resume(self._spool)
        self.spawn("supervisor", self._supervise)

    def _resume(self, spool: Spool) -> None:
        """What a previous run accepted and did not deliver goes first, with its numbers."""
        recovered = spool.open()
        self.monitor.count(MQTT, Count.SPOOL_LOST, recovered.lost)
        self._numbers = itertools.count(recovered.last_n + 1)
        for n, record in recovered.records:
            message = MqttMessage.from_record(n, record)
            if message.topic == self.available_topic:
                spool.remove_through(n)  # "offline" from the last shutdown: this run says online on connect
                continue
            self._outbox.put(message)
        if self._own_numbering:
            self._numbering = Counting(recovered.numbers)
        for key, value in recovered.numbers.items():
            if key.endswith("/mqtt"):
                self._verdict_seq[key.removesuffix("/mqtt")] = value
        self.monitor.set_gauge(MQTT, Gauge.SPOOL_BYTES, spool.bytes)
        self.monitor.set_gauge(MQTT, Gauge.OUTBOX_DEPTH, len(self._outbox))
        if len(self._outbox):
            log.info("mqtt: %d message(s) the last run left undelivered go first (%s)", len(self._outbox), spool.path)

    async def publish(self, event: Event) -> None:
        p = self.config.topic_prefix
        if isinstance(event, StreamStatus):
            self._see_stream(event.stream)
            status = "reconnecting" if event.status == "connecting" else event.status
            self._enqueue(f"{p}/{event.stream}/status", status, retain=True)
        elif isinstance(event, StreamState):
            self._see_stream(event.stream)
            self._enqueue(f"{p}/{event.stream}/state", event.to_dict(), retain=True)
        elif isinstance(event, Verdict):
            self._see_stream(event.stream)
            if self._due(event):
                key = f"{event.stream}/mqtt"
                seq = self._verdict_seq[event.stream] = self._numbering.next(key)
                payload = {**event.to_dict(), "seq": seq, "verdict_seq": event.seq}
                self._enqueue(f"{p}/{event.stream}/verdict", payload, retain=False, expires=True, numbers={key: seq})
        elif isinstance(event, VoiceVerdict):
            self._see_stream(event.stream)
            self._see_voice(event.stream)
            self._enqueue(f"{p}/{event.stream}/voice", event.to_dict(), retain=False, expires=True)
        elif isinstance(event, Alert):
            self._enqueue(f"{p}/alerts", event.to_dict(), retain=False, expires=True)

    async def _close(self) -> None:
        """Queue ``offline``, give the broker ``flush_timeout_s`` to take everything; leaving disconnects."""
        self._enqueue(self.available_topic, "offline", retain=True)
        deadline = time.monotonic() + self.config.flush_timeout_s
        while len(self._outbox) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if len(self._outbox):
            log.error(
                "mqtt: %d messages not delivered at shutdown (broker %s:%d unreachable)%s",
                len(self._outbox),
                self.config.host,
                self.config.port,
                f"; kept in {self._spool.path} for the next start" if self._spool is not None else "",
            )
        if self._spool is not None:
            self._spool.close()

    def outbox_depth(self) -> int:
        return len(self._outbox)

    def queued(self) -> list[MqttMessage]:
        """The messages waiting for the broker, oldest first."""
        return list(self._outbox)

    def last_verdict_seq(self, stream: str) -> int:
        """The ``seq`` of the last verdict message made for ``stream``: a subscriber that saw fewer
        than this many lost some."""
        return self._verdict_seq.get(stream, 0)

    # ---- building messages ---------------------------------------------------------------------
    def _due(self, verdict: Verdict) -> bool:
        key = (verdict.stream, verdict.track_id)
        last = self._last_verdict.get(key)
        if last is not None and last[1] == verdict.label and verdict.ts - last[0] < self.config.verdict_interval_s:
            return False
        self._last_verdict[key] = (verdict.ts, verdict.label)
        return True

    def _see_stream(self, stream: str) -> None:
        self._discover(stream, self._streams, discovery_messages)

    def _see_voice(self, stream: str) -> None:
        """The voice's Home Assistant entities, once its first voice verdict shows it is judged."""
        self._discover(stream, self._voices, voice_discovery_messages)

    def _discover(self, stream: str, seen: set[str], messages: Any) -> None:
        """``messages(config, stream)``'s discovery configs, once per stream."""
        if stream in seen:
            return
        seen.add(stream)
        if self.config.discovery:
            for topic, payload in messages(self.config, stream).items():
                self._enqueue(topic, payload, retain=True)

    def _enqueue(
        self, topic: str, payload: Any, retain: bool, expires: bool = False, numbers: dict[str, int] | None = None
    ) -> None:
        """``numbers``: the sequence numbers this message carries, kept with it in the spool."""
        # allow_nan=False: NaN is not JSON; a payload holding one fails here, loudly, not in every client
        data = (
            payload.encode()
            if isinstance(payload, str)
            else json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        )
        message = MqttMessage(topic, data, retain, expires, next(self._numbers))
        if retain:
            self._retained[topic] = message
        if self._spool is not None:
            self._spool_append(self._spool, message, numbers)
        self._outbox.put(message)
        self.monitor.set_gauge(MQTT, Gauge.OUTBOX_DEPTH, len(self._outbox))
        self._wakeup.set()

    def _spool_append(self, spool: Spool, message: MqttMessage, numbers: dict[str, int] | None) -> None:
        try:
            spool.append(message.n, message.to_record(), numbers)
            self.problems.clear("spool", "mqtt: writing to the spool %s again", spool.path)
        except SpoolError as exc:
            # still queued in memory: delivered while dfstream runs, lost only if it dies first
            self.monitor.count(MQTT, Count.SPOOL_ERRORS)
            self.problems("spool", "%s; the message is kept in memory only", exc, level=logging.ERROR)
        while spool.bytes > self._spool_max and len(self._outbox):
            self._dropped(self._outbox.get_nowait(), "spool_full")
        self.monitor.set_gauge(MQTT, Gauge.SPOOL_BYTES, spool.bytes)

    def _dropped(self, message: MqttMessage, reason: str) -> None:
        """The oldest message dropped (the outbox over its capacity in messages or in bytes)."""
        self.monitor.count(MQTT, Count.MESSAGES_DROPPED)
        if self._spool is not None:
            self._spool.remove_through(message.n)

    def _delivered(self, n: int) -> None:
        """The broker acknowledged everything up to ``n``: out of the spool too."""
        if self._spool is not None:
            self._spool.remove_through(n)
            self.monitor.set_gauge(MQTT, Gauge.SPOOL_BYTES, self._spool.bytes)

    # ---- delivery -------------------------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        tls_params = None
        if cfg.tls is not None:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=cfg.tls.ca_file,
                certfile=cfg.tls.cert_file,
                keyfile=cfg.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=cfg.client_id,
            username=self._username,
            password=self._password,
            protocol=aiomqtt.ProtocolVersion.V5 if cfg.protocol == "5" else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.available_topic, b"offline", qos=1, retain=True),
            keepalive=cfg.keepalive_s,
            timeout=cfg.publish_timeout_s,
            max_inflight_messages=cfg.max_inflight,
            tls_params=tls_params,
            tls_insecure=cfg.tls.insecure if cfg.tls is not None else None,
        )
        # aiomqtt warns on every publish beyond 10 unacknowledged: that many is the design here
        client.pending_calls_threshold = cfg.max_inflight
        return client

    async def _supervise(self) -> None:
        cfg = self.config
        backoff = Backoff(cfg.retry_initial_s, cfg.retry_max_s)
        while True:
            try:
                async with self._client() as client:
                    self._set_connected(True)
                    self.problems.clear("broker", "mqtt: connected to %s:%d again", cfg.host, cfg.port)
                    backoff.reset()
                    await client.publish(self.available_topic, b"online", qos=1, retain=True)
                    for message in list(self._retained.values()):
                        if message.topic != self.available_topic:
                            await self._send(client, message)
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                self._set_connected(False)
                self.monitor.count(MQTT, Count.CONNECTION_ERRORS)
                self.problems(
                    "broker",
                    "mqtt: broker %s:%d: %s; retrying with backoff (outbox %d/%d)",
                    cfg.host,
                    cfg.port,
                    exc,
                    len(self._outbox),
                    cfg.outbox_capacity,
                    level=logging.ERROR,
                )
                await asyncio.sleep(backoff.next())

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Keep up to ``max_inflight`` messages from the head of the outbox in flight; a message
        leaves the outbox when it and all before it are acknowledged. A failed send ends the
        connection: what was in flight is still in the outbox and goes again on the next one."""
        refresh_at = time.monotonic() + self.config.state_refresh_s
        inflight: deque[tuple[int, asyncio.Task[None]]] = deque()
        sent = 0  # the ``n`` of the last message handed to this connection
        try:
            while True:
                self._wakeup.clear()
                failed = next((t for _, t in inflight if t.done() and not t.cancelled() and t.exception()), None)
                if failed is not None:
                    failed.result()  # a failure ends this connection
                acknowledged = 0
                while inflight and inflight[0][1].done():
                    n, task = inflight.popleft()
                    while len(self._outbox) and self._outbox.peek().n <= n:
                        self._outbox.get_nowait()
                    acknowledged = n
                if acknowledged:
                    self._delivered(acknowledged)
                for message in self._outbox:
                    if len(inflight) >= self.config.max_inflight:
                        break
                    if message.n > sent:
                        task = asyncio.create_task(self._send(client, message))
                        task.add_done_callback(lambda _: self._wakeup.set())
                        inflight.append((message.n, task))
                        sent = message.n
                self.monitor.set_gauge(MQTT, Gauge.OUTBOX_DEPTH, len(self._outbox))
                if inflight or len(self._outbox):
                    await self._wakeup.wait()
                    continue
                try:
                    await asyncio.wait_for(self._wakeup.wait(), max(0.0, refresh_at - time.monotonic()))
                except TimeoutError:
                    refresh_at = time.monotonic() + self.config.state_refresh_s
                    for message in list(self._retained.values()):
                        if message.topic.endswith("/state"):
                            self._outbox.put(replace(message, n=next(self._numbers)))
        finally:
            for _, task in inflight:
                task.cancel()
            await asyncio.gather(*(task for _, task in inflight), return_exceptions=True)

    async def _send(self, client: aiomqtt.Client, message: MqttMessage) -> None:
        properties = None
        if message.expires and self.config.protocol == "5" and self.config.message_expiry_s:
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = self.config.message_expiry_s
        await client.publish(
            message.topic, message.payload, qos=self.config.qos, retain=message.retain, properties=properties
        )
        self.monitor.count(MQTT, Count.PUBLISHED)

    def _set_connected(self, connected: bool) -> None:
        self.monitor.set_gauge(MQTT, Gauge.CONNECTED, 1 if connected else 0)


def _discovery_common(config: MqttConfig, stream: str) -> dict[str, Any]:
    p, node, object_id = config.topic_prefix, _object_id(config.topic_prefix), _object_id(stream)
    return {
        "state_topic": f"{p}/{stream}/state",
        "availability": [
            {"topic": f"{p}/available", "payload_available": "online", "payload_not_available": "offline"},
            {"topic": f"{p}/{stream}/status", "value_template": "{{ 'online' if value == 'online' else 'offline' }}"},
        ],
        "availability_mode": "all",
        "expire_after": int(3 * config.state_refresh_s),
        "device": {
            "identifiers": [f"{node}_{object_id}"],
            "name": f"dfstream {stream}",
            "manufacturer": "dfstream",
            "model": "deepfake detection",
        },
    }


def discovery_messages(config: MqttConfig, stream: str) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: a ``binary_sensor`` (deepfake detected) and a ``sensor``
    (fake probability) per stream, available while both dfstream and the stream are online."""
    common = _discovery_common(config, stream)
    node, object_id, prefix = _object_id(config.topic_prefix), _object_id(stream), config.discovery_prefix
    return {
        f"{prefix}/binary_sensor/{node}/{object_id}_deepfake/config": {
            **common,
            "name": "Deepfake detected",
            "unique_id": f"{node}_{object_id}_deepfake",
            "device_class": "problem",
            # the one answer: on while an incident (a fake face or voice) is open, not with each label
            "value_template": "{{ 'ON' if value_json.alarm else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
        },
        f"{prefix}/sensor/{node}/{object_id}_fake_probability/config": {
            **common,
            "name": "Fake probability",
            "unique_id": f"{node}_{object_id}_fake_probability",
            "state_class": "measurement",
            "value_template": "{{ value_json.fake_probability if value_json.fake_probability is not none else 0 }}",
        },
    }


def voice_discovery_messages(config: MqttConfig, stream: str) -> dict[str, dict[str, Any]]:
    """The voice's entities on the stream's device: a ``binary_sensor`` (voice deepfake detected)
    and a ``sensor`` (the voice's state: no_audio, no_speech, real, fake, uncertain), from the
    same retained state."""
    common = _discovery_common(config, stream)
    node, object_id, prefix = _object_id(config.topic_prefix), _object_id(stream), config.discovery_prefix
    return {
        f"{prefix}/binary_sensor/{node}/{object_id}_voice_deepfake/config": {
            **common,
            "name": "Voice deepfake detected",
            "unique_id": f"{node}_{object_id}_voice_deepfake",
            "device_class": "problem",
            "value_template": "{{ 'ON' if 'voice' in value_json.looks_fake else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
        },
        f"{prefix}/sensor/{node}/{object_id}_voice/config": {
            **common,
            "name": "Voice",
            "unique_id": f"{node}_{object_id}_voice",
            "device_class": "enum",
            "options": ["no_audio", "no_speech", "real", "fake", "uncertain"],
            "value_template": "{{ value_json.voice if value_json.voice is not none else 'no_audio' }}",
        },
    }


def _object_id(name: str) -> str:
    """Home Assistant ids allow only [A-Za-z0-9_-]. Stream ids may also hold '.', so a changed
    name gets a short digest of the original: 'cam.1' and 'cam_1' stay two devices."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return safe if safe == name else f"{safe}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"
