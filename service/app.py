"""The FastAPI application: errors as JSON with the
right status (each counted and logged on one line), health, metrics, and the /api/v1 routes."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool

from core.errors import UploadError, one_line
from pipeline.monitoring.keys import Count, Subject
from service.auth import Principal
from service.deps import Service, require
from service.headers import SecurityHeaders
from service.limits import RequestLimits
from service.routes import auth, calls, events, feed, live, media, pages, streams, users

log = logging.getLogger("dfstream.api")
API = Subject.service("api")
_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    415: "unsupported",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


# ---- the application -----------------------------------------------------------------------------
def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="dfstream",
        version="1",
        summary="Real-time deepfake detection: live streams, events, media analysis",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(
        RequestLimits,
        max_head=int(service.config.connections.max_header_kb * 1024),
        max_body=int(service.config.max_body_kb * 1024),
        on_refused=lambda reason: service.monitor.count(API, Count.REJECTED, reason=reason),
    )
    if service.config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=service.config.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )

    # outermost (added last): every answer gets them, the middlewares' own refusals included
    app.add_middleware(
        SecurityHeaders, overlay_ancestors=service.config.overlay_frame_ancestors, tls=bool(service.config.tls)
    )

    def refused(request: Request, status: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
        service.monitor.count(API, Count.REJECTED, reason=_REASONS.get(status, str(status)))
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
        # what the driver says (host names, SQL, users) is for the log, not for whoever called
        log.error("%s %s: the database failed: %s", request.method, request.url.path, one_line(exc))
        return refused(request, 503, "the database is unavailable, try again", {"Retry-After": "5"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            await run_in_threadpool(_ping, service.engine)
        except Exception as exc:  # noqa: BLE001 -- any failure means not ready; the why is logged, not told
            log.error("readyz: the database failed: %s", one_line(exc))
            return JSONResponse({"ready": False, "detail": "database: unavailable"}, 503)
        ok, why = service.pipeline_ready()
        return JSONResponse({"ready": ok, "detail": why}, 200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"], summary="Prometheus metrics (any token)")
    def metrics(_: Principal = Depends(require("read"))) -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (auth.router, users.router, media.router, streams.router, live.router, events.router, feed.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(calls.router)  # /whip/... where WHIP clients expect it, /api/v1/calls for the page
    app.include_router(pages.router)
    app.mount("/ui", StaticFiles(directory=pages.WEB), name="ui")  # the UI's script and style
    return app


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _validation_line(error: dict) -> str:
    return f"{'.'.join(str(p) for p in error.get('loc', []))}: {error.get('msg')}"
