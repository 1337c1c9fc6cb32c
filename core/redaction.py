"""Secrets out of what is printed: URL passwords and credentials in query strings replaced by ***
in logs, errors and printed configs; and log lines that say one thing each (``LogFormatter``)."""

from __future__ import annotations

import logging
import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):(?P<password>[^@/\s'\"]+)@")
# query parameters that carry a credential (?token=, &password=, an S3 signature, ...)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:access_token|token|password|passwd|pass|pwd|secret|api_?key|key|auth|signature|sig"
    r"|x-amz-signature|x-amz-credential|passphrase)=)[^&#\s'\"]+",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it, and every credential in a query string,
    replaced by ***."""
    return _QUERY_SECRET.sub(
        lambda m: f"{m['key']}***", _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    )


def escape_controls(text: str) -> str:
    """Control characters shown as escapes: a value from a client (a path with %0A in it) cannot
    start a forged log line or move the terminal's cursor."""
    return _CONTROL.sub(lambda m: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(m[0], f"\\x{ord(m[0]):02x}"), text)


class LogFormatter(logging.Formatter):
    """Every log line redacted and on one line; a traceback, which the formatter adds after the
    message, keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 -- logging's name
        return escape_controls(redact(super().formatMessage(record)))


def url_password(url: str) -> str | None:
    match = _USERINFO.match(url)
    return match["password"] if match else None
