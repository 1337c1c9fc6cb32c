"""The one lifecycle of everything that talks to the outside (sources, sinks, outboxes, the feed,
the analysis queue, the Ray reporter), shaped as aiomqtt's client is:

    async with MqttSink(config) as sink:     # connects, starts its loops
        await sink.publish(event)
                                             # leaving: flushes, then cancels and awaits its loops

- ``state`` is an enum, checked and set before the first ``await`` of ``__aenter__``, so a second
  entry (or entering a closed resource) is refused with ``LifecycleError`` even from two tasks at once.
- Background loops live in one ``asyncio.TaskGroup`` per resource, named ``dfstream[<name>].<loop>``
  (what ``asyncio.all_tasks()``, py-spy and a hung test show).
- A loop that raises an exception it did not handle is a bug, but one resource's bug must not stop
  detection: it is logged (rate-limited) and restarted after the shared backoff.

Subclasses write ``_open`` (connect; start loops with ``spawn``) and ``_close`` (flush); nothing else
about starting and stopping."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

from core.backoff import Backoff
from core.errors import LifecycleError, one_line
from core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)


class State(str, enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Lifecycle:
    """Base of a resource used as ``async with``; ``name`` names it in task names and log lines."""

    crash_backoff: tuple[float, float] = (1.0, 30.0)  # first and longest wait before a crashed loop runs again

    def __init__(self, name: str):
        self.name = name
        self.state = State.NEW
        self.problems = RateLimitedLog(logging.getLogger(type(self).__module__))
        self._group: asyncio.TaskGroup | None = None
        self._loops: list[asyncio.Task[None]] = []

    async def __aenter__(self):  # noqa: ANN204 -- the subclass's own type
        if self.state is not State.NEW:
            doing = (
                "is already running" if self.state in (State.STARTING, State.RUNNING) else "was closed: make a new one"
            )
            raise LifecycleError(f"{self.name} {doing}")
        self.state = State.STARTING
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        try:
            await self._open()
        except BaseException:
            await self._end_loops()
            self.state = State.CLOSED
            raise
        self.state = State.RUNNING
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.state is not State.RUNNING:
            return
        self.state = State.CLOSING
        try:
            await self._close()
        finally:
            await self._end_loops()
            self.state = State.CLOSED

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    # ---- for subclasses ---------------------------------------------------------------------------
    async def _open(self) -> None:
        """Connect and ``spawn`` the background loops (the default has none)."""

    async def _close(self) -> None:
        """Flush what was accepted; the loops are cancelled after it (or earlier with ``_end_loops``)."""

    def spawn(self, loop: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` in this resource's TaskGroup until it returns or the resource closes."""
        if self._group is None:
            raise LifecycleError(f"{self.name}: a loop can only start inside `async with`")
        task = self._group.create_task(self._supervised(loop, run), name=f"dfstream[{self.name}].{loop}")
        self._loops.append(task)
        return task

    async def _end_loops(self) -> None:
        """Cancel every loop and wait for them (idempotent)."""
        for task in self._loops:
            task.cancel()
        if self._group is not None:
            group, self._group = self._group, None
            await group.__aexit__(None, None, None)
        self._loops.clear()

    async def _supervised(self, loop: str, run: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(*self.crash_backoff)
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- a bug in one loop; the rest of dfstream goes on
                delay = backoff.next()
                self.problems(
                    f"crash:{loop}",
                    "%s: loop %s crashed, restarting in %.1f s: %s",
                    self.name,
                    loop,
                    delay,
                    one_line(exc, with_type=True),
                    level=logging.ERROR,
                )
                await asyncio.sleep(delay)
