"""The one rule for a problem that repeats: log its first occurrence; after that, one line with the
count so far when the count has passed the next power of ten (10, 100, 1000 ...) and a minute has
passed since the last line; and one line when it clears. Visible, never a flood (a camera retrying
every second for a day writes 6 lines); the exact count is a metric."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Seen:
    count: int = 0
    next_at: int = 1  # the count at which the next line is due
    logged_at: float = float("-inf")


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        min_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger, self.level, self.min_interval_s, self._clock = logger, level, min_interval_s, clock
        self._seen: dict[str, _Seen] = {}

    def __call__(self, key: str, message: str, *args: object, level: int | None = None) -> bool:
        """Count one occurrence of ``key``; log ``message % args`` when the rule says so. Returns whether it logged."""
        count = self.due(key)
        if count is None:
            return False
        suffix = f" (x{count})" if count > 1 else ""
        self.logger.log(self.level if level is None else level, message + suffix, *args)
        return True

    def due(self, key: str) -> int | None:
        """Count one occurrence of ``key``: the count so far when a line is due by the rule, else None."""
        seen = self._seen.setdefault(key, _Seen())
        seen.count += 1
        now = self._clock()
        if seen.count < seen.next_at or now - seen.logged_at < self.min_interval_s:
            return None
        seen.logged_at = now
        seen.next_at = 10 ** len(str(seen.count))  # the next power of ten above the count
        return seen.count

    def count(self, key: str) -> int:
        seen = self._seen.get(key)
        return seen.count if seen is not None else 0

    def clear(self, key: str, message: str | None = None, *args: object) -> int:
        """The problem is over: forget it (the next one is a first again) and, if it happened and
        ``message`` is given, log that it cleared. Returns how many times it happened."""
        seen = self._seen.pop(key, None)
        n = seen.count if seen is not None else 0
        if n and message is not None:
            self.logger.info(message, *args)
        return n


class RateLimitedRecords(logging.Filter):
    """The same rule for a library's own log lines (aiortc warns once per garbage RTP packet): on its
    logger, each message (by its template) passes at its first occurrence and then as the rule says,
    with the count so far. Lines below ``level`` pass untouched; the keys are the library's templates,
    a bounded set."""

    def __init__(
        self, level: int = logging.WARNING, min_interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        super().__init__()
        self.level = level
        self._rule = RateLimitedLog(logging.getLogger(__name__), min_interval_s=min_interval_s, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        count = self._rule.due(f"{record.name}:{record.msg}")
        if count is None:
            return False
        if count > 1:
            record.msg = f"{record.msg} (x{count})"
        return True

    def count(self, record_name: str, template: str) -> int:
        return self._rule.count(f"{record_name}:{template}")
