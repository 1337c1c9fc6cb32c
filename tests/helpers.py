"""What several test modules share: one in-memory sink, the standard two-MesoNet config, loopback
ports, waiting on a condition (never a fixed sleep where load could make it flaky), and scraping
/metrics. Fixtures live in conftest.py; MQTT's real broker and subscriber in mqtt_broker.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from core.lifecycle import Lifecycle
from dfstream.config import DfstreamConfig, parse_config
from pipeline.models.detector import BaseDetector
from pipeline.models.registry import ModelRegistry
from pipeline.runtime.events import Event, StreamStatus, Verdict
from pipeline.runtime.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]


# the MesoNet weight files (Meso4_DF.h5, ...): tests that need them skip, saying so, while it is unset
TEST_WEIGHTS = Path(os.environ.get("DFSTREAM_TEST_WEIGHTS", "")).expanduser()


class MemorySink(Lifecycle):
    """A real Sink that keeps what it is given, and when. ``hang=True``: every publish blocks for
    ever, like a write to a peer that stopped reading."""

    def __init__(self, name: str = "memory", hang: bool = False) -> None:
        super().__init__(name)
        self.hang = hang
        self.events: list[Event] = []
        self.arrivals: list[float] = []  # wall clock, per event
        self.closed = False

    async def publish(self, event: Event) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.events.append(event)
        self.arrivals.append(time.time())

    async def _close(self) -> None:
        self.closed = True

    def verdicts(self, stream: str | None = None) -> list[Verdict]:
        return [e for e in self.events if isinstance(e, Verdict) and (stream is None or e.stream == stream)]

    def statuses(self, stream: str) -> list[str]:
        return [e.status for e in self.events if isinstance(e, StreamStatus) and e.stream == stream]

    def verdict_delays(self) -> list[float]:
        """Seconds from each verdict's creation to its arrival here."""
        return [at - e.ts for e, at in zip(self.events, self.arrivals) if isinstance(e, Verdict)]


def mesonets(weights_dir: Path) -> list[dict]:
    """The ``detectors`` section of the defaults: both MesoNets with the authors' weights."""
    return [
        {"name": "meso4", "type": "meso4", "weights": str(weights_dir / "Meso4_DF.h5")},
        {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights_dir / "MesoInception_DF.h5")},
    ]


def mesonet_specs(weights_dir: Path) -> list[str]:
    """The same two as the commands' ``--detectors`` take them."""
    return [f"{d['type']}={d['weights']}" for d in mesonets(weights_dir)]


def make_config(weights_dir: Path, streams: list[dict], **sections) -> DfstreamConfig:
    """Both MesoNets with the authors' weights, on ``streams``."""
    return parse_config({"streams": streams, "detectors": mesonets(weights_dir), **sections})


def load_detectors(config: DfstreamConfig) -> dict[str, BaseDetector]:
    return ModelRegistry().load_configured(config.detectors)


async def run_for(runtime: Runtime, seconds: float | None) -> None:
    """Run until ``seconds`` have passed (then stop and drain), or until the streams end (None)."""
    task = asyncio.create_task(runtime.run())
    if seconds is not None:
        await asyncio.sleep(seconds)
        runtime.stop.set()
    await asyncio.wait_for(task, 30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(ports: list[int], process: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    """Until every port accepts a connection on loopback; fails if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().strip() if process.stderr else ""
            raise AssertionError(f"{what} exited: {stderr}")
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {ports} within {timeout} s")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "the condition") -> float:
    """Poll ``predicate`` until true; returns the seconds it took. A timeout is a test failure."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


async def until(predicate: Callable[[], bool], timeout: float, what: str = "the condition") -> float:
    """``wait_until`` inside the event loop."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def scrape(port: int) -> dict[str, float]:
    """/metrics parsed: ``name{label=value,...}`` → value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


class CuttableLink:
    """A TCP relay on loopback in front of a server, whose link can be cut as a network would be:
    while cut, every open connection is dropped and new ones are closed as they come. Clients talk to
    ``port``; the server never sees the cut, only its clients going."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = True
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="link-accept").start()

    def cut(self) -> None:
        with self._lock:
            self._open = False
            dropped, self._sockets = self._sockets, set()
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if not self._open:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True, name="link-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:  # one side gone: the other is ended too, and each pump closes what it read from
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(source)
            source.close()
