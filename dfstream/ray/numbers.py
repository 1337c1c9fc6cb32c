"""Sequence numbers that go on when a stream moves to another node runtime (or its node restarts).

A detached actor (``dfstream.numbers``) hands out blocks of numbers per key; a node runtime
numbers its verdicts and MQTT messages from the blocks it leased, asking for the next block when
half of the current one is used. A stream starting on a node (moved there, or its node's runtime
started again) leases above the highest block ever handed out, so a number is never used twice; a
move skips at most one block (``BLOCK``): subscribers see a gap, which is the truth (frames went
unjudged while the stream was away), never a repeat.
"""

from __future__ import annotations

import asyncio
import logging

import ray

log = logging.getLogger(__name__)

BLOCK = 64
KEEPER = "dfstream.numbers"


@ray.remote(num_cpus=0, max_restarts=-1)
class NumberKeeper:
    """Placed on the head node (``engine.on_head``): its state lives as long as the cluster. Should
    it restart all the same, a node runtime's next lease still goes above what it used
    (``above``)."""

    def __init__(self) -> None:
        self.high: dict[str, int] = {}

    def lease(self, key: str, size: int, above: int = 0) -> int:
        """The first number of a new block of ``size``; ``above``: the caller's last number used."""
        first = max(self.high.get(key, 0), above) + 1
        self.high[key] = first + size - 1
        return first


class LeasedNumbering:
    """``pipeline.runtime.numbering.Numbering`` over leased blocks; ``prime`` before the first ``next``."""

    def __init__(self, keeper_handle, block: int = BLOCK) -> None:  # noqa: ANN001
        self.keeper = keeper_handle
        self.block = block
        self._blocks: dict[str, list[list[int]]] = {}  # per key: [next, end) of the current block, then the leased ones
        self._pending: set[str] = set()

    async def prime(self, keys: list[str]) -> None:
        for key in keys:
            first = await self.keeper.lease.remote(key, self.block)
            self._blocks[key] = [[first, first + self.block]]

    def next(self, key: str) -> int:
        blocks = self._blocks[key]
        if blocks[0][0] >= blocks[0][1]:
            if len(blocks) > 1:
                blocks.pop(0)
            else:  # the keeper has not answered in time (or is away): count on; its next lease goes above
                blocks[0][1] += self.block
        n = blocks[0][0]
        blocks[0][0] += 1
        if len(blocks) == 1 and blocks[0][1] - blocks[0][0] <= self.block // 2 and key not in self._pending:
            self._pending.add(key)
            asyncio.ensure_future(self._extend(key))
        return n

    async def _extend(self, key: str) -> None:
        blocks = self._blocks[key]
        try:
            first = await self.keeper.lease.remote(key, self.block, blocks[-1][1] - 1)
            while first < blocks[-1][1]:  # counted on past that while the keeper answered: lease above it
                first = await self.keeper.lease.remote(key, self.block, blocks[-1][1] - 1)
            blocks.append([first, first + self.block])
        except Exception as exc:
            log.warning("%s: could not lease sequence numbers (%s); counting on", key, exc)
        finally:
            self._pending.discard(key)
