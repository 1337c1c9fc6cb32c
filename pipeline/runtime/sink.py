"""The one seam between judging and telling: the ``Sink`` protocol, and the outbox that keeps a
slow or dead sink from ever stalling detection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Protocol, runtime_checkable

from core.errors import one_line
from core.lifecycle import Lifecycle
from core.queues import DropOldestQueue
from pipeline.runtime.events import Event

log = logging.getLogger(__name__)

DropCounter = Callable[[str, int, str], None]  # sink name, how many, reason


@runtime_checkable
class Sink(Protocol):
    """Entered (``async with``) before the first event, to connect; left after the last, to flush
    what was accepted and let go (``core.lifecycle.Lifecycle`` gives both)."""

    name: str

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def publish(self, event: Event) -> None:
        """Deliver one event (a Verdict, StreamStatus, StreamState or Alert)."""


class Outbox(Lifecycle):
    """One sink's bounded drop-oldest queue and the task that feeds it: when the sink falls behind,
    the oldest event is dropped and counted (``outbox_full``); new verdicts matter more than stale
    ones. Leaving the block delivers what is queued for at most ``drain_timeout_s``, then closes the
    sink; what was left is counted (``shutdown``)."""

    def __init__(
        self, sink: Sink, capacity: int = 1000, on_drop: DropCounter | None = None, drain_timeout_s: float = 3.0
    ):
        super().__init__(f"{sink.name}.outbox")
        self.sink = sink
        self.drain_timeout_s = drain_timeout_s
        self._on_drop = on_drop
        self._queue: DropOldestQueue[Event] = DropOldestQueue(capacity, on_drop=self._dropped)
        self._sink_stack = AsyncExitStack()

    def put(self, event: Event) -> None:
        self._queue.put(event, reason="outbox_full")

    async def _open(self) -> None:
        await self._sink_stack.enter_async_context(self.sink)
        self.spawn("outbox", self._deliver)

    async def _close(self) -> None:
        try:
            await asyncio.wait_for(self._queue.join(), self.drain_timeout_s)
        except TimeoutError:
            left = len(self._queue) + 1  # and the one its hung publish holds
            log.warning("sink %s: %d events not delivered at shutdown", self.sink.name, left)
            self._queue.clear("shutdown")
            if self._on_drop is not None:
                self._on_drop(self.sink.name, 1, "shutdown")
        await self._end_loops()
        await self._sink_stack.aclose()

    def _dropped(self, event: Event, reason: str) -> None:
        if self._on_drop is not None:
            self._on_drop(self.sink.name, 1, reason)

    async def _deliver(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.sink.publish(event)
            except Exception as exc:  # noqa: BLE001 -- a sink's failure is its own; detection goes on
                self.problems(
                    "publish",
                    "sink %s: publish failed: %s",
                    self.sink.name,
                    one_line(exc, with_type=True),
                    level=logging.ERROR,
                )
            finally:
                self._queue.task_done()
