"""The security suite attacks a real `dfstream serve` on loopback, started as the service tests
start it: ``running(folder, streams, api)`` for a server a module shares, ``login`` for a fresh
session token (each call a new one: tests revoke them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.helpers import free_port
from tests.service.conftest import PASSWORD, Served, serve, write_config  # noqa: F401 -- fixtures, used by name


@contextlib.contextmanager
def running(folder: Path, streams: list[dict], api: dict, users: bool = True, **sections) -> Iterator[Served]:
    """`dfstream serve` on a config written into ``folder`` (a free port added), with a user of each
    role unless ``users`` is False; stopped on leaving."""
    port = free_port()
    server = Served(write_config(folder, streams, {"port": port, **api}, **sections), port)
    if users:
        server.add_users()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def login(served: Served, username: str, password: str = PASSWORD, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{served.base}/api/v1/auth/token",
        data={"username": username, "password": password},
        headers=headers or {},
        timeout=60,
    )


def session_token(served: Served, username: str) -> str:
    answer = login(served, username)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]
