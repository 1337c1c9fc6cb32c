"""Headers every answer carries, whatever route (or error handler) made it: no MIME sniffing, no
referrer (URLs here may carry a token), not framed by other sites (clickjacking) except the overlay,
which is made to be embedded (``api.overlay_frame_ancestors``); HSTS when dfstream serves TLS."""

from __future__ import annotations

from service.limits import App, Message, Receive, Scope, Send

OVERLAY = "/overlay/"


class SecurityHeaders:
    def __init__(self, app: App, overlay_ancestors: list[str], tls: bool):
        self.app = app
        self.overlay_ancestors = " ".join(overlay_ancestors).encode()
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        overlay = scope["path"].startswith(OVERLAY)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-frame-options"]
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if overlay:
                    headers = [_with_ancestors(k, v, self.overlay_ancestors) for k, v in headers]
                else:
                    headers.append((b"x-frame-options", b"DENY"))
                    headers = [_with_ancestors(k, v, b"'none'") for k, v in headers]
                if self.tls:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _with_ancestors(key: bytes, value: bytes, ancestors: bytes) -> tuple[bytes, bytes]:
    """A page's own Content-Security-Policy, with who may frame it."""
    if key.lower() != b"content-security-policy" or b"frame-ancestors" in value:
        return key, value
    return key, value + b"; frame-ancestors " + ancestors
