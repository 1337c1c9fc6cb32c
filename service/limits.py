"""Request limits applied before anything reads the request: a body over ``max_body_kb`` (declared
in Content-Length, or counted as a chunked body streams in) is answered 413 without being held in
memory, whoever sends it; authentication comes later. The media upload is exempt: it streams to
disk under its own cap (``max_upload_mb``, ``service/uploads.py``)."""

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


class BodyLimit:
    def __init__(self, app: App, max_bytes: int, on_refused: Callable[[], None]):
        self.app, self.max_bytes, self.on_refused = app, max_bytes, on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"].rstrip("/")) == UPLOAD:
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
        self.on_refused()
        limit = f"{self.max_bytes / 1024:.0f} KB"
        log.warning(
            "%s %r -> 413: the request body is over %s (api.max_body_kb)", scope["method"], scope["path"], limit
        )
        body = json.dumps({"detail": f"the request body is over {limit} (api.max_body_kb)"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
