"""Which kind of source a URL names, and the FFmpeg options that open it with low latency."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from .screen import parse_screen

# screen: the desktop (screen.py); webrtc: pushed to dfstream serve over WebRTC (WHIP or the "Check a call" page)
SourceKind = Literal["rtsp", "rtmp", "http", "file", "webcam", "sample", "screen", "webrtc"]

_SCHEMES: dict[str, SourceKind] = {
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "rtmp": "rtmp",
    "rtmps": "rtmp",
    "http": "http",
    "https": "http",
    "file": "file",
    "sample": "sample",
    "screen": "screen",
    "whip": "webrtc",
    "webrtc": "webrtc",
}
_WEBCAM = re.compile(r"^/dev/video\d+$")


def classify(url: str) -> SourceKind:
    """The kind of ``url``; ValueError naming the scheme when dfstream cannot read it."""
    if _WEBCAM.match(url):
        return "webcam"
    scheme = urlparse(url).scheme.lower()
    if not scheme or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):  # a plain path (or C:\ on Windows)
        return "file"
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported scheme {scheme!r}: expected rtsp, rtmp, http(s), file, sample, screen, whip, a path "
            "or /dev/videoN"
        )
    kind = _SCHEMES[scheme]
    if kind == "screen":
        parse_screen(url)  # a bad region or display is a config error, not a failed open
    return kind


def file_path(url: str) -> Path:
    return Path(urlparse(url).path) if url.startswith("file:") else Path(url)


def open_options(kind: SourceKind, transport: str, extra: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """(format, options) for ``av.open``. Live network input skips FFmpeg's input buffering
    (nobuffer, low_delay) so a frame reaches us as soon as it is decodable; the probe is kept short
    because a camera's first keyframe tells all we need."""
    options: dict[str, str] = {}
    fmt = None
    if kind in ("rtsp", "rtmp", "http"):
        options.update(
            {"fflags": "nobuffer", "flags": "low_delay", "probesize": "500000", "analyzeduration": "1000000"}
        )
    if kind == "rtsp":
        options["rtsp_transport"] = transport
    if kind == "webcam":
        fmt = "v4l2"
    options.update(extra)
    return fmt, options
