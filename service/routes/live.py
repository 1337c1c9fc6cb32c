"""The annotated live view of a stream: MJPEG for a page or a player, one JPEG for a look."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from pipeline.monitoring.keys import LIVE_VIEW, Count, Gauge, Subject
from pipeline.runtime.drawing import draw, jpeg
from pipeline.runtime.live import Shot
from service.auth import Principal
from service.deps import Service, TokenWatch, get_service, require

router = APIRouter(tags=["streams"])
LIVE = Subject.service("live")
BOUNDARY = "dfstreamframe"
WAIT_S = 3.0  # how long a snapshot waits for the stream's next frame


# the widths a view is drawn at: a fixed few, so viewers share renders and no client can make the
# server draw (and cache) a new size per request
WIDTHS = (320, 480, 640, 960, 1280, 1920)
CACHED = 128  # (stream, width) renders kept, least recently used out first


class _Renders:
    """The newest JPEG per (stream, width): viewers of the same stream at the same width share one
    drawing and encoding instead of each paying for it. Bounded, and thread-safe (the render pool)."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple[str, int | None], tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, shot: Shot, width: int | None) -> bytes:
        key = (shot.stream, width)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None and cached[0] == shot.seq:
                self._entries.move_to_end(key)
                return cached[1]
        body = jpeg(draw(shot.image, shot.faces, width))
        with self._lock:
            self._entries[key] = (shot.seq, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return body


render = _Renders(CACHED)


def _width(width: int | None) -> int | None:
    if width is not None and width not in WIDTHS:
        raise HTTPException(422, f"width: one of {', '.join(map(str, WIDTHS))} (or none: the stream's own)")
    return width


@router.get(
    "/streams/{stream_id}/live.mjpeg",
    summary="The stream with its faces drawn, as MJPEG (token in the header or ?access_token=)",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}},
)
async def live(
    request: Request,
    stream_id: str,
    fps: float = Query(5.0, gt=0, le=30, description="at most this many frames a second"),
    width: int | None = Query(None, description=f"scaled down to one of {WIDTHS} (never up)"),
    who: Principal = Depends(require("read", in_url=True)),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    service.stream(stream_id)
    width = _width(width)
    tap, monitor = service.tap, service.monitor
    period = 1.0 / fps
    watch = TokenWatch(service, request)
    seat = service.live_seats.take(who.user_id)

    async def frames() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        with tap.watch(stream_id):
            monitor.set_gauge(LIVE, Gauge.VIEWERS, tap.watchers(stream_id), stream=stream_id)
            try:
                seen, sent_at = -1, 0.0
                while await watch.still_valid():
                    shot = await tap.next(stream_id, seen, timeout=watch.wait_s(30.0))
                    if shot is None:
                        continue  # the stream is away; the client keeps its last frame
                    wait = sent_at + period - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                        shot = tap.latest(stream_id) or shot  # the newest, after the wait
                    # drawing and encoding off the loop, and off the threads the sinks use
                    body = await loop.run_in_executor(service.render_pool, render, shot, width)
                    now = loop.time()
                    if sent_at and now - sent_at > 2 * period:  # this viewer fell behind its own rate
                        monitor.count(
                            LIVE,
                            Count.FRAMES_DROPPED,
                            int((now - sent_at) / period) - 1,
                            reason="slow_viewer",
                            stream=stream_id,
                        )
                    monitor.record_latency(LIVE_VIEW, time.monotonic() - shot.arrival_mono)
                    seen, sent_at = shot.seq, now
                    yield (
                        (
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
                            f"X-Frame-Seq: {shot.seq}\r\n\r\n"
                        ).encode()
                        + body
                        + b"\r\n"
                    )
            finally:
                seat.release()
                monitor.set_gauge(
                    LIVE, Gauge.VIEWERS, tap.watchers(stream_id) - 1, stream=stream_id
                )  # before the watch ends

    stream = frames()
    weakref.finalize(stream, seat.release)  # a response dropped before it started: its generator never runs
    return StreamingResponse(
        stream,
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(seat.release),  # a response that never started gives its seat back too
    )


@router.get(
    "/streams/{stream_id}/snapshot.jpg",
    summary="The stream's next frame with its faces drawn (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def snapshot(
    stream_id: str,
    width: int | None = Query(None, description=f"scaled down to one of {WIDTHS} (never up)"),
    _: Principal = Depends(require("read", in_url=True)),
    service: Service = Depends(get_service),
) -> Response:
    service.stream(stream_id)
    width = _width(width)
    with service.tap.watch(stream_id):
        shot = await service.tap.next(stream_id, -1, WAIT_S)
    if shot is None:
        view = service.feed.streams.get(stream_id)
        status = view.status.status if view is not None and view.status is not None else "starting"
        raise HTTPException(
            503,
            f"stream {stream_id} sent no frame within {WAIT_S:.0f} s (status: {status})",
            headers={"Retry-After": "2"},
        )
    body = await asyncio.get_running_loop().run_in_executor(service.render_pool, render, shot, width)
    return Response(
        body, media_type="image/jpeg", headers={"Cache-Control": "no-cache, no-store", "X-Frame-Seq": str(shot.seq)}
    )
