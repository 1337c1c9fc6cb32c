"""The edge every source and sink stands on (``core``), tested once: backoff, the rate-limited log,
the bounded drop-oldest queue, the lifecycle and the thread hand-off."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time

import pytest

from core.backoff import Backoff
from core.errors import LifecycleError
from core.handoff import LoopHandoff, Stopped
from core.lifecycle import Lifecycle, State
from core.queues import DropOldestQueue, QueueClosed
from core.ratelog import RateLimitedLog, RateLimitedRecords


# ---- backoff ---------------------------------------------------------------------------------------
def test_backoff_doubles_with_equal_jitter_up_to_its_cap_and_resets():
    backoff = Backoff(1.0, 8.0, random.Random(7))
    waits = [backoff.next() for _ in range(8)]
    bases = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(base / 2 <= w <= base for w, base in zip(waits, bases)), waits
    assert len({round(w, 6) for w in waits[3:]}) > 1  # jittered: two clients never retry in lockstep
    assert backoff.attempts == 8
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


@pytest.mark.parametrize(("initial", "cap"), [(0, 1), (2, 1), (-1, 5)])
def test_backoff_refuses_bounds_that_make_no_sense(initial, cap):
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial, cap)


def test_backoff_survives_a_very_long_outage():
    backoff = Backoff(0.5, 30.0)
    for _ in range(10_000):
        assert backoff.next() <= 30.0


# ---- the rate-limited log ----------------------------------------------------------------------------
def test_a_repeated_problem_is_logged_first_then_at_powers_of_ten_at_most_once_a_minute(caplog):
    now = [0.0]
    problems = RateLimitedLog(logging.getLogger("edge-test"), clock=lambda: now[0])
    logged = []
    with caplog.at_level(logging.INFO, "edge-test"):
        for n in range(1, 2001):  # one failure a second for 2000 s
            now[0] = float(n)
            if problems("open", "cam: refused"):
                logged.append(n)
        # the 10th came 9 s after the 1st line: held until a minute had passed (61st); the 100th came
        # 39 s after that: held too (121st); the 1000th on time
        assert logged == [1, 61, 121, 1000]
        assert problems.count("open") == 2000
        assert problems.clear("open", "cam: online again") == 2000
        assert problems("open", "cam: refused")  # a new outage starts at 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "cam: refused",
        "cam: refused (x61)",
        "cam: refused (x121)",
        "cam: refused (x1000)",
        "cam: online again",
        "cam: refused",
    ]
    assert problems.clear("never happened", "not logged") == 0


def test_a_burst_of_failures_is_one_line():
    problems = RateLimitedLog(logging.getLogger("edge-test"))
    assert [problems("x", "failed") for _ in range(50)].count(True) == 1


def test_a_library_that_warns_per_bad_packet_is_held_to_the_same_rule(caplog):
    """aiortc writes a warning per undecodable frame a peer sends (498 lines in 10 s of garbage RTP,
    issue 38): through the filter the calls install, one line, then one with the count a minute on."""
    from stream.calls import PEER_DRIVEN_LOGGERS, limit_peer_logs

    now = [0.0]
    logger = logging.getLogger("aiortc.rtcrtpreceiver")
    rule = RateLimitedRecords(clock=lambda: now[0])
    logger.addFilter(rule)
    try:
        with caplog.at_level(logging.INFO, "aiortc.rtcrtpreceiver"):
            for n in range(500):  # 50 a second for 10 s, then one more a minute on
                now[0] = n / 50
                logger.warning("RTCRtpReceiver(%s) failed to decode %s frame: %s", "video", "VP8", f"garbage {n}")
            logger.info("RTCRtpReceiver(video) - RTCP bye")  # below warning: untouched
            now[0] = 70.0
            logger.warning("RTCRtpReceiver(%s) failed to decode %s frame: %s", "video", "VP8", "garbage")
    finally:
        logger.removeFilter(rule)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "RTCRtpReceiver(video) failed to decode VP8 frame: garbage 0",
        "RTCRtpReceiver(video) - RTCP bye",
        "RTCRtpReceiver(video) failed to decode VP8 frame: garbage (x501)",
    ]
    limit_peer_logs()
    limit_peer_logs()  # once per logger, however often
    for name in PEER_DRIVEN_LOGGERS:
        assert len([f for f in logging.getLogger(name).filters if isinstance(f, RateLimitedRecords)]) == 1


# ---- the queue ----------------------------------------------------------------------------------------
def test_a_full_queue_drops_the_oldest_counts_why_and_tells():
    dropped: list[tuple[int, str]] = []
    queue: DropOldestQueue[int] = DropOldestQueue(3, on_drop=lambda item, reason: dropped.append((item, reason)))
    for i in range(5):
        queue.put(i)
    queue.put(5, reason="outbox_full")
    assert list(queue) == [3, 4, 5] and len(queue) == 3 and queue.full()
    assert dropped == [(0, "queue_full"), (1, "queue_full"), (2, "outbox_full")]
    assert queue.dropped == {"queue_full": 2, "outbox_full": 1}


def test_closing_ends_consumers_after_what_was_queued_and_refuses_more():
    async def scenario() -> tuple[list[int], int]:
        queue: DropOldestQueue[int] = DropOldestQueue(4)
        for i in range(3):
            queue.put(i)
        queue.close()
        queue.put(99)  # too late: dropped, counted as such
        got = [item async for item in queue]
        with pytest.raises(QueueClosed):
            await queue.get()
        return got, queue.dropped["closed"]

    assert asyncio.run(scenario()) == ([0, 1, 2], 1)


def test_a_waiting_consumer_wakes_on_put_and_on_close():
    async def scenario() -> list[object]:
        queue: DropOldestQueue[str] = DropOldestQueue(2)
        seen: list[object] = []

        async def consume() -> None:
            try:
                while True:
                    seen.append(await queue.get())
            except QueueClosed:
                seen.append("closed")

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        queue.put("a")
        await asyncio.sleep(0.01)
        queue.close()
        await asyncio.wait_for(task, 1)
        return seen

    assert asyncio.run(scenario()) == ["a", "closed"]


def test_put_wait_waits_for_room_instead_of_dropping():
    async def scenario() -> tuple[list[int], int]:
        queue: DropOldestQueue[int] = DropOldestQueue(1)
        queue.put(0)
        producer = asyncio.create_task(queue.put_wait(1))
        await asyncio.sleep(0.02)
        assert not producer.done()  # no room: it waits
        first = await queue.get()
        await asyncio.wait_for(producer, 1)
        return [first, await queue.get()], sum(queue.dropped.values())

    assert asyncio.run(scenario()) == ([0, 1], 0)


def test_join_waits_for_every_item_to_be_handled_or_dropped():
    async def scenario() -> bool:
        queue: DropOldestQueue[int] = DropOldestQueue(2)
        for i in range(3):  # one of them dropped: join does not wait for it
            queue.put(i)
        joined = asyncio.create_task(queue.join())
        await queue.get()
        queue.task_done()
        await asyncio.sleep(0.01)
        assert not joined.done()
        await queue.get()
        queue.task_done()
        await asyncio.wait_for(joined, 1)
        return True

    assert asyncio.run(scenario())


# ---- the lifecycle ------------------------------------------------------------------------------------
class Ticker(Lifecycle):
    """A resource with one background loop that crashes on its first two runs."""

    crash_backoff = (0.01, 0.02)

    def __init__(self) -> None:
        super().__init__("ticker")
        self.runs = 0
        self.closed_with_loops_running: bool | None = None
        self.loop_task: asyncio.Task[None] | None = None

    async def _open(self) -> None:
        self.loop_task = self.spawn("tick", self._tick)

    async def _close(self) -> None:
        assert self.loop_task is not None
        self.closed_with_loops_running = not self.loop_task.done()

    async def _tick(self) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise ValueError(f"bug {self.runs}")
        await asyncio.Event().wait()


def test_a_resource_runs_its_named_loops_restarts_a_crashed_one_and_stops_them(caplog):
    async def scenario() -> tuple[Ticker, list[str]]:
        ticker = Ticker()
        async with ticker:
            assert ticker.state is State.RUNNING
            names = [t.get_name() for t in asyncio.all_tasks()]
            await asyncio.sleep(0.2)
        return ticker, names

    with caplog.at_level(logging.ERROR, "tests.unit.test_edge"):
        ticker, names = asyncio.run(scenario())
    assert "dfstream[ticker].tick" in names
    assert ticker.runs == 3 and ticker.state is State.CLOSED  # crashed twice, restarted each time
    assert ticker.closed_with_loops_running is True and ticker.loop_task is not None and ticker.loop_task.done()
    assert (
        "loop tick crashed" in caplog.records[0].getMessage() and "ValueError: bug 1" in caplog.records[0].getMessage()
    )


def test_entering_twice_or_after_closing_is_refused():
    async def scenario() -> list[str]:
        messages = []
        ticker = Ticker()
        async with ticker:
            with pytest.raises(LifecycleError) as again:
                await ticker.__aenter__()
            messages.append(str(again.value))
        with pytest.raises(LifecycleError) as closed:
            await ticker.__aenter__()
        messages.append(str(closed.value))
        return messages

    assert asyncio.run(scenario()) == ["ticker is already running", "ticker was closed: make a new one"]


def test_a_failed_open_leaves_the_resource_closed_and_its_loops_stopped():
    class Broken(Ticker):
        async def _open(self) -> None:
            await super()._open()
            raise OSError("cannot connect")

    async def scenario() -> Broken:
        broken = Broken()
        with pytest.raises(OSError, match="cannot connect"):
            async with broken:
                pass
        return broken

    broken = asyncio.run(scenario())
    assert broken.state is State.CLOSED and broken.loop_task is not None and broken.loop_task.done()


# ---- the hand-off -------------------------------------------------------------------------------------
def test_a_thread_hands_work_to_the_loop_and_waits_for_answers():
    async def scenario() -> tuple[list[int], int, bool]:
        handoff = LoopHandoff.here()
        queue: DropOldestQueue[int] = DropOldestQueue(10)
        stop = threading.Event()
        answers: list[int] = []

        async def double(n: int) -> int:
            await asyncio.sleep(0)
            return 2 * n

        def work() -> None:
            for i in range(3):
                handoff.call(queue.put, i)
            answers.append(handoff.wait(double(21), stop))

        thread = threading.Thread(target=work)
        thread.start()
        await asyncio.to_thread(thread.join)
        got = [queue.get_nowait() for _ in range(len(queue))]
        return got, answers[0], thread.is_alive()

    assert asyncio.run(scenario()) == ([0, 1, 2], 42, False)


def test_a_waiting_thread_gives_up_when_told_to_stop():
    async def scenario() -> float:
        handoff = LoopHandoff.here()
        stop = threading.Event()
        outcome: list[float] = []

        def work() -> None:
            started = time.monotonic()
            with pytest.raises(Stopped):
                handoff.wait(asyncio.Event().wait(), stop)
            outcome.append(time.monotonic() - started)

        thread = threading.Thread(target=work)
        thread.start()
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.to_thread(thread.join, 2)
        return outcome[0]

    assert asyncio.run(scenario()) < 1.0


def test_a_call_to_a_closed_loop_is_dropped_not_raised():
    loop = asyncio.new_event_loop()
    loop.close()
    assert LoopHandoff(loop).call(print, "never") is False
