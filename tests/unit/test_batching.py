"""Dynamic batching: batches form from concurrent submitters, never exceed max_batch, and
failures reach every waiter without stopping the batcher."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pipeline.runtime.batching import Batcher


def doubler(calls: list[int], delay: float = 0.02):
    def fn(items):
        calls.append(len(items))
        time.sleep(delay)  # a forward pass, off the event loop
        return [x * 2 for x in items]

    return fn


def test_concurrent_submitters_share_batches():
    calls: list[int] = []

    async def main():
        async with Batcher("model", doubler(calls), max_batch=8, max_wait_ms=20) as batcher:
            return await asyncio.gather(*(batcher.submit(i) for i in range(20)))

    assert asyncio.run(main()) == [i * 2 for i in range(20)]
    assert max(calls) == 8 and sum(calls) == 20 and len(calls) <= 4


def test_a_lone_item_waits_at_most_max_wait():
    calls: list[int] = []

    async def main():
        async with Batcher("model", doubler(calls, 0.0), max_batch=8, max_wait_ms=30) as batcher:
            start = time.perf_counter()
            assert await batcher.submit(4) == 8
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    assert 0.025 < elapsed < 0.5 and calls == [1]


def test_batches_form_while_the_worker_is_busy_even_without_waiting():
    calls: list[int] = []

    async def main():
        async with Batcher("model", doubler(calls, 0.05), max_batch=16, max_wait_ms=0) as batcher:
            first = asyncio.create_task(batcher.submit(0))
            await asyncio.sleep(0.01)  # the worker is busy with item 0; the rest queue up
            rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 6)))
            return [await first, *rest]

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
    assert calls == [1, 5]


def test_a_failing_batch_fails_its_waiters_and_the_next_batch_runs():
    state = {"fail": True}
    observed = []

    def flaky(items):
        if state.pop("fail", False):
            raise RuntimeError("CUDA out of memory")
        return items

    async def main():
        async with Batcher(
            "model", flaky, max_batch=4, max_wait_ms=10, observer=lambda *a: observed.append(a)
        ) as batcher:
            first = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
            second = await batcher.submit(7)
            return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "out of memory" in str(r) for r in first)
    assert second == 7
    assert [(o[1], o[3]) for o in observed] == [(3, False), (1, True)]


def test_work_runs_in_the_batchers_own_thread():
    names = []

    def fn(items):
        names.append(threading.current_thread().name)
        return items

    async def main():
        async with Batcher("meso4", fn) as batcher:
            await batcher.submit(1)

    asyncio.run(main())
    assert names == ["dfstream[meso4].infer_0"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        Batcher("x", lambda items: items, max_batch=0)
