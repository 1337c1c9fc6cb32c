"""The one rule for a problem that repeats: log its 1st, 10th, 100th, 1000th ... occurrence with the
count so far, and one line when it clears. Visible, never a flood; the exact count is a metric."""

from __future__ import annotations

import logging


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, level: int = logging.WARNING):
        self.logger, self.level = logger, level
        self._seen: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: object, level: int | None = None) -> bool:
        """Count one occurrence of ``key``; log ``message % args`` when the count is a power of ten.
        Returns whether it logged."""
        n = self._seen[key] = self._seen.get(key, 0) + 1
        if n != 10 ** (len(str(n)) - 1):
            return False
        self.logger.log(self.level if level is None else level, message + (f" (x{n})" if n > 1 else ""), *args)
        return True

    def count(self, key: str) -> int:
        return self._seen.get(key, 0)

    def clear(self, key: str, message: str | None = None, *args: object) -> int:
        """The problem is over: forget its count (the next one is a 1st again) and, if it happened
        and ``message`` is given, log that it cleared. Returns how many times it happened."""
        n = self._seen.pop(key, 0)
        if n and message is not None:
            self.logger.info(message, *args)
        return n
