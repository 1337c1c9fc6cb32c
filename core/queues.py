"""The one bounded queue between a producer that must never wait and a consumer that may fall
behind: when it is full, the oldest item is dropped and counted with its reason (for live video
the newest frame matters most; for verdicts, the newest state).

It belongs to one event loop: a thread reaches it only through ``LoopHandoff`` (``call(queue.put,
item)`` to offer, ``wait(queue.get(), stop)`` to take). ``close()`` ends it without displacing
anything: consumers get what is queued, then ``QueueClosed``. ``task_done`` / ``join`` let an
owner wait until everything taken was also handled (a sink's outbox drains at shutdown)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

from core.errors import ConfigError, LifecycleError

T = TypeVar("T")

QUEUE_FULL = "queue_full"


class QueueClosed(LifecycleError):
    """The queue was closed and everything in it has been taken."""


class DropOldestQueue(Generic[T]):
    def __init__(self, capacity: int, on_drop: Callable[[T, str], None] | None = None):
        """``on_drop(item, reason)`` is called for every item dropped (to count it in a metric)."""
        if capacity < 1:
            raise ConfigError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.dropped: collections.Counter[str] = collections.Counter()  # reason → items dropped
        self._on_drop = on_drop
        self._items: collections.deque[T] = collections.deque()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._done = asyncio.Event()
        self._done.set()
        self._unfinished = 0
        self.closed = False

    # ---- producing ------------------------------------------------------------------------------
    def put(self, item: T, reason: str = QUEUE_FULL) -> T | None:
        """Queue ``item`` at once; if full, drop the oldest (counted under ``reason``) and return it.
        Putting into a closed queue drops the item itself."""
        if self.closed:
            self._drop(item, "closed", queued=False)
            return item
        dropped = None
        if len(self._items) >= self.capacity:
            dropped = self._items.popleft()
            self._drop(dropped, reason)
        self._items.append(item)
        self._unfinished += 1
        self._done.clear()
        self._readable.set()
        return dropped

    async def put_wait(self, item: T) -> None:
        """Queue ``item``, waiting for room instead of dropping (a file read as fast as possible)."""
        while len(self._items) >= self.capacity and not self.closed:
            self._room.clear()
            await self._room.wait()
        self.put(item)

    def close(self) -> None:
        self.closed = True
        self._readable.set()
        self._room.set()

    # ---- consuming ------------------------------------------------------------------------------
    async def get(self) -> T:
        while not self._items:
            if self.closed:
                raise QueueClosed
            self._readable.clear()
            await self._readable.wait()
        return self._take()

    def get_nowait(self) -> T:
        if not self._items:
            raise QueueClosed if self.closed else IndexError("the queue is empty")
        return self._take()

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except QueueClosed:
                return

    def task_done(self) -> None:
        """An item taken with get() has been handled."""
        self._finish(1)

    async def join(self) -> None:
        """Until every item put has been taken and handled (or dropped)."""
        await self._done.wait()

    def clear(self, reason: str) -> int:
        """Drop everything queued (counted under ``reason``); returns how many."""
        n = len(self._items)
        while self._items:
            self._drop(self._items.popleft(), reason)
        return n

    # ---- looking --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        """The queued items, oldest first, left in place."""
        return iter(self._items)

    def peek(self) -> T:
        return self._items[0]

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    # ---- internals ------------------------------------------------------------------------------
    def _take(self) -> T:
        item = self._items.popleft()
        self._room.set()
        return item

    def _drop(self, item: T, reason: str, queued: bool = True) -> None:
        self.dropped[reason] += 1
        if queued:  # it was waiting: join() no longer waits for it
            self._finish(1)
        if self._on_drop is not None:
            self._on_drop(item, reason)

    def _finish(self, n: int) -> None:
        self._unfinished = max(0, self._unfinished - n)
        if self._unfinished == 0:
            self._done.set()
