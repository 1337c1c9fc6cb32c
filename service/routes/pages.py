"""Pages for people: the web UI (/) and the overlay for conference and broadcast screens. A page
holds no data, so it is served without a token; what it shows comes from the API with the token
it is given (the UI's login, the overlay's URL)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from service.deps import Service, get_service

router = APIRouter(include_in_schema=False)
WEB = Path(__file__).resolve().parents[1] / "web"
# inline script and style are the page's own; it talks to this server only
_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:"
)


_UI_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "media-src 'self'"  # a voice event's WAV in an <audio> element
)


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    return HTMLResponse(
        (WEB / "index.html").read_text(), headers={"Content-Security-Policy": _UI_POLICY, "Cache-Control": "no-cache"}
    )


@router.get("/overlay/{stream_id}", response_class=HTMLResponse)
def overlay(stream_id: str, service: Service = Depends(get_service)) -> HTMLResponse:
    service.stream(stream_id, caller_known=False)  # a page is served without a token: it lists nothing
    return HTMLResponse(
        (WEB / "overlay.html").read_text(), headers={"Content-Security-Policy": _POLICY, "Cache-Control": "no-cache"}
    )
