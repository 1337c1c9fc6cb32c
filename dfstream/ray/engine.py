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

from core.errors import BackendUnavailableError, ConfigError
from dfstream.config import DfstreamConfig
from dfstream.ray import metrics, numbers, serving
from dfstream.ray.controller import CONTROLLER, NODE_PREFIX, Controller

log = logging.getLogger(__name__)

QUIET = {"log_level": "WARNING", "enable_access_log": False}  # not a log line per call
UNPLACED_S = 30.0  # a stream still waiting for a slot this long after it was applied is reported


def connect(config: DfstreamConfig) -> None:
    """To the cluster ``runtime.address`` names; ``local`` starts a one-node cluster here that
    advertises what the config asks for (as the local engine, it shares this machine's cores)."""
    if ray.is_initialized():
        return
    rt = config.runtime
    local: dict[str, Any] = {}
    if rt.address == "local":
        # room for every stream (as the local engine, they share this machine's cores) and every pool
        asks = [(rt.streams.num_cpus, rt.streams.resources, len(config.streams))]
        asks += [(section.num_cpus, section.resources, section.max_replicas) for section in rt.deployments.values()]
        resources: dict[str, float] = {}
        for _, needs, count in asks:
            for key, value in needs.items():
                resources[key] = resources.get(key, 0.0) + value * count
        cpus = math.ceil(sum(num_cpus * count for num_cpus, _, count in asks))
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


# what the node runtimes are given of the driver's environment: where models and caches are. Never a
# credential: runtime_env is shown by the dashboard and the state API. Credentials (MQTT, cameras,
# the database) are in the environment of the nodes themselves (Kubernetes: a Secret, envFrom).
FORWARDED = ("DFSTREAM_MODEL_DIR", "DFSTREAM_MODEL_PATH", "DFSTREAM_MODEL_MIRROR", "DFSTREAM_CACHE_DIR")


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED if k in os.environ}


def serve_running() -> bool:
    try:
        serve.context._get_global_client()  # noqa: SLF001 -- Serve has no public "is it started here"
    except Exception:  # noqa: BLE001
        return False
    return True


class RayEngine:
    def __init__(self, config: DfstreamConfig, offline: bool = False, say: Callable[[str], None] = print):
        self.config = config
        self.offline = offline
        self.say = say
        self.controller: Any = None

    @property
    def namespace(self) -> str:
        return self.config.runtime.namespace

    # ---- deploy ---------------------------------------------------------------------------------------
    def deploy(self) -> None:
        """The number keeper, the metrics hub (where a Prometheus sink is configured), the controller
        (which starts a node runtime on every node that takes streams), and a Serve pool for each
        model named in ``runtime.deployments`` (updated in place when its config changed)."""
        rt, config = self.config.runtime, self.config
        helpers = {"namespace": self.namespace, "lifetime": "detached", "get_if_exists": True}
        numbers.NumberKeeper.options(name=numbers.KEEPER, scheduling_strategy=on_head(), **helpers).remote()
        if config.sinks.prometheus is not None:
            self._hub()
        self.controller = Controller.options(name=CONTROLLER, scheduling_strategy=on_head(), **helpers).remote(
            self.namespace, forwarded_env(), self.offline
        )
        pools = [
            (serving.detector_app(dc.name), serving.scorer_app, dc)
            for dc in config.detectors
            if dc.name in rt.deployments
        ] + [
            (serving.voice_app(ac.name), serving.voice_model_app, ac)
            for ac in config.audio_detectors
            if ac.name in rt.deployments
        ]
        if pools:
            serve.start(proxy_location="Disabled")  # nothing here is reached over Serve's HTTP
            started = time.monotonic()
            apps = [
                serve.RunTarget(
                    make(model, rt.deployments[model.name], self.offline, self.namespace, rt.metrics_interval_s),
                    name=name,
                    route_prefix=None,
                    logging_config=QUIET,
                )
                for name, make, model in pools
            ]
            serve.run_many(apps)  # side by side: until every one is running
            self.say(f"ray: {len(pools)} shared model pool(s) running ({time.monotonic() - started:.1f} s)")
        if serve_running():
            for app in serve.status().applications:  # a pool no longer in the config
                if app.startswith((serving.detector_app(""), serving.voice_app(""))) and app not in self._apps():
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
        rt = self.config.runtime
        return {
            *(serving.detector_app(d.name) for d in self.config.detectors if d.name in rt.deployments),
            *(serving.voice_app(a.name) for a in self.config.audio_detectors if a.name in rt.deployments),
        }

    # ---- streams ------------------------------------------------------------------------------------
    def _controller(self) -> Any:
        if self.controller is None:
            try:
                self.controller = ray.get_actor(CONTROLLER, namespace=self.namespace)
            except ValueError:
                return None
        return self.controller

    def apply(self) -> dict[str, list[str]]:
        """Make the running streams those of the config: start the new ones, stop the removed
        ones, restart the changed ones (all of them, where the models or sinks changed); the others
        are not touched."""
        controller = self._controller()
        if controller is None:
            raise ConfigError(f"ray: nothing deployed in namespace {self.namespace!r}: deploy first")
        changes = ray.get(controller.apply.remote(self.config.model_dump(mode="json")))
        self.say("ray: streams " + ", ".join(f"{k} {v}" for k, v in changes.items() if v))
        return changes

    def status(self, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Each stream's state, as its node runtime last reported it to the controller."""
        controller = self._controller()
        if controller is None:
            return []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return ray.get(controller.status.remote(), timeout=timeout_s)
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise BackendUnavailableError(
                        f"ray: the controller has been restarting for {timeout_s:.0f} s; ask again"
                    ) from None
                time.sleep(0.5)

    def nodes(self) -> list[dict[str, Any]]:
        """Each node runtime: ready or not, its slots, its streams, how long since its last beat."""
        controller = self._controller()
        return [] if controller is None else ray.get(controller.nodes_status.remote(), timeout=10.0)

    def down(self) -> None:
        """Every node runtime drains its sinks and goes; then the pools, the controller and the helpers."""
        controller = self._controller()
        if controller is not None:
            try:
                ray.get(controller.down.remote(), timeout=30.0)
            except Exception as exc:  # it goes anyway
                log.warning("controller: did not stop cleanly: %s", exc)
        if serve_running():
            for app in serve.status().applications:
                if app.startswith((serving.detector_app(""), serving.voice_app(""))):
                    serve.delete(app)
        # a node runtime the controller could not stop (or started before it failed) goes too
        left = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == self.namespace and a["name"].startswith(NODE_PREFIX)
        ]
        for name in (*left, CONTROLLER, metrics.HUB, numbers.KEEPER):
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
            except ValueError:
                pass
        self.controller = None

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
                        if s["state"] == "waiting for a slot":
                            section = self.config.runtime.streams
                            self.say(
                                f"ray: stream {s['stream']} is not running yet: no node has room for one more "
                                f"(num_cpus {section.num_cpus}, resources {section.resources} each)"
                            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for s in self.status():
                if s.get("error"):
                    self.say(f"ray: stream {s['stream']}: {s['error']}")
            self.down()
