"""A node runtime: one actor per node that takes streams, running the local ``Runtime`` for its share
of them, exactly as ``dfstream run`` does on one machine: faces and every detector batched across
all of the node's streams in-process, one MQTT client and one database writer for the node.

It loads its models once; the controller's answer to each heartbeat says which streams to run, and
streams are added to and removed from the running runtime. A model named in
``runtime.deployments`` is scored by its shared Serve pool instead (``serving``). A runtime that
hears nothing from the controller for ``lost_after_s`` stops its streams: the controller has
declared it lost by then and started them elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import ray
from ray import serve

from core.errors import one_line
from dfstream.config import DfstreamConfig
from dfstream.ray.metrics import Reporter
from dfstream.ray.numbers import KEEPER, LeasedNumbering
from dfstream.ray.serving import Guarded, RemoteScorer, RemoteVoice, detector_app, voice_app
from pipeline.models.loading import load_detectors, load_voices
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from pipeline.runtime.runtime import Runtime, share_cpu_threads
from service.db.events import store_sink
from service.db.schema import make_engine
from sinks import build_sinks
from stream.config import StreamConfig

log = logging.getLogger(__name__)

KEYS = ("verdicts", "mqtt", "voice", "incidents")  # what a stream numbers (``numbers``)


@ray.remote
class NodeRuntime:
    def __init__(self, config: dict[str, Any], namespace: str, node_id: str, base: str, offline: bool):
        self.config = DfstreamConfig.model_validate(config)
        self.offline = offline
        self.node, self.base, self.namespace = node_id, base, namespace
        if (
            self.config.sinks.mqtt is not None
        ):  # one client per node: a shared id would have the broker drop all but one
            self.config.sinks.mqtt.client_id = f"{self.config.sinks.mqtt.client_id}-{node_id[:12]}"
        self.controller = None
        self.me = ray.get_runtime_context().current_actor  # sent with each beat: a restarted controller adopts it
        self.monitor = PerformanceMonitor(self.config.monitoring)
        self.reporter = Reporter(
            namespace, f"node/{node_id[:12]}", self.monitor, self.config.runtime.metrics_interval_s
        )
        self.runtime: Runtime | None = None
        self.numbering: LeasedNumbering | None = None
        self.state, self.error = "starting", None
        self.streams: dict[str, tuple[dict[str, Any], asyncio.Task[None], float]] = {}  # section, task, start
        self.leaving: dict[str, asyncio.Task[None]] = {}  # streams being stopped
        self.following: asyncio.Task[None] | None = None  # the answer being followed
        self.finished: dict[str, dict[str, Any]] = {}  # streams that ended here, until the controller lets go
        self.task = asyncio.get_running_loop().create_task(self._run(), name="dfstream.node")

    def attach(self, controller) -> None:  # noqa: ANN001 (the controller's handle, which outlives its restarts)
        self.controller = controller

    async def _run(self) -> None:
        async with self.reporter:
            beats = asyncio.create_task(self._beats(), name="dfstream.node.beats")
            try:
                await self._serve()
            finally:
                beats.cancel()
                await asyncio.gather(beats, return_exceptions=True)

    async def _serve(self) -> None:
        config = self.config
        try:
            self.numbering = LeasedNumbering(ray.get_actor(KEEPER, namespace=self.namespace))
            served = self._served()
            local = config.model_copy(
                update={
                    "detectors": [d for d in config.detectors if d.name not in served],
                    "audio_detectors": [a for a in config.audio_detectors if a.name not in served],
                }
            )
            share_cpu_threads(len(local.detectors) + len(local.audio_detectors) + 1)
            detectors = await asyncio.to_thread(load_detectors, local.detectors, self.offline, log.info)
            voices = await asyncio.to_thread(load_voices, local.audio_detectors, self.offline, log.info)
            tap = LiveTap()
            sinks = build_sinks(config.sinks, self.monitor, tap, [], self.numbering)
            if config.sinks.store is not None:  # every node writes into the same database: the api section's URL
                sinks.append(store_sink(config.sinks.store, make_engine(config.api.database_url), self.monitor))
            self.runtime = Runtime(
                config, detectors, sinks, self.monitor, tap=tap, served=served, numbering=self.numbering, voices=voices
            )
            runs = asyncio.create_task(self.runtime.run(keep_open=True))
            while self.runtime.backends is None and not runs.done():
                await asyncio.sleep(0.05)
            self.state = "running"
            await runs
        except Exception as exc:  # noqa: BLE001 -- told through the beats (the controller restarts it)
            self.state, self.error = "failed", one_line(exc, with_type=True)
            log.error("node runtime %s: %s", self.node[:12], self.error)

    def _served(self) -> dict[str, Guarded]:
        """The models served from a shared pool (``runtime.deployments``), each behind its guard."""
        served: dict[str, Guarded] = {}
        for dc in self.config.detectors:
            if dc.name in self.config.runtime.deployments:
                served[dc.name] = Guarded(dc.name, RemoteScorer(serve.get_app_handle(detector_app(dc.name))))
        for ac in self.config.audio_detectors:
            if ac.name in self.config.runtime.deployments:
                served[ac.name] = Guarded(ac.name, RemoteVoice(serve.get_app_handle(voice_app(ac.name))))
        return served

    # ---- heartbeats: the controller's answer is what to run --------------------------------------------
    async def _beats(self) -> None:
        nodes = self.config.runtime.nodes
        heard = time.monotonic()
        while True:
            try:
                if self.controller is None:
                    raise LookupError("no controller yet")
                answer = await asyncio.wait_for(
                    self.controller.beat.remote(self.node, self.base, self.state, self.error, self._report(), self.me),
                    # a slow answer is still an answer: only silence as long as the controller's own
                    # verdict of loss stops the streams (a busy controller must not fence every node)
                    max(nodes.lost_after_s - (time.monotonic() - heard), nodes.heartbeat_s),
                )
                heard = time.monotonic()
                if self.state == "running":
                    self._follow_soon(answer["streams"])
            except ray.exceptions.ActorUnavailableError:  # the controller restarting: it takes us as we run
                heard = time.monotonic()
            except Exception as exc:  # noqa: BLE001 -- a beat lost; too many and the node stops its streams
                if time.monotonic() - heard > nodes.lost_after_s and self.streams:
                    log.warning(
                        "node %s: no word from the controller (%s): stopping its streams",
                        self.node[:12],
                        one_line(exc, with_type=True),
                    )
                    self._follow_soon({})
            await asyncio.sleep(nodes.heartbeat_s)

    def _follow_soon(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Follow the answer beside the beats, never in their way: starting fifty streams (their
        numbers leased first) takes seconds, and a node silent that long is lost. One at a time; an
        answer that comes meanwhile waits for the next beat."""
        if self.following is None or self.following.done():
            self.following = asyncio.create_task(self._follow(wanted), name="dfstream.node.follow")
            self.following.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("node %s: %s", self.node[:12], one_line(task.exception(), with_type=True))  # type: ignore[arg-type]

    async def _follow(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Run exactly ``wanted``: stop the others (side by side, in the background), start the new."""
        assert self.runtime is not None and self.numbering is not None
        for sid in [s for s in self.finished if s not in wanted]:
            del self.finished[sid]
        for sid, (section, _, _) in list(self.streams.items()):
            if wanted.get(sid) != section:
                self._leave(sid)
        new = {
            sid: section
            for sid, section in wanted.items()
            if sid not in self.streams
            and sid not in self.leaving
            and self.finished.get(sid, {}).get("section") != section
        }
        # every new stream's numbers leased at once, above what any node used
        await asyncio.gather(*(self.numbering.prime([f"{sid}/{key}" for key in KEYS]) for sid in new))
        for sid, section in new.items():
            task = self.runtime.add_stream(StreamConfig.model_validate(section))
            self.streams[sid] = (section, task, time.time())

    def _leave(self, sid: str) -> None:
        assert self.runtime is not None
        section, task, _ = self.streams.pop(sid)
        leaving = asyncio.create_task(self.runtime.remove_stream(sid))
        self.leaving[sid] = leaving
        leaving.add_done_callback(lambda _: self.leaving.pop(sid, None))

    def _report(self) -> dict[str, dict[str, Any]]:
        """Each stream's state: the running, the leaving (still running until stopped), the ended."""
        report: dict[str, dict[str, Any]] = {}
        for sid, (section, task, started) in list(self.streams.items()):
            if task.done():
                failed = not task.cancelled() and task.exception() is not None
                error = one_line(task.exception(), with_type=True) if failed else None  # type: ignore[arg-type]
                self.finished[sid] = {
                    **self._state(sid, "failed" if failed else "ended", started, error),
                    "section": section,
                }
                del self.streams[sid]
            else:
                report[sid] = self._state(sid, "running", started, None)
        for sid in self.leaving:
            report[sid] = self._state(sid, "stopping", time.time(), None)
        for sid, final in self.finished.items():
            report[sid] = {k: v for k, v in final.items() if k != "section"}
        return report

    def _state(self, sid: str, state: str, started: float, error: str | None) -> dict[str, Any]:
        subject = Subject.stream(sid)
        found = self.monitor.snapshot(subject)
        counters = found[0].counters if found else {}
        return {
            "stream": sid,
            "state": state,
            "error": error,
            "node": self.node,
            "started": started,
            "pid": os.getpid(),
            "frames": self.monitor.counter(subject, Count.FRAMES_PROCESSED),
            "verdicts": sum(v for (name, _), v in counters.items() if name is Count.VERDICTS),
        }

    # ---- the controller's and the benchmark's calls -------------------------------------------------
    async def stop(self, timeout_s: float = 10.0) -> str:
        """Drain and flush the sinks, as ``dfstream run`` does on SIGTERM."""
        if self.runtime is not None:
            self.runtime.stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        return self.state

    async def process(self) -> dict[str, Any]:
        """Where it runs and what it holds: the benchmark sums memory per node from it."""
        return {"pid": os.getpid(), "node": self.node, "streams": sorted(self.streams), "state": self.state}
