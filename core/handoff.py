"""The one way a thread meets the event loop (as aiomqtt does): it never touches a loop object
directly, it asks the loop to run something.

- ``call(fn, *args)``: run ``fn(*args)`` on the loop soon, do not wait (a frame into a queue, a
  status change). A closed loop means the process is stopping: the call is dropped.
- ``wait(coro, stop)``: run a coroutine on the loop and block this thread until it returns, or
  until ``stop`` is set (a file read as fast as possible waits for room in the queue; an encoder
  thread waits for its next frame)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from core.errors import LifecycleError

R = TypeVar("R")

POLL_S = 0.25  # how often a waiting thread looks at its stop flag


class Stopped(LifecycleError):
    """``wait`` gave up because its stop flag was set (or the loop is gone)."""


class LoopHandoff:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop

    @classmethod
    def here(cls) -> LoopHandoff:
        """For the running loop (call it on the loop, before starting the thread)."""
        return cls(asyncio.get_running_loop())

    def call(self, fn: Callable[..., object], *args: object) -> bool:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            return False
        return True

    def wait(self, coro: Coroutine[Any, Any, R], stop: threading.Event) -> R:
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise Stopped from None
        while not stop.is_set():
            try:
                return future.result(timeout=POLL_S)
            except concurrent.futures.TimeoutError:
                continue
            except concurrent.futures.CancelledError:
                raise Stopped from None
        future.cancel()
        raise Stopped
