"""Tokens attacked as a holder of a leaked or low-privilege one would, against a real `dfstream serve`
on loopback: a read-only token cannot mint others, no token lives for ever, a session can be ended
and listed by its user, and a new password ends every token of the old one."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from tests.security.conftest import PASSWORD, running, session_token

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    stream = {"id": "cam1", "url": "sample://astronaut", "fps": 2, "loop": True}
    with running(tmp_path_factory.mktemp("tokens"), [stream], {"max_token_days": 30}) as server:
        yield server


def client(served, token: str) -> httpx.Client:
    return httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_read_only_token_cannot_mint_an_admin_token(served):
    """The reproduced finding: an admin's ["read"] token for Grafana asked for admin, never-expiring."""
    with client(served, session_token(served, "admin")) as admin:
        made = admin.post("/api/v1/tokens", json={"name": "grafana", "scopes": ["read"]})
        assert made.status_code == 201
        grafana = made.json()["access_token"]
    with client(served, grafana) as attacker:
        for body in (
            {"name": "x", "scopes": ["read", "write", "admin"], "expires_days": None},
            {"name": "x", "scopes": ["admin"]},
            {"name": "x", "scopes": ["read"]},  # not even its own scopes: an API token makes no tokens
        ):
            answer = attacker.post("/api/v1/tokens", json=body)
            assert answer.status_code in (403, 422), (body, answer.text)
        assert attacker.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"]}).json()["detail"] == (
            "an API token cannot make tokens: log in (POST /api/v1/auth/token) to make one"
        )
        assert attacker.get("/api/v1/users").status_code == 403  # and it still holds only read
        assert attacker.get("/api/v1/streams").status_code == 200


def test_no_token_lives_for_ever_nor_beyond_the_configured_lifetime(served):
    with client(served, session_token(served, "analyst")) as analyst:
        longest = analyst.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"], "expires_days": None})
        assert longest.status_code == 201  # "never" is not on offer: the configured longest instead
        lifetime = dt.datetime.fromisoformat(longest.json()["expires_at"]) - dt.datetime.now(dt.UTC)
        assert dt.timedelta(days=29.9) < lifetime <= dt.timedelta(days=30)
        too_long = analyst.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"], "expires_days": 31})
        assert too_long.status_code == 422 and "at most 30 (api.max_token_days)" in too_long.json()["detail"]
        ok = analyst.post("/api/v1/tokens", json={"name": "x", "scopes": ["read", "write"], "expires_days": 30})
        assert ok.status_code == 201 and ok.json()["expires_at"] is not None
        beyond_role = analyst.post("/api/v1/tokens", json={"name": "x", "scopes": ["admin"]})
        assert beyond_role.status_code == 403


def test_a_user_lists_their_sessions_ends_one_and_logs_out(served):
    first, second = session_token(served, "viewer"), session_token(served, "viewer")
    with client(served, first) as one:
        sessions = one.get("/api/v1/auth/sessions").json()
        assert len(sessions) >= 2 and all(s["kind"] == "login" and s["revoked_at"] is None for s in sessions)
        newest = max(s["id"] for s in sessions)  # the second login: ended from the first
        assert one.delete(f"/api/v1/tokens/{newest}").json()["revoked_at"] is not None
    with client(served, second) as two:
        assert two.get("/api/v1/streams").json()["detail"] == "the token was revoked"
    with client(served, first) as one:
        assert newest not in {s["id"] for s in one.get("/api/v1/auth/sessions").json()}
        assert one.post("/api/v1/auth/logout").status_code == 200
        assert one.get("/api/v1/streams").status_code == 401  # the server forgot it, not only the browser


def test_a_new_password_ends_every_token_of_the_old_one(served):
    with client(served, session_token(served, "admin")) as admin:
        users = {u["username"]: u["id"] for u in admin.get("/api/v1/users").json()}
        with client(served, session_token(served, "analyst")) as analyst:
            script = analyst.post("/api/v1/tokens", json={"name": "ci", "scopes": ["read"]}).json()["access_token"]
            assert (
                admin.patch(f"/api/v1/users/{users['analyst']}", json={"password": "another long one"}).status_code
                == 200
            )
            assert analyst.get("/api/v1/streams").status_code == 401
        with client(served, script) as leaked:
            assert leaked.get("/api/v1/streams").json()["detail"] == "the token was revoked"
        # put the password back for the other tests of the module
        assert admin.patch(f"/api/v1/users/{users['analyst']}", json={"password": PASSWORD}).status_code == 200


# ---- bodies refused before anything reads them ------------------------------------------------------
def send_raw(port: int, head: bytes, body_chunks, pause_s: float = 0.0) -> bytes:
    """Send ``head`` and then as much of the body as the server takes; what it answered."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                if pause_s:
                    time.sleep(pause_s)
        except OSError:  # the server answered and closed while we were still sending: what the test wants
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def rss_mb(served) -> float:
    import psutil

    return psutil.Process(served.process.pid).memory_info().rss / 1e6


def test_a_huge_body_without_a_token_is_refused_before_it_is_read(served):
    """The reproduced finding: 200 MB of JSON to /tokens without a token raised the server's RSS by 200 MB."""
    before = rss_mb(served)
    size = 200 * 1024 * 1024
    head = (
        f"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    answer = send_raw(served.port, head, (b"[" + b"1," * 512 * 1024 for _ in range(200)))
    assert answer.startswith(b"HTTP/1.1 413") and b"api.max_body_kb" in answer, answer[:300]
    # the same without a length (chunked), and a multipart login carrying a 50 MB "file" part
    chunk = b"1," * 32 * 1024
    chunked = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(800))
    head = (
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert send_raw(served.port, head, chunked).startswith(b"HTTP/1.1 413")
    part = b'--b\r\nContent-Disposition: form-data; name="username"; filename="x"\r\n\r\n'
    head = (
        b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    body = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 800
    assert send_raw(served.port, head, iter(body)).startswith(b"HTTP/1.1 413")
    grown = rss_mb(served) - before
    print(f"hostile bodies: server RSS {before:.0f} MB before, +{grown:.1f} MB after 200 MB + 50 MB + 50 MB refused")
    assert grown < 30
    with client(served, session_token(served, "viewer")) as viewer:  # the server is fine, and counted them
        assert viewer.get("/api/v1/streams").status_code == 200
        assert 'dfstream_api_rejected_total{reason="too_large"} 3.0' in viewer.get("/metrics").text
    small = httpx.post(f"{served.base}/api/v1/tokens", json={"name": "x"}, timeout=10)
    assert small.status_code == 401  # a body under the cap goes on to authentication as before
