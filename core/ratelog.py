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
        seen = self._seen.setdefault(key, _Seen())
        seen.count += 1
        now = self._clock()
        if seen.count < seen.next_at or now - seen.logged_at < self.min_interval_s:
            return False
        seen.logged_at = now
        seen.next_at = 10 ** len(str(seen.count))  # the next power of ten above the count
        suffix = f" (x{seen.count})" if seen.count > 1 else ""
        self.logger.log(self.level if level is None else level, message + suffix, *args)
        return True

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
