"""A real Mosquitto for tests: password file, ACL, a plain and a TLS listener on loopback, with a
CA made by the test. Can be SIGKILLed and restarted on the same ports. And a real subscriber that
reads what dfstream publishes, with the schemas its payloads follow."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt
import pytest

from pipeline.runtime.events import Verdict
from tests.helpers import REPO, free_port, wait_listening

SCHEMAS = Path(__file__).resolve().parents[1] / "configs" / "schemas"
USERS = {"dfstream": "df-secret-pw", "reader": "reader-pw"}


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def make_certificates(d: Path) -> None:
    """A test CA (ca.key, ca.crt), a server certificate it signed for localhost and 127.0.0.1
    (server.key, server.crt), and a CA nobody trusts (other.key, other.crt), in ``d``."""
    _make_ca(d, "ca", "/CN=dfstream test CA")
    key = ["-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
    _run("openssl", "req", *key, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ca = ["-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial"]
    signed = ["-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt")]
    _run("openssl", "x509", "-req", "-in", str(d / "server.csr"), *ca, *signed)
    _make_ca(d, "other", "/CN=someone else")  # a CA the server does not know, for the mismatch case


def _make_ca(d: Path, name: str, subject: str) -> None:
    """A self-signed CA: ``name``.key and ``name``.crt."""
    key = ["-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject]
    _run("openssl", "req", "-x509", *key, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt"))


class Mosquitto:
    def __init__(self, persistent: bool = False) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            pytest.fail("mosquitto is missing: apt-get install mosquitto")
        # mosquitto run as root drops to user mosquitto: its files must be readable by it
        self.dir = Path(tempfile.mkdtemp(prefix="dfstream-mosquitto-"))
        os.chmod(self.dir, 0o755)
        self.port, self.tls_port = free_port(), free_port()
        make_certificates(self.dir)
        passwd = self.dir / "passwd"
        for i, (user, password) in enumerate(USERS.items()):
            _run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, password)
        shutil.copy(REPO / "configs" / "mosquitto" / "acl", self.dir / "acl")  # the ACL the stack ships
        data = self.dir / "data"
        data.mkdir()
        os.chmod(data, 0o777)
        # sessions saved every second: a subscriber's subscription survives a SIGKILL of the broker
        persistence = (
            f"persistence true\npersistence_location {data}/\nautosave_interval 1"
            if persistent
            else "persistence false"
        )
        (self.dir / "mosquitto.conf").write_text(
            f"""per_listener_settings false
allow_anonymous false
password_file {passwd}
acl_file {self.dir / "acl"}
{persistence}
# a subscriber reading slower than a replayed outbox arrives: queued for it, not dropped past 1000
max_queued_messages 100000
log_dest stderr
log_type error
log_type warning
listener {self.port} 127.0.0.1
listener {self.tls_port} 127.0.0.1
cafile {self.dir / "ca.crt"}
certfile {self.dir / "server.crt"}
keyfile {self.dir / "server.key"}
"""
        )
        for f in self.dir.iterdir():
            if f.is_file():
                os.chmod(f, 0o644)
        self.process: subprocess.Popen | None = None

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.crt")

    def start(self) -> "Mosquitto":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_listening([self.port, self.tls_port], self.process, "mosquitto")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
            self.process.stderr.close()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- a real subscriber, and the payloads it reads ------------------------------------------------
def schema_for(topic: str) -> dict:
    last = topic.rsplit("/", 1)[-1]
    name = {
        "verdict": "verdict",
        "voice": "voice",
        "state": "state",
        "status": "status",
        "available": "available",
        "alerts": "alert",
        "config": "ha_discovery",
    }[last]
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def payload_of(message: aiomqtt.Message):
    text = message.payload.decode()
    return text if str(message.topic).endswith(("/status", "/available")) else json.loads(text)


class Subscriber:
    """A real client (user ``reader``) with a persistent session, reconnecting on its own."""

    def __init__(self, broker: Mosquitto, topics=("dfstream/#", "homeassistant/#")):
        self.broker, self.topics = broker, topics
        self.messages: list[aiomqtt.Message] = []
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.broker.port,
                    username="reader",
                    password=USERS["reader"],
                    identifier="test-reader",
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    def on(self, suffix: str) -> list:
        return [payload_of(m) for m in self.messages if str(m.topic).endswith(suffix)]

    async def wait_for(self, predicate, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting for MQTT messages"
            await asyncio.sleep(0.05)


def verdict(stream: str, seq: int, track: int = 1, label: str = "real", ts: float | None = None) -> Verdict:
    return Verdict(
        stream=stream,
        track_id=track,
        seq=seq,
        ts=ts if ts is not None else time.time(),
        frame_seq=seq,
        frame_pts=seq / 30,
        label=label,
        label_since=0.0,
        fake_probability=0.1,
        raw_probability=0.12,
        uncertainty=0.2,
        models={"meso4": 0.1},
        bbox=(1.0, 2.0, 30.0, 40.0),
        faces_in_frame=1,
        latency_ms=12.5,
    )
