"""The live feed: verdicts, stream states and statuses, alerts, as Server-Sent Events."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from core.queues import QueueClosed
from service.auth import Principal
from service.deps import Service, TokenWatch, get_service, require
from service.feed import KINDS, sse

router = APIRouter(tags=["feed"])
HEARTBEAT_S = 15.0  # a comment line now and then: proxies keep the connection, clients see it alive


@router.get(
    "/feed",
    summary="Server-Sent Events: verdict, state, status, alert (token in the header or ?access_token=)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def feed(
    request: Request,
    types: str = Query(",".join(KINDS), description="comma-separated: verdict, voice, state, status, alert"),
    stream: list[str] = Query(default_factory=list, description="only these streams (repeatable); none: all"),
    who: Principal = Depends(require("read", in_url=True)),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    kinds = frozenset(t.strip() for t in types.split(",") if t.strip())
    unknown = kinds - set(KINDS)
    if unknown or not kinds:
        raise HTTPException(
            422, f"types: unknown {sorted(unknown)}; choose from {', '.join(KINDS)}" if unknown else "types: none given"
        )
    watch = TokenWatch(service, request)
    seat = service.feed_seats.take(who.user_id)
    subscriber = service.feed.subscribe(kinds, frozenset(stream))

    def leave() -> None:  # once, whether the response ran to its end or never started
        if seat.release():
            service.feed.unsubscribe(subscriber)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": dfstream live feed\nretry: 2000\n\n"
            # the current state of each stream first, so a new client need not wait for a change
            if "state" in kinds:
                for view in list(service.feed.streams.values()):
                    if view.state is not None and subscriber.wants(view.state):
                        yield sse(view.state)
            while await watch.still_valid():
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), watch.wait_s(HEARTBEAT_S))
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                except QueueClosed:  # the server is stopping
                    return
                yield sse(event)
            yield b"event: end\ndata: the token no longer holds: log in again\n\n"
        finally:
            leave()

    stream = events()
    weakref.finalize(stream, leave)  # a response dropped before it started: its generator never runs
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(leave),
    )
