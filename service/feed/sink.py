"""The live feed: a sink that keeps each stream's latest status and state (for GET /streams) and
fans every event out to the feed's subscribers (GET /feed, Server-Sent Events), numbered and kept a
while (``FeedHistory``) for those that come back. Each event is encoded once, whoever reads it. A
subscriber that reads too slowly loses its oldest events, counted; it never slows the pipeline or
the others."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from core.lifecycle import Lifecycle
from core.queues import DropOldestQueue
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import Event, StreamState, StreamStatus, Verdict, VoiceVerdict
from service.feed.history import Entry, FeedHistory

FEED = Subject.service("feed")
KINDS = ("verdict", "voice", "state", "status", "alert")


@dataclass(eq=False)  # each is its own: kept in a set by identity
class Subscriber:
    kinds: frozenset[str]
    streams: frozenset[str]  # empty: every stream
    queue: DropOldestQueue[Entry]  # closed when the server stops

    def wants(self, kind: str, stream: str | None) -> bool:
        return kind in self.kinds and (not self.streams or stream is None or stream in self.streams)


@dataclass
class StreamView:
    status: StreamStatus | None = None
    state: StreamState | None = None
    tracks: dict[int, Verdict] = field(default_factory=dict)  # the newest verdict of each live track
    voice: VoiceVerdict | None = None  # the newest voice verdict


class FeedSink(Lifecycle):
    def __init__(self, monitor: PerformanceMonitor, queue_size: int = 1000, history: FeedHistory | None = None):
        super().__init__("feed")
        self.monitor = monitor
        self.queue_size = queue_size
        self.history = history if history is not None else FeedHistory(minutes=0, events=0)
        self.streams: dict[str, StreamView] = {}
        self._subscribers: set[Subscriber] = set()

    async def _open(self) -> None:
        self.monitor.set_gauge(FEED, Gauge.FEED_CLIENTS, 0)

    async def publish(self, event: Event) -> None:
        if isinstance(event, StreamStatus):
            self.streams.setdefault(event.stream, StreamView()).status = event
        elif isinstance(event, StreamState):
            view = self.streams.setdefault(event.stream, StreamView())
            view.state = event
            view.tracks = {k: v for k, v in view.tracks.items() if k in event.tracks}
        elif isinstance(event, Verdict):
            view = self.streams.setdefault(event.stream, StreamView())
            view.tracks[event.track_id] = event
        elif isinstance(event, VoiceVerdict):
            self.streams.setdefault(event.stream, StreamView()).voice = event
        entry = self.history.add(event.kind, getattr(event, "stream", None), sse(event))
        for subscriber in list(self._subscribers):
            if subscriber.wants(entry.kind, entry.stream):
                subscriber.queue.put(entry, reason="slow_client")

    async def _close(self) -> None:
        for subscriber in self._subscribers:  # each open response ends instead of holding shutdown
            subscriber.queue.close()

    def _dropped(self, entry: Entry, reason: str) -> None:
        self.monitor.count(FEED, Count.EVENTS_DROPPED, reason=reason)

    def subscribe(self, kinds: frozenset[str], streams: frozenset[str]) -> Subscriber:
        subscriber = Subscriber(kinds, streams, DropOldestQueue(self.queue_size, on_drop=self._dropped))
        self._subscribers.add(subscriber)
        self.monitor.set_gauge(FEED, Gauge.FEED_CLIENTS, len(self._subscribers))
        return subscriber

    def states_for(self, subscriber: Subscriber) -> list[StreamState]:
        """Each stream's current state that ``subscriber`` wants."""
        views = self.streams.values()
        return [v.state for v in views if v.state is not None and subscriber.wants(v.state.kind, v.state.stream)]

    def forget(self, stream: str) -> None:
        """A stream that ended for good: its view goes, so new clients are not sent its last state."""
        self.streams.pop(stream, None)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self.monitor.set_gauge(FEED, Gauge.FEED_CLIENTS, len(self._subscribers))


def sse(event: Event) -> bytes:
    """One Server-Sent Event: ``event:`` the kind, ``data:`` the JSON the MQTT payloads carry."""
    data = json.dumps({"type": event.kind, **event.to_dict()}, separators=(",", ":"), allow_nan=False)
    return f"event: {event.kind}\ndata: {data}\n\n".encode()


def numbered(entry_id: str, body: bytes) -> bytes:
    """An event with its ``id:``, the line a reconnecting client sends back as ``Last-Event-ID``."""
    return b"id: " + entry_id.encode() + b"\n" + body
