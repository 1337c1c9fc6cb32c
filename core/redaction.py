"""Secrets out of what is printed: URL passwords replaced by *** in logs, errors and printed configs."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):(?P<password>[^@/\s'\"]+)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def url_password(url: str) -> str | None:
    match = _USERINFO.match(url)
    return match["password"] if match else None
