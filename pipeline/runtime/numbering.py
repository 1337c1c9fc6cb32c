"""Sequence numbers that subscribers count gaps with: a verdict's ``seq``, an MQTT message's ``seq``.

One counter per key (``cam1/verdicts``, ``cam1/mqtt``). In one process they count from 1; under the
Ray engine a stream's counters outlive its actor (``dfstream.ray.numbers``): a restarted actor goes
on above every number it handed out before, never repeating one.
"""

from __future__ import annotations

from typing import Protocol


class Numbering(Protocol):
    def next(self, key: str) -> int:
        """The next number of ``key``'s sequence: larger than every one handed out before."""
        ...


class Counting:
    """From 1, per key, in this process; or on from ``start`` (the last numbers a durable outbox
    kept across a restart)."""

    def __init__(self, start: dict[str, int] | None = None) -> None:
        self._last: dict[str, int] = dict(start or {})

    def next(self, key: str) -> int:
        self._last[key] = self._last.get(key, 0) + 1
        return self._last[key]
