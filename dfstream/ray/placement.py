"""Which node runs which stream: the controller's arithmetic, apart from Ray so it can be read and
tested on its own.

A node takes as many streams as it has room for (``capacity``). Placing keeps every stream where it
is while that node is there and has room for it, puts the streams without a node on the least
loaded nodes, then evens the load: while one node has two streams more than another that has room,
one stream moves from the fuller to the emptier. So a node that joins takes streams until the loads
are within one of even, a node that leaves gives its streams to the others, and no other stream
moves: a move costs a stream its tracks and a second or so of verdicts. A ``pinned`` stream (a file
read at its own pace: moved, it would start again from its first frame) moves only with its node.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plan:
    of: dict[str, str]  # stream -> node
    waiting: list[str] = field(default_factory=list)  # streams no node has room for

    def on(self, node: str) -> list[str]:
        return sorted(s for s, n in self.of.items() if n == node)


def capacity(resources: Mapping[str, float], num_cpus: float, needs: Mapping[str, float], unlimited: int) -> int:
    """How many streams a node advertising ``resources`` takes, each needing ``num_cpus`` and ``needs``."""
    counts = [int(resources.get(key, 0.0) // value) for key, value in needs.items() if value > 0]
    if num_cpus > 0:
        counts.append(int(resources.get("CPU", 0.0) // num_cpus))
    return min(counts) if counts else unlimited


def place(
    streams: Iterable[str],
    capacities: Mapping[str, int],
    current: Mapping[str, str],
    pinned: Collection[str] = (),
) -> Plan:
    """Where each of ``streams`` runs, given the nodes' ``capacities`` and where they run now."""
    wanted = sorted(set(streams))
    load: dict[str, list[str]] = {node: [] for node in capacities}
    for stream in wanted:  # stays where it is, while its node is there and has room
        node = current.get(stream)
        if node in load and len(load[node]) < capacities[node]:
            load[node].append(stream)
    placed = {s for streams_on in load.values() for s in streams_on}
    waiting: list[str] = []
    for stream in (s for s in wanted if s not in placed):
        free = [n for n in load if len(load[n]) < capacities[n]]
        if not free:
            waiting.append(stream)
            continue
        load[min(free, key=lambda n: (len(load[n]), n))].append(stream)
    while True:  # even it out, one move at a time: the fewest moves that bring it within one
        movable = [n for n in load if any(s not in pinned for s in load[n])]
        fullest = max(movable, key=lambda n: (len(load[n]), n), default=None)
        roomy = [n for n in load if len(load[n]) < capacities[n]]
        emptiest = min(roomy, key=lambda n: (len(load[n]), n), default=None)
        if fullest is None or emptiest is None or len(load[fullest]) - len(load[emptiest]) < 2:
            break
        mover = next(s for s in reversed(load[fullest]) if s not in pinned)  # the last placed: the others stay put
        load[fullest].remove(mover)
        load[emptiest].append(mover)
    return Plan({s: node for node, streams_on in load.items() for s in streams_on}, waiting)
