"""What every route depends on: the ``Service`` (what a request can reach, built by the
composition root) and the FastAPI dependencies that hand it, a database session and the caller
(``principal``, ``require(scope)``) to a route. Routes import this, the application imports the
routes: nothing imports back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from service.analysis import Analyzer
from service.auth import LoginLimiter, Principal, TokenCache, bearer, resolve
from service.config import ApiConfig
from service.feed import FeedSink
from stream.config import StreamConfig


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
    limiter: LoginLimiter | None = None
    tokens: TokenCache | None = None

    def stream(self, stream_id: str) -> StreamConfig:
        """The configured stream, or 404 naming the ones there are."""
        for config in self.streams:
            if config.id == stream_id:
                return config
        raise HTTPException(
            404, f"no stream {stream_id!r} (configured: {', '.join(s.id for s in self.streams) or 'none'})"
        )

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = LoginLimiter(self.config.login_limit.failures, self.config.login_limit.window_s)
        if self.tokens is None:
            self.tokens = TokenCache()


# ---- dependencies --------------------------------------------------------------------------------
_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)  # so /docs offers "Authorize"


def get_service(request: Request) -> Service:
    return request.app.state.service


def db(service: Service = Depends(get_service)) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


async def principal(
    request: Request, service: Service = Depends(get_service), _token: str | None = Depends(_scheme)
) -> Principal:
    token = bearer(request)
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


def require(scope: str) -> Callable[..., Principal]:
    async def check(who: Principal = Depends(principal)) -> Principal:
        if scope not in who.scopes:
            raise HTTPException(403, f"{who.username} ({who.role}) may not do this: it needs the {scope!r} scope")
        return who

    return check
