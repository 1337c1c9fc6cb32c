"""Request limits applied before anything reads the request: a request line and headers over
``connections.max_header_kb`` are answered 431, a body over ``max_body_kb`` (declared in
Content-Length, or counted as a chunked body streams in) 413 without being held in memory, whoever
sends it; authentication comes later. The media upload is exempt from the body cap: it streams to
disk under its own (``max_upload_mb``, ``service/uploads.py``). (uvicorn's h11 bounds a head that
arrives in pieces as it is read; one that comes in a single read is only measured here.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("dfstream.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD = ("POST", "/api/v1/media")  # the one route whose body is streamed to disk under its own cap


class RequestLimits:
    def __init__(self, app: App, max_head: int, max_body: int, on_refused: Callable[[str], None]):
        self.app, self.max_head, self.max_bytes, self.on_refused = app, max_head, max_body, on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if head > self.max_head:
            limit = f"{self.max_head / 1024:.0f} KB"
            await self._answer(
                scope, send, 431, f"the request line and headers are over {limit} (api.connections.max_header_kb)"
            )
            return
        if (scope["method"], scope["path"].rstrip("/")) == UPLOAD:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        started = refused = False

        async def limited() -> Message:
            # past the cap: answer 413 here and tell the app the client left, so it stops reading
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    refused = True
                    await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:  # the app's own answer to a body it never got: the 413 went instead
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited, watched)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        limit = f"{self.max_bytes / 1024:.0f} KB"
        await self._answer(scope, send, 413, f"the request body is over {limit} (api.max_body_kb)")

    async def _answer(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        self.on_refused("too_large" if status == 413 else "head_too_large")
        log.warning("%s %s -> %d: %s", scope["method"], scope["path"], status, detail)
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
