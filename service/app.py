"""The FastAPI application: what a request can reach (the ``Service``), errors as JSON with the
right status (each counted and logged on one line), health, metrics, and the /api/v1 routes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import OAuth2PasswordBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from core.errors import UploadError, one_line
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.live import LiveTap
from service.analysis import Analyzer
from service.auth import LoginLimiter, Principal, TokenCache, bearer, resolve
from service.config import ApiConfig
from service.feed import FeedSink
from stream.config import StreamConfig

log = logging.getLogger("dfstream.api")
SERIES = Subject.service("api")
_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
            413: "too_large", 415: "unsupported", 422: "invalid", 429: "rate_limited", 503: "unavailable"}  # fmt: skip


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
        raise HTTPException(404, f"no stream {stream_id!r} (configured: {', '.join(s.id for s in self.streams) or 'none'})")

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


async def principal(request: Request, service: Service = Depends(get_service), _token: str | None = Depends(_scheme)) -> Principal:
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


# ---- the application -----------------------------------------------------------------------------
def create_app(service: Service) -> FastAPI:
    from service.routes import auth, events, feed, live, media, pages, streams, users

    app = FastAPI(title="dfstream", version="1", summary="Real-time deepfake detection: live streams, events, media analysis",
                  docs_url="/docs", redoc_url=None)  # fmt: skip
    app.state.service = service
    if service.config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=service.config.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip

    def refused(request: Request, status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
        service.monitor.count(SERIES, Count.REJECTED, reason=_REASONS.get(status, str(status)))
        shown = detail if isinstance(detail, str) else "; ".join(_validation_line(e) for e in detail)  # type: ignore[union-attr]
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, shown)
        return JSONResponse({"detail": detail}, status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return refused(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return refused(request, 422, [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()])

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return refused(request, exc.status, exc.detail)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_away(request: Request, exc: Exception) -> JSONResponse:
        return refused(request, 503, f"the database is unavailable, try again: {one_line(exc)}", {"Retry-After": "5"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            await run_in_threadpool(_ping, service.engine)
        except Exception as exc:  # noqa: BLE001 -- any failure means not ready, said in the answer
            return JSONResponse({"ready": False, "detail": f"database: {one_line(exc)}"}, 503)
        ok, why = service.pipeline_ready()
        return JSONResponse({"ready": ok, "detail": why}, 200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"], summary="Prometheus metrics (any token)")
    def metrics(_: Principal = Depends(require("read"))) -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (auth.router, users.router, media.router, streams.router, live.router, events.router, feed.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(pages.router)
    app.mount("/ui", StaticFiles(directory=pages.WEB), name="ui")  # the UI's script and style
    return app


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _validation_line(error: dict) -> str:
    return f"{'.'.join(str(p) for p in error.get('loc', []))}: {error.get('msg')}"
