"""``screen://``: the desktop as a source, for a call on the same desktop as dfstream. FFmpeg's own
screen grabbers do the capture (x11grab on Linux, gdigrab on Windows, avfoundation on macOS), so the
rest of the source (decode thread, queue, watchdog, backoff) is the same as for a camera.

    screen://                      the whole screen of $DISPLAY (Linux) or the desktop
    screen://:1                    X display :1 (screen 0)
    screen://?region=0,0,1280,720  a region: x, y, width, height
    screen://?window=0x3a00007     one X11 window (its id: xdotool search --name, or xwininfo)
    screen://?fps=15&cursor=1      frame rate (default 30) and whether the pointer is drawn (default no)

On Windows ``window`` is the window's title (gdigrab's ``title=``); on macOS the screen is
``screen=N`` (avfoundation's "Capture screen N").
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs

from core.errors import SourceOpenError

GRABBERS = {"linux": "x11grab", "win32": "gdigrab", "darwin": "avfoundation"}
_DISPLAY = re.compile(r"^[A-Za-z0-9_.-]*:\d+(\.\d+)?$")
_KEYS = {"region", "window", "fps", "cursor", "screen"}


@dataclass(frozen=True)
class ScreenSpec:
    display: str | None  # X display (":1"); None: $DISPLAY
    region: tuple[int, int, int, int] | None
    window: str | None
    fps: float
    cursor: bool
    screen: int


def parse_screen(url: str) -> ScreenSpec:
    """The spec a ``screen://`` URL names; ValueError naming what is wrong."""
    rest = url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1]
    where, _, query = rest.partition("?")
    where = where.rstrip("/")
    if where and not _DISPLAY.match(where):
        raise ValueError(f"{url}: {where!r} is not an X display (expected e.g. screen://:0 or screen://:1.0)")
    values = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(values) - _KEYS
    if unknown:
        raise ValueError(f"{url}: unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
    region = None
    if "region" in values:
        try:
            x, y, w, h = (int(p) for p in values["region"].split(","))
        except ValueError:
            raise ValueError(f"{url}: region must be x,y,width,height in pixels") from None
        if x < 0 or y < 0 or w < 16 or h < 16:
            raise ValueError(f"{url}: region {values['region']}: x and y >= 0, width and height >= 16")
        region = (x, y, w - w % 2, h - h % 2)  # the encoders' 4:2:0 wants even sizes
    try:
        fps = float(values.get("fps", 30))
        screen = int(values.get("screen", 0))
    except ValueError:
        raise ValueError(f"{url}: fps and screen must be numbers") from None
    if not 0 < fps <= 120:
        raise ValueError(f"{url}: fps {fps:g} is not in (0, 120]")
    window = values.get("window") or None
    if window is not None and region is not None:
        raise ValueError(f"{url}: a window or a region, not both")
    return ScreenSpec(where or None, region, window, fps, values.get("cursor", "0") in ("1", "true", "yes"), screen)


def screen_input(url: str, formats: set[str], platform: str = sys.platform) -> tuple[str, str, dict[str, str]]:
    """(target, format, options) for ``av.open``; SourceOpenError in one line where this platform or
    this FFmpeg cannot grab the screen."""
    spec = parse_screen(url)
    key = "linux" if platform.startswith("linux") else platform
    grabber = GRABBERS.get(key)
    if grabber is None:
        raise SourceOpenError(
            f"{url}: screen capture needs X11 (Linux), Windows or macOS; {platform} has no grabber in FFmpeg"
        )
    if grabber not in formats:
        raise SourceOpenError(f"{url}: this PyAV's FFmpeg has no {grabber} input, so the screen cannot be grabbed")
    options = {"framerate": f"{spec.fps:g}", "draw_mouse": "1" if spec.cursor else "0"}
    if grabber == "x11grab":
        display = spec.display or os.environ.get("DISPLAY")
        if not display:
            raise SourceOpenError(
                f"{url}: no X display: DISPLAY is not set (run dfstream in the desktop session or name one: screen://:0)"
            )
        target = display
        if spec.region is not None:
            x, y, w, h = spec.region
            target = f"{display}+{x},{y}"
            options["video_size"] = f"{w}x{h}"
        if spec.window is not None:
            try:
                options["window_id"] = str(int(spec.window, 0))
            except ValueError:
                raise SourceOpenError(f"{url}: window {spec.window!r} is not an X11 window id (0x3a00007)") from None
        return target, grabber, options
    if grabber == "gdigrab":
        if spec.region is not None:
            x, y, w, h = spec.region
            options.update({"offset_x": str(x), "offset_y": str(y), "video_size": f"{w}x{h}"})
        return (f"title={spec.window}" if spec.window else "desktop"), grabber, options
    options.pop("draw_mouse")
    options["capture_cursor"] = "1" if spec.cursor else "0"
    return f"Capture screen {spec.screen}:none", grabber, options
