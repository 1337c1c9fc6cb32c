"""The driver's side of the Ray engine: connect, deploy the models, apply the streams, watch, remove.

``dfstream run`` with ``runtime.engine: ray`` deploys, applies and watches until the streams end or
SIGINT / SIGTERM, then removes what it made; SIGHUP re-reads the config file and applies it (streams
added, removed or changed, the others untouched). ``dfstream ray apply`` leaves everything running
(detached actors) and returns; ``dfstream ray down`` removes it; ``dfstream ray status`` lists it.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import serve

from core.errors import ConfigError
from dfstream.config import DfstreamConfig
from dfstream.ray import metrics, numbers, serving
from dfstream.ray.streams import PREFIX, StreamActor, actor_name, digest, stream_config

log = logging.getLogger(__name__)

QUIET = {"log_level": "WARNING", "enable_access_log": False}  # not a log line per call
UNPLACED_S = 30.0  # a stream actor not answering this long after its start is reported as not placed


def connect(config: DfstreamConfig) -> None:
    """To the cluster ``runtime.address`` names; ``local`` starts a one-node cluster here that
    advertises what the config asks for (as the local engine, it shares this machine's cores)."""
    if ray.is_initialized():
        return
    rt = config.runtime
    local: dict[str, Any] = {}
    if rt.address == "local":
        asks = [(rt.streams, len(config.streams)), (rt.faces, rt.faces.max_replicas)]
        asks += [
            (section, section.max_replicas)
            for section in (rt.deployments.get(d.name, rt.detectors) for d in config.detectors)
        ]
        resources: dict[str, float] = {}
        for section, count in asks:
            for key, value in section.resources.items():
                resources[key] = resources.get(key, 0.0) + value * count
        cpus = math.ceil(sum(section.num_cpus * count for section, count in asks))
        local = {"num_cpus": max(os.cpu_count() or 1, cpus), "resources": resources}
    try:
        ray.init(
            address=None if rt.address == "local" else rt.address,
            namespace=rt.namespace,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            **local,
        )
    except ConnectionError as exc:
        raise ConfigError(f"runtime.address: no Ray cluster at {rt.address!r}: {exc}") from None


def on_head():  # noqa: ANN201 (a Ray scheduling strategy)
    """The head node: the number keeper's state must outlive every other node (the cluster does not
    outlive its head), and Prometheus scrapes the metrics hub at one known address."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = next((n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]), None)
    if head is None:
        raise ConfigError("runtime: the Ray cluster reports no head node")
    return NodeAffinitySchedulingStrategy(head, soft=False)


# what the stream actors are given of the driver's environment: where models and caches are. Never a
# credential: runtime_env is shown by the dashboard and the state API. Credentials (MQTT, cameras,
# the database) are in the environment of the nodes themselves (Kubernetes: a Secret, envFrom).
FORWARDED = ("DFSTREAM_MODEL_DIR", "DFSTREAM_MODEL_PATH", "DFSTREAM_MODEL_MIRROR", "DFSTREAM_CACHE_DIR")


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED if k in os.environ}


class RayEngine:
    def __init__(self, config: DfstreamConfig, offline: bool = False, say: Callable[[str], None] = print):
        self.config = config
        self.offline = offline
        self.say = say

    @property
    def namespace(self) -> str:
        return self.config.runtime.namespace

    # ---- deploy -------------------------------------------------------------------------------------
    def deploy(self) -> None:
        """The face finder and every detector as Serve applications (updated in place when their
        config changed), the number keeper, and the metrics hub where a Prometheus sink is configured."""
        rt, config = self.config.runtime, self.config
        numbers.NumberKeeper.options(
            name=numbers.KEEPER,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=on_head(),
        ).remote()
        if config.sinks.prometheus is not None:
            self._hub()
        serve.start(proxy_location="Disabled")  # nothing here is reached over Serve's HTTP
        started = time.monotonic()
        apps = [
            serve.RunTarget(
                serving.face_app(config.faces, rt.faces, self.namespace, rt.metrics_interval_s),
                name=serving.FACES_APP,
                route_prefix=None,
                logging_config=QUIET,
            )
        ]
        for dc in config.detectors:
            section = rt.deployments.get(dc.name, rt.detectors)
            app = serving.scorer_app(dc, section, self.offline, self.namespace, rt.metrics_interval_s)
            apps.append(
                serve.RunTarget(app, name=serving.detector_app(dc.name), route_prefix=None, logging_config=QUIET)
            )
        for ac in config.audio_detectors:
            section = rt.deployments.get(ac.name, rt.detectors)
            app = serving.voice_model_app(ac, section, self.offline, self.namespace, rt.metrics_interval_s)
            apps.append(serve.RunTarget(app, name=serving.voice_app(ac.name), route_prefix=None, logging_config=QUIET))
        serve.run_many(apps)  # side by side: until every one is running
        voices = f" and {len(config.audio_detectors)} voice" if config.audio_detectors else ""
        self.say(
            f"ray: faces, {len(config.detectors)} detector{voices} deployments running "
            f"({time.monotonic() - started:.1f} s)"
        )
        for app in serve.status().applications:  # a detector or voice model no longer in the config
            stale = app.startswith((serving.detector_app(""), serving.voice_app("")))
            if stale and app not in self._apps():
                serve.delete(app)

    def _hub(self) -> None:
        prom = self.config.sinks.prometheus
        assert prom is not None
        hub = metrics.MetricsHub.options(
            name=metrics.HUB,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=on_head(),
        ).remote(
            prom.host, prom.port, self.config.monitoring.model_dump(mode="json"), self.config.runtime.metrics_interval_s
        )
        host, port = ray.get(hub.address.remote())
        self.say(f"ray: metrics on http://{prom.host if prom.host not in ('0.0.0.0', '::') else host}:{port}/metrics")

    def _apps(self) -> set[str]:
        return {
            serving.FACES_APP,
            *(serving.detector_app(d.name) for d in self.config.detectors),
            *(serving.voice_app(a.name) for a in self.config.audio_detectors),
        }

    # ---- streams ------------------------------------------------------------------------------------
    def running(self) -> dict[str, Any]:
        """The stream actors of this namespace, by stream id."""
        names = [
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == self.namespace
        ]
        return {
            n.removeprefix(PREFIX): ray.get_actor(n, namespace=self.namespace) for n in names if n.startswith(PREFIX)
        }

    def apply(self) -> dict[str, list[str]]:
        """Make the running streams those of the config: start the new ones, stop the removed
        ones, restart the changed ones; the others are not touched."""
        wanted = {s.id: stream_config(self.config, s.id) for s in self.config.streams}
        running = self.running()
        # an actor just started may take a while to answer (its process imports the models' code)
        digests = {s["stream"]: s.get("digest") for s in self.status(running, timeout_s=60.0)}
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "kept": []}
        for sid in running:
            if sid not in wanted:
                changes["removed"].append(sid)
            elif digests[sid] != digest(wanted[sid]):  # an unreachable actor has none: it is started anew
                changes["changed"].append(sid)
            else:
                changes["kept"].append(sid)
        self._remove({sid: running[sid] for sid in changes["removed"] + changes["changed"]})
        for sid, data in wanted.items():
            if sid not in changes["kept"]:
                self._start(sid, data)
                if sid not in changes["changed"]:
                    changes["added"].append(sid)
        changes = {k: sorted(v) for k, v in changes.items()}
        self.say("ray: streams " + ", ".join(f"{k} {v}" for k, v in changes.items() if v))
        return changes

    def _start(self, sid: str, data: dict[str, Any]) -> None:
        section = self.config.runtime.streams
        StreamActor.options(
            name=actor_name(sid),
            namespace=self.namespace,
            lifetime="detached",
            max_restarts=section.max_restarts,
            num_cpus=section.num_cpus,
            resources=dict(section.resources),
            scheduling_strategy=section.strategy,
            runtime_env={"env_vars": forwarded_env()},
        ).remote(data, self.namespace)

    def _remove(self, actors: dict[str, Any], timeout_s: float = 10.0) -> None:
        """Stop them all at once (each drains its sinks for at most ``timeout_s``), then kill them."""
        stops = {actor.stop.remote(timeout_s): sid for sid, actor in actors.items()}
        done, hung = ray.wait(list(stops), num_returns=len(stops), timeout=timeout_s + 5) if stops else ([], [])
        for ref in done:
            try:
                ray.get(ref)
            except Exception as exc:  # died meanwhile: it goes anyway
                log.warning("stream %s: did not stop cleanly: %s", stops[ref], exc)
        for ref in hung:
            log.warning("stream %s: did not stop within %.0f s", stops[ref], timeout_s + 5)
        for actor in actors.values():
            ray.kill(actor, no_restart=True)

    def status(self, running: dict[str, Any] | None = None, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Each stream actor's own account; one that does not answer within ``timeout_s`` is
        ``unreachable`` (not placed yet, still starting, or its node lost and not restarted yet)."""
        running = self.running() if running is None else running
        refs = {actor.status.remote(): sid for sid, actor in running.items()}
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        answers = {
            sid: {"stream": sid, "state": "unreachable", "error": f"no answer within {timeout_s:.0f} s"}
            for sid in running
        }
        for ref in done:
            try:
                answers[refs[ref]] = ray.get(ref)
            except Exception as exc:
                answers[refs[ref]] = {
                    "stream": refs[ref],
                    "state": "unreachable",
                    "error": f"{type(exc).__name__}: {exc}",
                }
        return [answers[sid] for sid in sorted(answers)]

    def down(self) -> None:
        """Stop every stream (draining its sinks), then remove the deployments and the helpers."""
        self._remove(self.running())
        for app in self._apps():
            try:
                serve.delete(app)
            except Exception as exc:
                log.warning("%s: %s", app, exc)
        for name in (metrics.HUB, numbers.KEEPER):
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
            except ValueError:
                pass

    # ---- dfstream run -------------------------------------------------------------------------------
    def run(self, reload: Callable[[], DfstreamConfig] | None = None) -> None:
        """Until every stream has ended (files) or SIGINT / SIGTERM; SIGHUP applies ``reload()``."""
        stop, hup = threading.Event(), threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        if reload is not None:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: hup.set())
        try:
            self.deploy()
            self.apply()
            started, told = time.monotonic(), False
            while not stop.wait(1.0):
                if hup.is_set():
                    hup.clear()
                    try:
                        assert reload is not None
                        self.config = reload()
                        self.deploy()
                        self.apply()
                    except ConfigError as exc:
                        self.say(f"ray: reload refused, the running streams are unchanged: {exc}")
                statuses = self.status()
                if statuses and all(s["state"] in ("ended", "failed") for s in statuses):
                    break
                if not told and time.monotonic() - started > UNPLACED_S:
                    told = True
                    for s in statuses:
                        if s["state"] == "unreachable":
                            section = self.config.runtime.streams
                            self.say(
                                f"ray: stream {s['stream']} is not running yet: no node has num_cpus "
                                f"{section.num_cpus} and "
                                f"resources {section.resources} free, or its node is lost"
                            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for s in self.status():
                if s.get("error"):
                    self.say(f"ray: stream {s['stream']}: {s['error']}")
            self.down()
