"""Long-lived responses attacked, against a real `dfstream serve` on loopback: a token in a URL
(logged by proxies, kept in histories) is good only for reading what a browser loads without
headers; a revoked token, or a disabled user, loses the live feed and the live view within
`api.stream_recheck_s`; nobody holds more feed subscriptions or live views than the caps allow."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.security.conftest import PASSWORD, Served, running, session_token

pytestmark = pytest.mark.weights
RECHECK_S = 1.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    api = {
        "stream_recheck_s": RECHECK_S,
        "viewers": {"feed_total": 4, "feed_per_user": 2, "live_total": 3, "live_per_user": 2},
    }
    stream = {"id": "cam1", "url": "sample://astronaut", "fps": 5, "loop": True}
    with running(tmp_path_factory.mktemp("stream_access"), [stream], api) as server:
        yield server


class Held:
    """A streamed GET read in a thread until the server ends it: when, and what came."""

    def __init__(self, served: Served, path: str, **params):
        self.opened = threading.Event()
        self.status: int | None = None
        self.ended_at: float | None = None
        self.tail = b""
        self._client = httpx.Client(base_url=served.base, timeout=httpx.Timeout(30, read=60))
        self._thread = threading.Thread(target=self._read, args=(path, params), daemon=True)
        self._thread.start()
        assert self.opened.wait(30), f"{path} did not answer"

    def _read(self, path: str, params: dict) -> None:
        try:
            with self._client.stream("GET", path, params=params) as answer:
                self.status = answer.status_code
                self.opened.set()
                for chunk in answer.iter_bytes():
                    self.tail = (self.tail + chunk)[-200:]
        except httpx.HTTPError:
            pass
        finally:
            self.ended_at = time.monotonic()
            self.opened.set()

    def ended_within(self, seconds: float) -> float:
        self._thread.join(seconds)
        assert self.ended_at is not None, f"the stream still runs after {seconds} s"
        return self.ended_at

    def close(self) -> None:
        self._client.close()


def test_a_token_in_the_url_is_refused_except_for_reading_streams_and_images(served):
    admin = session_token(served, "admin")
    with httpx.Client(base_url=served.base, timeout=30) as anonymous:
        for method, path in (("GET", "/api/v1/users"), ("GET", "/api/v1/events"), ("POST", "/api/v1/tokens")):
            answer = anonymous.request(method, path, params={"access_token": admin}, json={"name": "x"})
            assert answer.status_code == 401, (method, path, answer.text)
            assert "?access_token= is taken only by the feed, live views and images" in answer.json()["detail"]
        snapshot = anonymous.get("/api/v1/streams/cam1/snapshot.jpg", params={"access_token": admin})
        assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
        assert anonymous.get("/api/v1/events/nope/face.jpg", params={"access_token": admin}).status_code == 404


def test_a_revoked_token_loses_the_feed_and_the_live_view_within_the_recheck(served):
    token = session_token(served, "viewer")
    feed = Held(served, "/api/v1/feed", access_token=token)
    live = Held(served, "/api/v1/streams/cam1/live.mjpeg", access_token=token, fps=2, width=320)
    try:
        assert feed.status == 200 and live.status == 200
        time.sleep(2 * RECHECK_S)  # both outlive a recheck while the token holds
        assert feed.ended_at is None and live.ended_at is None
        with httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {token}"}) as viewer:
            assert viewer.post("/api/v1/auth/logout").status_code == 200
        revoked = time.monotonic()
        cut = max(feed.ended_within(10), live.ended_within(10)) - revoked
        assert cut < RECHECK_S + 2.0, cut
        assert b"event: end" in feed.tail
        print(f"\nrevoked token: feed and live view cut {cut:.2f} s after logout (recheck {RECHECK_S} s)")
    finally:
        feed.close()
        live.close()
    log = served.log.read_text()
    assert "GET /api/v1/feed: closed, its token no longer holds: the token was revoked" in log


def test_a_disabled_user_loses_the_live_view(served):
    with served.client("admin") as admin:
        made = admin.post("/api/v1/users", json={"username": "temp", "password": PASSWORD, "role": "viewer"})
        assert made.status_code == 201, made.text
        user_id = made.json()["id"]
        temp = session_token(served, "temp")
        live = Held(served, "/api/v1/streams/cam1/live.mjpeg", access_token=temp, fps=2, width=320)
        try:
            assert live.status == 200
            assert admin.patch(f"/api/v1/users/{user_id}", json={"disabled": True}).status_code == 200
            disabled = time.monotonic()
            assert live.ended_within(10) - disabled < RECHECK_S + 2.0
        finally:
            live.close()
    assert "closed, its token no longer holds: user temp is disabled" in served.log.read_text()


def test_nobody_holds_more_feeds_or_live_views_than_the_caps(served):
    token, other = session_token(served, "analyst"), session_token(served, "admin")
    held = [Held(served, "/api/v1/feed", access_token=token) for _ in range(2)]
    try:
        assert [h.status for h in held] == [200, 200]
        with httpx.Client(base_url=served.base, timeout=30) as client:
            third = client.get("/api/v1/feed", params={"access_token": token})
            assert third.status_code == 429 and "you hold 2 feed subscriptions already" in third.json()["detail"]
            live = "/api/v1/streams/cam1/live.mjpeg"
            views = [Held(served, live, access_token=t, width=320) for t in (token, token, other)]
            try:
                assert [v.status for v in views] == [200, 200, 200]
                over = client.get("/api/v1/streams/cam1/live.mjpeg", params={"access_token": other, "width": 320})
                assert over.status_code == 503 and "the server holds its most live views (3)" in over.json()["detail"]
            finally:
                for view in views:
                    view.close()
            time.sleep(1.0)  # the seats come back when the viewers leave
            again = Held(served, "/api/v1/streams/cam1/live.mjpeg", access_token=other, width=320)
            assert again.status == 200
            again.close()
            odd = client.get("/api/v1/streams/cam1/snapshot.jpg", params={"access_token": other, "width": 333})
            assert odd.status_code == 422 and odd.json()["detail"].startswith("width: one of 320, 480, 640")
    finally:
        for feed in held:
            feed.close()


def test_the_overlay_page_names_no_stream_to_a_caller_without_a_token(served):
    answer = httpx.get(f"{served.base}/overlay/nope", timeout=30)
    assert answer.status_code == 404 and answer.json()["detail"] == "no stream 'nope'"
    assert "cam1" not in answer.text
    with served.client("viewer") as viewer:  # with a token, the stream ids help
        assert "configured: cam1" in viewer.get("/api/v1/streams/nope").json()["detail"]
