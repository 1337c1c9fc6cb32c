"""One Ray actor per stream: the local ``Runtime`` for that one stream, with Ray Serve deployments
as its backends and the stream's own sinks (an MQTT client per actor, JSON lines, the store).

The actor starts its stream when it is created, so when Ray restarts it (its node lost, its
process killed) the stream resumes by itself: the source reconnects, tracks start afresh, and the
sequence numbers go on above the last ones (``numbers``). A call to a deployment that does not
answer within ``CALL_TIMEOUT_S`` fails (counted, and named in the verdict's ``failed_models``);
after a failure that deployment is skipped for ``AWAY_S`` before it is tried again, so a lost
replica costs the stream its scores, never its pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray import serve

from core.errors import BackendUnavailableError, one_line
from dfstream.config import DfstreamConfig
from dfstream.ray.metrics import Reporter
from dfstream.ray.numbers import KEEPER, LeasedNumbering
from dfstream.ray.serving import FACES_APP, RemoteFaces, RemoteScorer, RemoteVoice, detector_app, voice_app
from pipeline.monitoring.keys import RUNTIME, Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.backends import Backends
from pipeline.runtime.live import LiveTap
from pipeline.runtime.runtime import Runtime
from service.db.events import store_sink
from service.db.schema import make_engine
from sinks import build_sinks

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 2.0
AWAY_S = 1.0
PREFIX = "dfstream.stream."


def actor_name(stream_id: str) -> str:
    return PREFIX + stream_id


def stream_config(config: DfstreamConfig, stream_id: str) -> dict[str, Any]:
    """What one stream's actor is given: the whole config with only its stream."""
    data = config.model_dump(mode="json")
    data["streams"] = [s for s in data["streams"] if s["id"] == stream_id]
    return data


def digest(data: dict[str, Any]) -> str:
    """Tells a changed stream (its own section or anything it shares) from an unchanged one."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Guarded:
    """``submit`` through a remote backend with a deadline, skipping it for a while after a failure."""

    def __init__(self, name: str, inner: RemoteFaces | RemoteScorer | RemoteVoice):
        self.name, self.inner = name, inner
        self.away_until = 0.0

    async def submit(self, item: Any) -> Any:
        now = time.monotonic()
        if now < self.away_until:
            raise BackendUnavailableError(
                f"{self.name}: deployment unavailable, retried in {self.away_until - now:.1f} s"
            )
        try:
            return await asyncio.wait_for(self.inner.submit(item), CALL_TIMEOUT_S)
        except Exception as exc:
            self.away_until = time.monotonic() + AWAY_S
            if isinstance(exc, TimeoutError):
                raise BackendUnavailableError(f"{self.name}: no answer within {CALL_TIMEOUT_S} s") from None
            raise


@ray.remote
class StreamActor:
    def __init__(self, config: dict[str, Any], namespace: str):
        self.config = DfstreamConfig.model_validate(config)
        self.stream = self.config.streams[0].id
        if (
            self.config.sinks.mqtt is not None
        ):  # one client per actor: a shared id would have the broker drop all but one
            self.config.sinks.mqtt.client_id = f"{self.config.sinks.mqtt.client_id}-{self.stream}"
        self.digest = digest(config)
        self.namespace = namespace
        context = ray.get_runtime_context()
        self.restarted = context.was_current_actor_reconstructed
        self.node = context.get_node_id()
        self.started = time.time()
        self.state = "starting"
        self.error: str | None = None
        self.monitor = PerformanceMonitor(self.config.monitoring)
        self.runtime: Runtime | None = None
        self.reporter = Reporter(
            namespace, f"stream/{self.stream}", self.monitor, self.config.runtime.metrics_interval_s
        )
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"dfstream[{self.stream}].actor")

    async def _run(self) -> None:
        async with self.reporter:  # leaving sends the last numbers, before anyone reads them
            await self._judge()

    async def _judge(self) -> None:
        try:
            numbering = LeasedNumbering(ray.get_actor(KEEPER, namespace=self.namespace))
            await numbering.prime([f"{self.stream}/{key}" for key in ("verdicts", "mqtt", "voice", "incidents")])
            tap = LiveTap()
            sinks = build_sinks(self.config.sinks, self.monitor, tap, [self.stream], numbering)
            if self.config.sinks.store is not None:
                # every node's stream actors write into the same database: the api section's URL
                engine = make_engine(self.config.api.database_url)
                sinks.append(store_sink(self.config.sinks.store, engine, self.monitor))
            self.runtime = Runtime(
                self.config, {}, sinks, self.monitor, tap=tap, backends=self._backends, numbering=numbering
            )
            await self.runtime.run()
            self.state = "ended"
        except Exception as exc:  # noqa: BLE001 -- told through status(), and logged
            self.state, self.error = "failed", one_line(exc, with_type=True)
            log.error("stream %s: %s", self.stream, self.error)

    @contextlib.asynccontextmanager
    async def _backends(self) -> AsyncIterator[Backends]:
        faces = Guarded("faces", RemoteFaces(serve.get_app_handle(FACES_APP), self.config.faces.detect_max_side))
        models: dict[str, Guarded] = {}
        for dc in self.config.detectors:
            handle = serve.get_app_handle(detector_app(dc.name))
            margin, rounding = await self._ask(dc.name, handle.crop_rule.remote)
            models[dc.name] = Guarded(dc.name, RemoteScorer(handle, margin, rounding))
        voices = {
            ac.name: Guarded(ac.name, RemoteVoice(serve.get_app_handle(voice_app(ac.name))))
            for ac in self.config.audio_detectors
        }
        self.monitor.set_gauge(RUNTIME, Gauge.MODELS_READY, len(models))
        self.state = "running"
        yield Backends(faces, models, voices)  # type: ignore[arg-type]

    async def _ask(self, name: str, call: Any) -> Any:
        """A deployment's answer, waiting as long as it takes (its replica may be rescheduling), saying so."""
        while True:
            try:
                return await asyncio.wait_for(call(), 2 * CALL_TIMEOUT_S)
            except Exception as exc:
                self.state = f"waiting for {name}"
                log.warning(
                    "stream %s: deployment %s does not answer (%s); asking again", self.stream, name, type(exc).__name__
                )
                await asyncio.sleep(AWAY_S)

    async def stop(self, timeout_s: float = 10.0) -> str:
        """Drain and flush the sinks, as ``dfstream run`` does on SIGTERM."""
        if self.runtime is not None:
            self.runtime.stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        return self.state

    async def status(self) -> dict[str, Any]:
        subject = Subject.stream(self.stream)
        return {
            "stream": self.stream,
            "state": self.state,
            "error": self.error,
            "digest": self.digest,
            "node": self.node,
            "restarted": self.restarted,
            "started": self.started,
            "pid": os.getpid(),
            "frames": self.monitor.counter(subject, Count.FRAMES_PROCESSED),
            "verdicts": sum(v for (name, _), v in _counters(self.monitor, subject).items() if name is Count.VERDICTS),
        }


def _counters(monitor: PerformanceMonitor, subject: Subject) -> dict:
    found = monitor.snapshot(subject)
    return found[0].counters if found else {}
