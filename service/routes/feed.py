"""The live feed: verdicts, stream states and statuses, alerts, as Server-Sent Events.

A client that reconnects with ``Last-Event-ID`` first gets what it missed, from the feed's history;
if that is no longer kept, a ``reset`` event tells it to reload its state. A new client may ask for
the last ``replay_s`` seconds. Either way a ``ready`` event marks where the replay ends and the live
events begin."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from core.queues import QueueClosed
from pipeline.monitoring.keys import Count
from service.auth import Principal
from service.deps import Service, TokenWatch, get_service, require
from service.feed.history import Entry, Reset
from service.feed.sink import FEED, KINDS, numbered, sse

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
    replay_s: float = Query(
        0, ge=0, le=3600, description="a new client: first the events of the last replay_s seconds still kept"
    ),
    last_event_id: str | None = Header(None, description="the id of the last event received: resume after it"),
    resume_after: str | None = Query(None, description="as Last-Event-ID, for clients that cannot set headers"),
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
    try:
        subscriber = service.feed.subscribe(kinds, frozenset(stream))
    except BaseException:
        seat.release()
        raise

    def leave() -> None:  # once, whether the response ran to its end, never started or was never built
        if seat.release():
            service.feed.unsubscribe(subscriber)

    try:
        # all taken with the subscription, before anything awaits: every event is in the replay or in
        # the subscriber's queue, never both, never neither
        history = service.feed.history
        resume = last_event_id or resume_after
        missed = history.after(resume) if resume else None
        reset = missed if isinstance(missed, Reset) else None
        if resume:
            service.feed.monitor.count(
                FEED, Count.FEED_RESUMES, outcome=f"reset:{reset.reason}" if reset else "replayed"
            )
        replay: list[Entry] = missed if isinstance(missed, list) else history.recent(replay_s)
        replay = [e for e in replay if subscriber.wants(e.kind, e.stream)]
        # a client that did not resume gets each stream's current state too: it need not wait for a change
        states = [] if isinstance(missed, list) else service.feed.states_for(subscriber)
        done = json.dumps({"replayed": len(replay), "resumed": isinstance(missed, list)})
        ready = numbered(history.last_id, f"event: ready\ndata: {done}\n\n".encode())
    except BaseException:
        leave()  # a request that failed here must not keep its seat (issue 38: twenty such and the user was locked out)
        raise

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": dfstream live feed\nretry: 2000\n\n"
            if reset is not None:
                data = json.dumps({"reason": reset.reason, "message": reset.message})
                yield f"event: reset\ndata: {data}\n\n".encode()
            for entry in replay:
                yield numbered(history.id_of(entry.seq), entry.body)
            for state in states:
                yield sse(state)  # no id: a copy of one sent before; ready, next, holds the position
            yield ready
            while await watch.still_valid():
                try:
                    entry = await asyncio.wait_for(subscriber.queue.get(), watch.wait_s(HEARTBEAT_S))
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                except QueueClosed:  # the server is stopping
                    return
                yield numbered(history.id_of(entry.seq), entry.body)
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
