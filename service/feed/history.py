"""The feed's recent past, so that a client that lost its connection gets what it missed.

Every event the feed sends is numbered in the order it was published; its SSE ``id`` is
``<epoch>-<number>``, the epoch a random word drawn when this process started. A client that comes
back with ``Last-Event-ID`` (a browser's EventSource sends it by itself) is given every event after
it that is still kept. The history is bounded in age and in count; what a client asks for that it no
longer holds, or that a previous process numbered, is a ``Reset``: the client must reload its state,
because some events between are gone. Numbers are contiguous, so whether anything is missing is
decided by arithmetic, never guessed."""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_ID_CHARS = 64  # an id longer than any this feed gives is refused before it is parsed


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: float  # the clock's time it was published
    kind: str
    stream: str | None  # None: about no one stream (an alert)
    body: bytes  # its SSE lines, event: and data:, without the id


@dataclass(frozen=True, slots=True)
class Reset:
    reason: str  # restarted, too_old, unknown
    message: str


class FeedHistory:
    def __init__(self, minutes: float, events: int, clock: Callable[[], float] = time.monotonic):
        self.epoch = secrets.token_hex(4)
        self.max_age_s = minutes * 60
        self.max_events = events if minutes > 0 else 0
        self._clock = clock
        self._entries: deque[Entry] = deque()
        self._seq = 0  # the number of the last event published

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_id(self) -> str:
        return self.id_of(self._seq)

    def id_of(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def add(self, kind: str, stream: str | None, body: bytes) -> Entry:
        """Number an event (every one, kept or not: the numbering is what tells a gap) and keep it."""
        self._seq += 1
        entry = Entry(self._seq, self._clock(), kind, stream, body)
        if self.max_events:
            self._entries.append(entry)
            while len(self._entries) > self.max_events:
                self._entries.popleft()
            self._trim(entry.at)
        return entry

    def after(self, last_event_id: str) -> list[Entry] | Reset:
        """Every event after ``last_event_id``, or why they cannot all be given."""
        epoch, _, number = last_event_id.strip().rpartition("-")
        if len(last_event_id) > MAX_ID_CHARS or not (number.isascii() and number.isdigit()) or not epoch:
            return Reset("unknown", f"Last-Event-ID {last_event_id[:MAX_ID_CHARS]!r} is not an id this feed gives")
        if epoch != self.epoch:
            return Reset("restarted", "dfstream restarted since that event: what happened between is not kept")
        seq = int(number)
        if seq > self._seq:
            return Reset("unknown", f"Last-Event-ID {last_event_id!r} is ahead of this feed")
        self._trim(self._clock())
        first = self._entries[0].seq if self._entries else self._seq + 1
        if seq + 1 < first:
            return Reset(
                "too_old",
                f"the events after {last_event_id} are no longer kept (the feed keeps "
                f"{self.max_age_s / 60:g} minutes, at most {self.max_events} events)",
            )
        return list(itertools.islice(self._entries, seq + 1 - first, None))

    def recent(self, seconds: float) -> list[Entry]:
        """The events of the last ``seconds`` that are still kept, oldest first."""
        since = self._clock() - seconds
        newest = list(itertools.takewhile(lambda e: e.at >= since, reversed(self._entries)))
        return newest[::-1]

    def _trim(self, now: float) -> None:
        while self._entries and self._entries[0].at < now - self.max_age_s:
            self._entries.popleft()
