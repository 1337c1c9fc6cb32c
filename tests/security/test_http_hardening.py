"""What any client can send before it is anyone, against a real `dfstream serve` on loopback:
oversized heads and multipart logins, more connections than the server holds, paths built to forge
log lines, credentials in URLs; and what every answer says about itself (headers, TLS)."""

from __future__ import annotations

import socket
import ssl
import time

import httpx
import psutil
import pytest

from tests.helpers import free_port, wait_until
from tests.mqtt_broker import make_certificates
from tests.security.conftest import Served, running, write_config

pytestmark = pytest.mark.weights
SECRET = "hunter2-in-a-query"
STREAMS = [
    {"id": "cam1", "url": "sample://astronaut", "fps": 2, "loop": True},
    # a camera whose credential rides in the query string, as many do; it is unreachable on purpose
    {"id": "door", "url": f"rtsp://127.0.0.1:{free_port()}/live?user=admin&password={SECRET}", "fps": 2},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    api = {
        "connections": {"max_connections": 16, "max_header_kb": 8},
        "overlay_frame_ancestors": ["'self'", "https://studio.example"],
    }
    with running(tmp_path_factory.mktemp("http_hardening"), STREAMS, api) as server:
        yield server


def test_every_answer_forbids_sniffing_referrers_and_framing_except_the_overlay(served):
    with httpx.Client(base_url=served.base, timeout=30) as client:
        for path in ("/", "/api/v1/events", "/healthz", "/docs"):  # a page, a 401, a probe, the API docs
            answer = client.get(path)
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["referrer-policy"] == "no-referrer", path
            assert answer.headers["x-frame-options"] == "DENY", path
        assert client.get("/").headers["content-security-policy"].endswith("; frame-ancestors 'none'")
        overlay = client.get("/overlay/cam1")
        assert "x-frame-options" not in overlay.headers
        assert overlay.headers["content-security-policy"].endswith("; frame-ancestors 'self' https://studio.example")
        refused = client.post("/api/v1/tokens", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
        assert refused.status_code == 413 and refused.headers["x-frame-options"] == "DENY"  # the middleware's own
        assert "server" not in client.get("/healthz").headers


def test_an_oversized_request_head_is_refused_and_the_server_goes_on(served):
    with httpx.Client(base_url=served.base, timeout=30) as client:
        # in one read: 12 KB fits one loopback segment (64 KB could reach the server in pieces on a
        # busy machine, and h11 would drop the connection mid-send instead of letting this answer)
        answer = client.get("/healthz", headers={"X-Padding": "a" * 12 * 1024})
        assert answer.status_code == 431
        assert answer.json()["detail"] == "the request line and headers are over 8 KB (api.connections.max_header_kb)"
        with socket.create_connection(("127.0.0.1", served.port)) as raw:  # in pieces, 1 MB of them
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(64):
                    raw.sendall(b"X-Padding: " + b"a" * 16_000 + b"\r\n")
                    time.sleep(0.01)
            except OSError:  # h11 gave up on the head and closed the connection: the point
                pass
            raw.settimeout(10)
            try:
                first = raw.recv(100)
            except OSError:
                first = b""
            assert first == b"" or first.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), first
        assert client.get("/healthz").status_code == 200


def test_a_multipart_login_is_held_to_the_body_cap_and_the_memory_stays_flat(served):
    process = psutil.Process(served.process.pid)
    before = process.memory_info().rss / 1e6
    files = {"file": ("x.bin", b"\0" * 30_000_000)}
    with httpx.Client(base_url=served.base, timeout=60) as client:
        answer = client.post("/api/v1/auth/token", data={"username": "viewer", "password": "x"}, files=files)
        assert answer.status_code == 413
    grown = process.memory_info().rss / 1e6 - before
    assert grown < 20, grown  # 30 MB sent; neither held in memory nor spooled to a temporary file
    print(f"\n30 MB multipart to /auth/token: 413, server RSS +{grown:.1f} MB")


def test_more_connections_than_the_server_holds_get_503_and_the_rest_goes_on(served):
    idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(16)]
    try:
        time.sleep(0.5)
        with httpx.Client(base_url=served.base, timeout=30) as client:
            answer = client.get("/healthz")
            assert answer.status_code == 503
    finally:
        for sock in idle:
            sock.close()
    with httpx.Client(base_url=served.base, timeout=30) as client:
        wait_until(lambda: client.get("/healthz").status_code == 200, 10, "the held connections to go")


def test_a_path_built_to_forge_a_log_line_stays_on_one_line(served):
    with socket.create_connection(("127.0.0.1", served.port)) as raw:  # sent as is, no client tidying it
        forged = b"/api/v1/events/1%0AERROR%20dfstream.api:%20admin%20logged%20in%1b[2J"
        raw.sendall(b"GET " + forged + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(10)
        assert raw.recv(100).startswith(b"HTTP/1.1 401")
    log = served.log.read_text()
    assert "\nERROR dfstream.api: admin logged in" not in log and "\x1b[2J" not in log
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith("ERROR dfstream.api: admin logged in")]
    forged = [line for line in lines if "admin logged in" in line]
    assert len(forged) == 1 and forged[0].startswith("WARNING dfstream.api: GET /api/v1/events/1")
    assert "admin logged in\\x1b[2J -> 401" in forged[0]  # the escape shown, not obeyed


def test_a_credential_in_a_stream_urls_query_is_never_shown(served):
    wait_until(lambda: "door" in served.log.read_text(), 30, "the unreachable camera to be logged")
    with served.client("admin") as admin:
        listed = admin.get("/api/v1/streams").text
    assert SECRET not in listed and "password=***" in listed
    assert SECRET not in served.log.read_text()


def test_serve_speaks_tls_with_the_configured_certificate(tmp_path):
    make_certificates(tmp_path)
    port = free_port()
    config = write_config(
        tmp_path,
        STREAMS[:1],
        {"port": port, "tls": {"certfile": str(tmp_path / "server.crt"), "keyfile": str(tmp_path / "server.key")}},
    )
    served = Served(config, port).start()
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30) as client:
            answer = client.get("/healthz")
            assert answer.status_code == 200
            assert answer.headers["strict-transport-security"] == "max-age=31536000"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)  # no plain HTTP beside it
        untrusted = ssl.create_default_context(cafile=str(tmp_path / "other.crt"))
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=untrusted, timeout=10)
        assert "dfstream API on https://" in served.log.read_text()
    finally:
        served.stop()
