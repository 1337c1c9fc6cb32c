"""The controller (one detached actor, ``dfstream.controller``, on the head node): which node runtime
runs which stream, and what happens when nodes come and go.

    driver ──apply(config)──▶ controller ◀──beat(node, its streams' states)── node runtime (one per node)
                                   └──answer: the streams that node is to run──────────▲

Every ``heartbeat_s`` each node runtime reports its streams and is answered with the streams it is
to run: the placement is the controller's, and reaches a node in its next beat. A node that can
take streams (``runtime.streams``: its CPUs and resources) gets a node runtime as soon as Ray lists
it. A node whose beats stop for ``lost_after_s`` is lost: its runtime is killed and its streams
placed on the others at once (``placement.place``: nobody else moves, except to even the load).
A stream that moves is given to its new node only once its old node has said it stopped (or the
old node is lost), so a stream never runs on two nodes at once; a runtime that hears nothing from
the controller for ``lost_after_s`` stops its streams itself. Sequence numbers go on across a move
(``numbers``).

Streams waiting for a slot are demand: the controller asks Ray's autoscaler for room for every
stream it has (``request_resources``, one bundle per stream), so cameras added add nodes and
cameras removed let them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

from core.errors import one_line
from dfstream.config import DfstreamConfig
from dfstream.ray.placement import Plan, capacity, place

log = logging.getLogger(__name__)

CONTROLLER = "dfstream.controller"
SAVED = b"dfstream.controller.config"  # the applied config, in Ray's own store: a restart goes on from it
NODE_PREFIX = "dfstream.node."
DISCOVERY_S = 1.0  # how often Ray's node list is read (joins; a node Ray knows is dead)
START_TIMEOUT_S = 180.0  # a node runtime not ready this long after its start is started again
SETTLE_S = 60.0  # new streams wait this long at most for the node runtimes starting beside the ready ones
REST_S = 10.0  # after a node is lost, before a runtime is started on it again (if Ray still lists it)
UNLIMITED = 1_000  # the streams a node takes when nothing in runtime.streams bounds them
FINAL = ("ended", "failed")


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def identity(actor: Any) -> str:
    """Which actor a handle names (two handles to one actor are equal here)."""
    return actor._actor_id.hex()  # noqa: SLF001 -- Ray gives handles no public id


def base_of(config: dict[str, Any]) -> dict[str, Any]:
    """What every node runtime shares: the config without its streams."""
    return {k: v for k, v in config.items() if k != "streams"}


@dataclass
class Node:
    node_id: str
    actor: Any
    capacity: int
    base: str  # the digest of the config it was started with
    started: float = field(default_factory=time.monotonic)
    last_beat: float | None = None
    ready: bool = False
    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # its last report, by stream
    empty_since: float | None = None  # ready without a stream since then


@ray.remote(num_cpus=0, max_restarts=-1)
class Controller:
    def __init__(self, namespace: str, forwarded: dict[str, str], offline: bool):
        self.namespace, self.offline = namespace, offline
        self.forwarded = forwarded  # what node runtimes get of the driver's environment (never a credential)
        self.config: DfstreamConfig | None = None
        self.base: dict[str, Any] = {}
        self.base_digest = ""
        self.wanted: dict[str, dict[str, Any]] = {}  # stream id -> its section
        self.pinned: set[str] = set()
        self.nodes: dict[str, Node] = {}
        self.plan = Plan({})
        self.final: dict[str, dict[str, Any]] = {}  # streams that ended or failed, with their last state
        self.moves: dict[str, int] = {}  # per stream placed once: how often it moved since
        self.demand = 0
        self.resting: dict[str, float] = {}  # node -> until when no runtime is started on it again
        self.released: set[str] = set()  # nodes whose runtime was stopped for want of streams
        self.gone: set[str] = set()  # the runtimes this controller stopped or declared lost
        saved = _internal_kv_get(SAVED, namespace=namespace)
        if saved:  # restarted by Ray: the config it was applied, and the node runtimes it finds, go on
            self._take(json.loads(saved))
        self._ticking = asyncio.Lock()
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="dfstream.controller")

    def _take(self, config: dict[str, Any]) -> None:
        self.config = DfstreamConfig.model_validate(config)
        self.wanted = {s["id"]: s for s in config["streams"]}
        self.pinned = {s.id for s in self.config.streams if not s.live}  # files at their own pace
        self.base = base_of(config)
        self.base_digest = digest(self.base)

    # ---- the driver's calls --------------------------------------------------------------------------
    async def apply(self, config: dict[str, Any]) -> dict[str, list[str]]:
        """Make the streams those of ``config``; a change outside its streams restarts every node
        runtime with it (the models or sinks changed), a change of one stream restarts that stream."""
        DfstreamConfig.model_validate(config)
        wanted = {s["id"]: s for s in config["streams"]}
        base = base_of(config)
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "kept": []}
        rebase = bool(self.base_digest) and digest(base) != self.base_digest
        for sid, section in self.wanted.items():
            if sid not in wanted:
                changes["removed"].append(sid)
            elif rebase or digest(section) != digest(wanted[sid]):
                changes["changed"].append(sid)
            else:
                changes["kept"].append(sid)
        changes["added"] = sorted(set(wanted) - set(self.wanted))
        for sid in changes["removed"] + changes["changed"]:
            self.final.pop(sid, None)
            self.moves.pop(sid, None)
        if rebase:  # the runtimes were built for the old models and sinks: new ones, built for these
            await self._retire(list(self.nodes))
        self._take(config)
        _internal_kv_put(SAVED, json.dumps(config), overwrite=True, namespace=self.namespace)
        await self._tick(discover=True)
        return {k: sorted(v) for k, v in changes.items()}

    async def status(self) -> list[dict[str, Any]]:
        """Each stream's state as its node runtime last reported it (or why it has none)."""
        out = []
        for sid in sorted(self.wanted):
            if sid in self.final:
                out.append(self.final[sid])
                continue
            node = self.plan.of.get(sid)
            report = self.nodes[node].running.get(sid) if node in self.nodes else None
            if report is None:
                state = "waiting for a slot" if sid in self.plan.waiting else "starting"
                report = {"stream": sid, "state": state, "node": node, "error": None}
            moves = self.moves.get(sid, 0)
            out.append({**report, "restarted": moves > 0, "moves": moves})
        return out

    async def nodes_status(self) -> list[dict[str, Any]]:
        return [
            {
                "node": n.node_id,
                "ready": n.ready,
                "capacity": n.capacity,
                "streams": self.plan.on(n.node_id),
                "since_beat_s": None if n.last_beat is None else round(time.monotonic() - n.last_beat, 2),
            }
            for n in self.nodes.values()
        ]

    async def demand_bundles(self) -> int:
        """How many stream bundles the autoscaler was last asked for."""
        return self.demand

    async def down(self, timeout_s: float = 10.0) -> None:
        """Every node runtime drains its sinks and goes."""
        self.wanted = {}
        self.task.cancel()
        _internal_kv_put(SAVED, b"", overwrite=True, namespace=self.namespace)
        await self._retire(list(self.nodes), timeout_s)

    # ---- the node runtimes' call ---------------------------------------------------------------------
    async def beat(
        self, node_id: str, base: str, state: str, error: str | None, running: dict[str, dict[str, Any]], actor: Any
    ) -> dict[str, Any]:
        """A node runtime's heartbeat: its state and its streams' in, the streams it is to run out."""
        if identity(actor) in self.gone:  # stopped or declared lost: the kill has not reached it yet
            return {"streams": {}, "known": False}
        node = self.nodes.get(node_id)
        if node is not None and identity(node.actor) != identity(actor):  # a second runtime on the node: it goes
            ray.kill(actor, no_restart=True)
            return {"streams": {}, "known": False}
        if node is None and node_id not in self.resting and base == self.base_digest and self.config is not None:
            # this controller was restarted (its state is the applied config alone): a runtime built
            # for that config, not declared lost since, is taken as it is, streams and all
            node = await self._adopt(node_id, actor)
        if node is None:  # declared lost: killed, if the kill has not reached it yet
            return {"streams": {}, "known": False}
        if node.base != base:  # found after a restart of the controller, built for another config
            await self._lose(node, "its runtime was built for another config")
            return {"streams": {}, "known": False}
        if state == "failed":  # its models or sinks would not start: said, and started again on the next look
            await self._lose(node, f"its runtime failed: {error}")
            return {"streams": {}, "known": False}
        node.last_beat, node.ready, node.running = time.monotonic(), state == "running", running
        for sid, report in running.items():  # after a restart of the controller: where streams already run
            if report["state"] not in FINAL and sid in self.wanted and sid not in self.plan.of:
                self.plan.of[sid] = node_id
        for sid, report in running.items():
            if report["state"] in FINAL and sid in self.wanted and self.plan.of.get(sid) == node_id:
                self.final[sid] = {**report, "restarted": self.moves.get(sid, 0) > 0}
        return {"streams": self._assigned(node_id), "known": True}

    async def _adopt(self, node_id: str, actor: Any) -> Node | None:
        assert self.config is not None
        rt = self.config.runtime
        info = next((n for n in await asyncio.to_thread(ray.nodes) if n["NodeID"] == node_id and n["Alive"]), None)
        if info is None:
            return None
        slots = capacity(info["Resources"], rt.streams.num_cpus, rt.streams.resources, UNLIMITED)
        if node_id in self.nodes:  # started or taken meanwhile
            return self.nodes[node_id] if identity(self.nodes[node_id].actor) == identity(actor) else None
        node = self.nodes[node_id] = Node(node_id, actor, slots, self.base_digest, last_beat=time.monotonic())
        log.info("controller: node runtime on %s taken as it runs", node_id[:16])
        return node

    def _assigned(self, node_id: str) -> dict[str, dict[str, Any]]:
        """The node's streams, less any another node still reports running (handed over once it has
        stopped there: a stream that moved twice before its first node let go waits for that one too)."""
        elsewhere = {
            sid
            for other in self.nodes.values()
            if other.node_id != node_id
            for sid, report in other.running.items()
            if report["state"] not in FINAL
        }
        return {
            sid: self.wanted[sid]
            for sid in self.plan.on(node_id)
            if sid in self.wanted and sid not in self.final and sid not in elsewhere
        }

    # ---- the loop ------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        last_discovery = 0.0
        while True:
            try:
                discover = time.monotonic() - last_discovery >= DISCOVERY_S
                if discover:
                    last_discovery = time.monotonic()
                await self._tick(discover)
            except Exception as exc:  # noqa: BLE001 -- the controller must keep answering beats
                log.error("controller: %s", one_line(exc, with_type=True))
            interval = self.config.runtime.nodes.heartbeat_s / 2 if self.config else 0.25
            await asyncio.sleep(interval)

    async def _tick(self, discover: bool) -> None:
        async with self._ticking:  # the loop's and apply()'s: one at a time (a node must get one runtime)
            await self._tick_once(discover)

    async def _tick_once(self, discover: bool) -> None:
        if self.config is None:
            return
        rt = self.config.runtime
        now = time.monotonic()
        if discover:
            await self._discover()
        for node in list(self.nodes.values()):
            silent = now - (node.last_beat if node.last_beat is not None else node.started)
            if node.last_beat is not None and silent > rt.nodes.lost_after_s:
                await self._lose(node, f"no heartbeat for {silent:.1f} s")
            elif node.last_beat is None and silent > START_TIMEOUT_S:
                await self._lose(node, f"not started within {START_TIMEOUT_S:.0f} s")
        active = [sid for sid in self.wanted if sid not in self.final]
        ready = {n.node_id: n.capacity for n in self.nodes.values() if n.ready}
        starting = any(not n.ready and now - n.started < SETTLE_S for n in self.nodes.values())
        if starting:  # new streams wait for the runtimes starting now, rather than crowd the first one ready
            active = [sid for sid in active if sid in self.moves]
        plan = place(active, ready, self.plan.of, self.pinned)
        for sid, node in plan.of.items():
            before = self.plan.of.get(sid)
            self.moves[sid] = self.moves.get(sid, 0) + (before is not None and before != node)
        self.plan = plan
        await self._release(now, rt.nodes.release_after_s)
        if discover:
            await self._ask_autoscaler(len(active))

    async def _release(self, now: float, after_s: float) -> None:
        """Stop the runtimes that have had no stream for ``after_s``: their nodes go idle, and the
        autoscaler can let them go (a node runtime claims no resources, but its process is work)."""
        for node in [n for n in self.nodes.values() if n.ready]:
            busy = self.plan.on(node.node_id) or any(r["state"] not in FINAL for r in node.running.values())
            if busy or self.plan.waiting:
                node.empty_since = None
            elif node.empty_since is None:
                node.empty_since = now
            elif now - node.empty_since > after_s:
                log.info(
                    "controller: node %s has had no stream for %.0f s: its runtime stops", node.node_id[:16], after_s
                )
                self.released.add(node.node_id)
                await self._retire([node.node_id])

    def _needed(self) -> bool:
        """Whether one more node runtime would take streams: some wait for a slot, or the load is uneven."""
        loads = [len(self.plan.on(n.node_id)) for n in self.nodes.values() if n.ready]
        waiting = len([s for s in self.wanted if s not in self.final]) > len(self.plan.of)
        return waiting or max(loads, default=0) >= 2

    async def _discover(self) -> None:
        assert self.config is not None
        rt = self.config.runtime
        alive = {n["NodeID"]: n for n in await asyncio.to_thread(ray.nodes) if n["Alive"]}
        for node in list(self.nodes.values()):
            if node.node_id not in alive:
                await self._lose(node, "Ray lists the node as dead")
        for node_id in [n for n in self.resting if n not in alive]:
            del self.resting[node_id]
        self.released &= set(alive)
        now = time.monotonic()
        for node_id, info in alive.items():
            if node_id in self.nodes or self.resting.get(node_id, 0.0) > now:
                continue
            if node_id in self.released:
                if not self._needed():
                    continue
                self.released.discard(node_id)
            slots = capacity(info["Resources"], rt.streams.num_cpus, rt.streams.resources, UNLIMITED)
            if slots > 0:
                await self._start(node_id, slots)

    async def _start(self, node_id: str, slots: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from dfstream.ray.nodes import NodeRuntime

        prefix = f"{NODE_PREFIX}{node_id}."  # the whole id: simulated nodes share long prefixes
        named = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)  # a call to Ray's GCS
        mine = [a["name"] for a in named if a.get("namespace") == self.namespace and a["name"].startswith(prefix)]
        if node_id in self.nodes:  # adopted by a beat meanwhile
            return
        node = None
        if mine:  # the node's runtime from before a restart of the controller: kept if it beats, for this config
            newest = max(mine, key=lambda n: int(n.rsplit(".", 1)[1]))
            with contextlib.suppress(ValueError):
                actor = ray.get_actor(newest, namespace=self.namespace)
                node = Node(node_id, actor, slots, self.base_digest, last_beat=time.monotonic())
        if node is None:  # a name of its own each time: a killed runtime's name may linger a while
            actor = NodeRuntime.options(
                name=f"{prefix}{time.time_ns()}",
                namespace=self.namespace,
                lifetime="detached",
                num_cpus=0,  # its streams' share of the node is counted by the controller, in slots
                max_restarts=0,  # a runtime that dies is a lost node: the controller starts another
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                runtime_env={"env_vars": self.forwarded},
            ).remote({"streams": [], **self.base}, self.namespace, node_id, self.base_digest, self.offline)
            node = Node(node_id, actor, slots, self.base_digest)
        node.actor.attach.remote(ray.get_runtime_context().current_actor)
        self.nodes[node_id] = node
        log.info("controller: node runtime started on %s (%d slots)", node_id[:16], slots)

    async def _lose(self, node: Node, why: str) -> None:
        log.warning("controller: node %s lost (%s); its streams go to the others", node.node_id[:16], why)
        del self.nodes[node.node_id]
        self.gone.add(identity(node.actor))
        # Ray may list a node whose beats stopped as alive for a while yet: no new runtime on it till then
        self.resting[node.node_id] = time.monotonic() + REST_S
        ray.kill(node.actor, no_restart=True)

    async def _retire(self, node_ids: list[str], timeout_s: float = 10.0) -> None:
        """Stop these node runtimes (each drains its sinks for at most ``timeout_s``), then kill them."""
        nodes = [self.nodes.pop(n) for n in node_ids if n in self.nodes]
        self.gone.update(identity(n.actor) for n in nodes)
        stops = [n.actor.stop.remote(timeout_s) for n in nodes]
        if stops:
            try:
                await asyncio.wait_for(asyncio.gather(*stops, return_exceptions=True), timeout_s + 5)
            except TimeoutError:
                log.warning("controller: node runtimes did not stop within %.0f s", timeout_s + 5)
        for node in nodes:
            ray.kill(node.actor, no_restart=True)
        gone = {n.node_id for n in nodes}
        self.plan = Plan({s: n for s, n in self.plan.of.items() if n not in gone}, self.plan.waiting)

    async def _ask_autoscaler(self, streams: int) -> None:
        """Room for every stream: a bundle each of what a stream takes (kept until asked again)."""
        assert self.config is not None
        if streams == self.demand:
            return
        section = self.config.runtime.streams
        bundle = {k: v for k, v in {"CPU": section.num_cpus, **section.resources}.items() if v > 0}
        if not bundle:
            return
        from ray.autoscaler.sdk import request_resources

        try:
            await asyncio.to_thread(request_resources, bundles=[bundle] * streams)
            self.demand = streams
        except Exception as exc:  # noqa: BLE001 -- no autoscaler to tell: the cluster is as it is
            log.warning("controller: could not tell the autoscaler of %d streams: %s", streams, exc)
