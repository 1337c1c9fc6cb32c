"""Dynamic batching: many producers (every stream), one worker thread, batches formed on the fly.

``submit(item)`` returns the item's result. The collector takes the first waiting item, then
everything already queued, then waits up to ``max_wait_ms`` for more, up to ``max_batch``; the
batch runs in the batcher's own thread (torch and MTCNN release the GIL) while the next batch
gathers. Under load batches fill by themselves; when idle, an item waits at most ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from core.errors import ConfigError, InferenceError, LifecycleError
from core.lifecycle import Lifecycle

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

BatchObserver = Callable[[str, int, float, bool], None]  # name, size, seconds, ok


class Batcher(Lifecycle, Generic[T, R]):
    def __init__(
        self,
        name: str,
        fn: Callable[[Sequence[T]], Sequence[R]],
        max_batch: int = 8,
        max_wait_ms: float = 2.0,
        observer: BatchObserver | None = None,
    ):
        if max_batch < 1 or max_wait_ms < 0:
            raise ConfigError(f"{name}: max_batch must be >= 1 and max_wait_ms >= 0")
        super().__init__(name)
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.observer = observer
        self.batch_sizes: list[int] = []  # the last 1000, for tests and benchmarks
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dfstream[{name}].infer")

    async def _open(self) -> None:
        self.spawn("batcher", self._collect)

    async def _close(self) -> None:
        await self._end_loops()
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: T) -> R:
        if not self.running:
            raise LifecycleError(f"batcher {self.name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if batch:
                await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.fn, items)
            if len(results) != len(items):
                raise InferenceError(f"{self.name}: {len(results)} results for a batch of {len(items)}")
        except Exception as exc:  # every waiter learns of the failure; the batcher keeps serving
            self._observe(len(items), time.perf_counter() - start, ok=False)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._observe(len(items), time.perf_counter() - start, ok=True)
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)

    def _observe(self, size: int, seconds: float, ok: bool) -> None:
        self.batch_sizes.append(size)
        del self.batch_sizes[:-1000]
        if self.observer is not None:
            self.observer(self.name, size, seconds, ok)
