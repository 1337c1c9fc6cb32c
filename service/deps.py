"""What every route depends on: the ``Service`` (what a request can reach, built by the
composition root) and the FastAPI dependencies that hand it, a database session and the caller
(``principal``, ``require(scope)``) to a route. Routes import this, the application imports the
routes: nothing imports back."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from service.analysis import Analyzer
from service.auth import LoginLimiter, Principal, TokenCache, bearer, resolve
from service.calls import CallDesk
from service.config import ApiConfig
from service.feed.sink import FeedSink
from service.seats import Seats
from stream.config import StreamConfig

log = logging.getLogger("dfstream.api")
API = Subject.service("api")


@dataclass
class Service:
    """Everything the routes use, built by the composition root."""

    config: ApiConfig
    engine: Engine
    sessions: sessionmaker[Session]
    monitor: PerformanceMonitor
    feed: FeedSink
    analyzer: Analyzer
    streams: list[StreamConfig]
    registry: CollectorRegistry  # what /metrics exports
    pipeline_ready: Callable[[], tuple[bool, str]]
    tap: LiveTap  # the runtime's live view
    calls: CallDesk | None = None  # WebRTC ingest (None: calls are not taken)
    limiter: LoginLimiter | None = None
    tokens: TokenCache | None = None
    feed_seats: Seats = field(init=False)
    live_seats: Seats = field(init=False)
    # drawing and encoding the live view: its own threads, never those the sinks and routes use
    render_pool: ThreadPoolExecutor = field(init=False)
    # password checks: their own threads, never the pool sync routes use
    login_pool: ThreadPoolExecutor = field(init=False)
    login_slots: asyncio.Semaphore = field(init=False)
    login_waiting: int = 0
    upload_lock: threading.Lock = field(default_factory=threading.Lock)  # a user's quota, checked then used

    def stream(self, stream_id: str, caller_known: bool = True) -> StreamConfig:
        """The configured stream, or 404 naming the ones there are (to a caller with a token only)."""
        for config in self.streams:
            if config.id == stream_id:
                return config
        known = f" (configured: {', '.join(s.id for s in self.streams) or 'none'})" if caller_known else ""
        raise HTTPException(404, f"no stream {stream_id!r}{known}")

    def __post_init__(self) -> None:
        if self.limiter is None:
            limit = self.config.login_limit
            self.limiter = LoginLimiter(limit.failures, limit.window_s, limit.max_delay_s)
        if self.tokens is None:
            self.tokens = TokenCache()
        viewers = self.config.viewers
        self.feed_seats = Seats("feed subscriptions", viewers.feed_total, viewers.feed_per_user)
        self.live_seats = Seats("live views", viewers.live_total, viewers.live_per_user)
        self.render_pool = ThreadPoolExecutor(2, thread_name_prefix="dfstream.render")
        self.login_pool = ThreadPoolExecutor(self.config.login_limit.concurrent, thread_name_prefix="dfstream.login")
        self.login_slots = asyncio.Semaphore(self.config.login_limit.concurrent)


# ---- dependencies --------------------------------------------------------------------------------
_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)  # so /docs offers "Authorize"


def get_service(request: Request) -> Service:
    return request.app.state.service


def db(service: Service = Depends(get_service)) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


async def who_is(service: Service, token: str | None) -> Principal:
    """The caller a token speaks for (cached for a moment), or 401."""
    cache = service.tokens
    assert cache is not None
    who = cache.get(token) if token else None
    if who is None:

        def lookup() -> tuple[Principal, object]:
            with service.sessions() as session:
                return resolve(session, token)

        who, expires_at = await run_in_threadpool(lookup)
        cache.put(token, who, expires_at)  # type: ignore[arg-type]
    return who


async def principal(
    request: Request, service: Service = Depends(get_service), _token: str | None = Depends(_scheme)
) -> Principal:
    return await who_is(service, bearer(request)[0])


def require(scope: str, in_url: bool = False) -> Callable[..., Awaitable[Principal]]:
    """The caller, 403 unless they hold ``scope``. ``in_url``: the token may come as ``?access_token=``
    (what a browser loads without headers: an img, an EventSource); only for reading, and a token
    that came that way -- logged by proxies, kept in histories -- reads, whatever else it holds."""
    if in_url and scope != "read":
        raise ValueError("a token in the URL is only ever good for reading")

    async def check(
        request: Request, service: Service = Depends(get_service), _token: str | None = Depends(_scheme)
    ) -> Principal:
        token, from_url = bearer(request, in_url)
        who = await who_is(service, token)
        if from_url:
            who = replace(who, scopes=who.scopes & {"read"})
        if scope not in who.scopes:
            raise HTTPException(403, f"{who.username} ({who.role}) may not do this: it needs the {scope!r} scope")
        return who

    return check


class TokenWatch:
    """The token of a long-lived response (the feed, the live view), checked again every
    ``api.stream_recheck_s``: a token revoked or expired, or its user disabled, ends the response
    within that time instead of watching faces for as long as the connection lasts."""

    def __init__(self, service: Service, request: Request):
        self.service = service
        self.token, _ = bearer(request, in_url=True)
        self.what = f"{request.method} {request.url.path}"
        self.every_s = service.config.stream_recheck_s
        self._checked = time.monotonic()

    def wait_s(self, longest: float) -> float:
        """How long the response may wait for its next item before the token is due again."""
        return max(0.05, min(longest, self._checked + self.every_s - time.monotonic()))

    async def still_valid(self) -> bool:
        if time.monotonic() - self._checked < self.every_s:
            return True
        self._checked = time.monotonic()
        try:
            await who_is(self.service, self.token)
        except HTTPException as exc:
            self.service.monitor.count(API, Count.REJECTED, reason="stream_ended")
            log.warning("%s: closed, its token no longer holds: %s", self.what, exc.detail)
            return False
        return True
