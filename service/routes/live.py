"""The annotated live view of a stream: MJPEG for a page or a player, one JPEG for a look."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from pipeline.monitoring.keys import LIVE_VIEW, Count, Gauge, Subject
from pipeline.runtime.drawing import draw, jpeg
from pipeline.runtime.live import Shot
from service.auth import Principal
from service.deps import Service, get_service, require

router = APIRouter(tags=["streams"])
LIVE = Subject.service("live")
BOUNDARY = "dfstreamframe"
WAIT_S = 3.0  # how long a snapshot waits for the stream's next frame


# the newest JPEG per (stream, width): viewers of the same stream at the same width share one
# drawing and encoding instead of each paying for it
_rendered: dict[tuple[str, int | None], tuple[int, bytes]] = {}


def render(shot: Shot, width: int | None) -> bytes:
    key = (shot.stream, width)
    cached = _rendered.get(key)
    if cached is not None and cached[0] == shot.seq:
        return cached[1]
    body = jpeg(draw(shot.image, shot.faces, width))
    _rendered[key] = (shot.seq, body)
    return body


@router.get(
    "/streams/{stream_id}/live.mjpeg",
    summary="The stream with its faces drawn, as MJPEG (token in the header or ?access_token=)",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}},
)
async def live(
    stream_id: str,
    fps: float = Query(5.0, gt=0, le=30, description="at most this many frames a second"),
    width: int | None = Query(None, ge=64, le=3840, description="scaled down to this width (never up)"),
    _: Principal = Depends(require("read")),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    service.stream(stream_id)
    tap, monitor = service.tap, service.monitor
    period = 1.0 / fps

    async def frames() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        with tap.watch(stream_id):
            monitor.set_gauge(LIVE, Gauge.VIEWERS, tap.watchers(stream_id), stream=stream_id)
            try:
                seen, sent_at = -1, 0.0
                while True:
                    shot = await tap.next(stream_id, seen, timeout=30.0)
                    if shot is None:
                        continue  # the stream is away; the client keeps its last frame
                    wait = sent_at + period - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                        shot = tap.latest(stream_id) or shot  # the newest, after the wait
                    body = await asyncio.to_thread(render, shot, width)  # drawing and encoding off the loop
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
                monitor.set_gauge(
                    LIVE, Gauge.VIEWERS, tap.watchers(stream_id) - 1, stream=stream_id
                )  # before the watch ends

    return StreamingResponse(
        frames(),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/streams/{stream_id}/snapshot.jpg",
    summary="The stream's next frame with its faces drawn (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def snapshot(
    stream_id: str,
    width: int | None = Query(None, ge=64, le=3840),
    _: Principal = Depends(require("read")),
    service: Service = Depends(get_service),
) -> Response:
    service.stream(stream_id)
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
    body = await asyncio.to_thread(render, shot, width)
    return Response(
        body, media_type="image/jpeg", headers={"Cache-Control": "no-cache, no-store", "X-Frame-Seq": str(shot.seq)}
    )
