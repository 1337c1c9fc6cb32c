"""The service's side of calls: who may push media, how many sessions at once, and the streams a
call from the "Check a call" page becomes while it lasts.

- A page call is a stream of its own (``call-<random>``, ``url: webrtc://<user>``), added to the
  running runtime when the offer is answered and listed, evented and published like any other; when
  the call ends it goes ``offline`` (its events closed) and stays listed ``linger_s``, then goes.
- A WHIP push goes to a stream declared in the config with ``url: whip://``: a stable id, with its
  sinks and alerts, that waits for its next publisher when one ends.
- Every session holds a seat (``Seats``): ``per_user`` of them one user's (429 beyond), ``max_sessions``
  in all (503 beyond), given back when the session ends however it ends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import HTTPException

from core.errors import one_line
from pipeline.monitoring.keys import Count, Gauge, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from service.auth import Principal
from service.config import CallsConfig
from service.seats import Seats
from stream.calls import CallBusy, CallError, CallHub, NoSuchStream, OfferError, Session
from stream.config import StreamConfig

log = logging.getLogger("dfstream.api")
CALLS = Subject.service("calls")
_STATUS = {OfferError: 400, NoSuchStream: 404, CallBusy: 409}


@dataclass
class Owned:
    session: Session
    owner: Principal


class CallDesk:
    def __init__(
        self,
        config: CallsConfig,
        hub: CallHub,
        streams: list[StreamConfig],
        add_stream: Callable[[StreamConfig], asyncio.Task[None]],
        monitor: PerformanceMonitor,
        forget_stream: Callable[[str], None] = lambda stream_id: None,
    ):
        """``streams``: the service's list of streams (a page call is added to it, then removed);
        ``forget_stream``: what else keeps a stream's state (the feed's view, the live tap) drops it,
        when a page call's stream goes after its linger."""
        self.config, self.hub, self.streams, self._add_stream, self.monitor = config, hub, streams, add_stream, monitor
        self._forget_stream = forget_stream
        self.seats = Seats("WebRTC sessions", config.max_sessions, config.per_user)
        self._starts: dict[int, collections.deque[float]] = {}  # per user: when their calls started
        self.owned: dict[str, Owned] = {}
        self._lingering: set[asyncio.Task[None]] = set()

    async def start_call(self, who: Principal, offer_sdp: str) -> Session:
        """A stream of its own for a call from the page, judged from the answer on."""
        seat = self._seat(who)
        stream = StreamConfig(
            id=f"call-{secrets.token_hex(4)}",
            url=f"webrtc://{quote(who.username, safe='')}",
            stall_timeout_s=self.config.stall_timeout_s,
            open_timeout_s=self.config.open_timeout_s,
            fps=self.config.fps,
        )
        self.hub.inbox(stream.id, once=True)
        try:
            session = await self._publish(stream.id, offer_sdp, who, seat.release)
        except BaseException:
            await self.hub.forget(stream.id)
            seat.release()
            raise
        self.streams.append(stream)
        task = self._add_stream(stream)
        task.add_done_callback(lambda _: self._linger(stream))
        return session

    async def push(self, who: Principal, stream_id: str, offer_sdp: str) -> Session:
        """A WHIP publisher for a declared ``whip://`` stream."""
        declared = next((s for s in self.streams if s.id == stream_id), None)
        if declared is None or declared.kind != "webrtc" or stream_id.startswith("call-"):
            raise HTTPException(404, f"no stream {stream_id!r} takes WHIP pushes (declare it with url: whip://)")
        seat = self._seat(who)
        try:
            return await self._publish(stream_id, offer_sdp, who, seat.release)
        except BaseException:
            seat.release()
            raise

    async def end(self, who: Principal, session_id: str, stream_id: str | None = None) -> None:
        """DELETE of a session: its owner's (or an admin's) to end."""
        owned = self.owned.get(session_id)
        if owned is None or (stream_id is not None and owned.session.stream_id != stream_id):
            raise HTTPException(404, "no such session (it may have ended already)")
        if owned.owner.user_id != who.user_id and "admin" not in who.scopes:
            raise HTTPException(403, "this session is another user's")
        await owned.session.close(f"ended by {who.username} (DELETE)")

    async def close(self) -> None:
        await self.hub.close()
        for task in list(self._lingering):
            task.cancel()

    # ---- internals ----------------------------------------------------------------------------------
    def _seat(self, who: Principal):  # noqa: ANN202 -- a Seat (refusals are counted where every refusal is: app.py)
        self._rate(who)
        return self.seats.take(who.user_id)

    def _rate(self, who: Principal) -> None:
        """429 past ``starts_per_minute`` calls started by one user in the last minute."""
        now = time.monotonic()
        starts = self._starts.setdefault(who.user_id, collections.deque())
        while starts and now - starts[0] > 60.0:
            starts.popleft()
        if len(starts) >= self.config.starts_per_minute:
            wait = 60.0 - (now - starts[0])
            self.monitor.count(CALLS, Count.CALLS, event="refused:rate")
            raise HTTPException(
                429,
                f"{who.username} started {len(starts)} calls in the last minute (calls.starts_per_minute); "
                f"try again in {wait:.0f} s",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        starts.append(now)

    async def _publish(self, stream_id: str, offer_sdp: str, who: Principal, release: Callable[[], bool]) -> Session:
        def ended(session: Session) -> None:
            release()
            self.owned.pop(session.id, None)
            self.monitor.count(CALLS, Count.CALLS, event="ended")
            self.monitor.set_gauge(CALLS, Gauge.CALL_SESSIONS, len(self.owned))

        try:
            session = await self.hub.publish(stream_id, offer_sdp, ended)
        except CallError as exc:
            self.monitor.count(CALLS, Count.CALLS, event=f"refused:{exc.reason}")
            raise HTTPException(_STATUS.get(type(exc), 503), one_line(exc)) from None
        self.owned[session.id] = Owned(session, who)
        self.monitor.count(CALLS, Count.CALLS, event="started")
        self.monitor.set_gauge(CALLS, Gauge.CALL_SESSIONS, len(self.owned))
        log.info("%s: %s started a call session (%s)", stream_id, who.username, session.id)
        return session

    def _linger(self, stream: StreamConfig) -> None:
        async def later() -> None:
            await asyncio.sleep(self.config.linger_s)
            if stream in self.streams:
                self.streams.remove(stream)
            # everything kept per stream goes with it: 1,100 calls once left /metrics 16x its size and
            # every new feed client 1,100 stale states before ready
            self.monitor.forget(Subject.stream(stream.id))
            self._forget_stream(stream.id)

        task = asyncio.get_running_loop().create_task(later(), name=f"dfstream[{stream.id}].linger")
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)
