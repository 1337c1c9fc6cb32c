"""The one seam between judging and telling: the ``Sink`` protocol, and the bounded outbox that
keeps a slow or dead sink from ever stalling detection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from pipeline.runtime.events import Event

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    name: str

    async def start(self) -> None:
        """Connect (if the sink has a connection) before the first event."""

    async def publish(self, event: Event) -> None:
        """Deliver one event (a Verdict, StreamStatus, StreamState or Alert)."""

    async def aclose(self) -> None:
        """Flush what was accepted and release resources."""


class Outbox:
    """A bounded queue and one task per sink. When the sink falls behind and the queue is full,
    the oldest event is dropped and counted: new verdicts matter more than stale ones."""

    def __init__(self, sink: Sink, capacity: int = 1000, on_drop: Callable[[str], None] | None = None):
        self.sink = sink
        self.capacity = capacity
        self.dropped = 0
        self.failed = 0
        self._on_drop = on_drop
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=capacity)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.sink.start()
        self._task = asyncio.create_task(self._deliver(), name=f"dfstream[{self.sink.name}].outbox")

    def put(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(self.sink.name)
        self._queue.put_nowait(event)

    def depth(self) -> int:
        return self._queue.qsize()

    async def aclose(self, timeout_s: float = 3.0) -> int:
        """Deliver what is queued (for at most ``timeout_s``), then close the sink; returns how many
        events were left undelivered."""
        left = 0
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            left = self._queue.qsize() + 1  # and the one its hung publish holds
            log.warning("sink %s: %d events not delivered at shutdown", self.sink.name, left)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.sink.aclose()
        return left

    async def _deliver(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.sink.publish(event)
            except Exception as exc:  # a sink's failure is its own; detection goes on
                self.failed += 1
                if self.failed == 1 or self.failed % 1000 == 0:
                    log.error("sink %s: publish failed (%d so far): %s", self.sink.name, self.failed, exc)
            finally:
                self._queue.task_done()
