"""`dfstream serve` answered over HTTP as its users would call it: log in, roles, tokens, uploads
and their analysis, streams, events, the live feed, metrics; every bad input a JSON 4xx."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import TEST_WEIGHTS, free_port, mesonet_specs, wait_until
from tests.service.conftest import PASSWORD, Served, dfstream, sse_events, write_config

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Served:
    """One server for the module: the sample stream at 5 fps, small caps so limits are reachable."""
    folder = tmp_path_factory.mktemp("api")
    port = free_port()
    config = write_config(
        folder,
        [{"id": "cam1", "url": "sample://astronaut", "pace": "realtime", "loop": True, "fps": 5}],
        {"port": port, "max_upload_mb": 2, "analysis": {"frames": 8}, "login_limit": {"failures": 3, "window_s": 2}},
    )
    served = Served(config, port).add_users().start()
    yield served
    served.stop()


def test_every_endpoint_but_health_needs_a_token(api):
    with api.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code in (200, 503)
        for path in ("/api/v1/streams", "/api/v1/events", "/api/v1/media", "/api/v1/users", "/api/v1/feed", "/metrics"):
            answer = anonymous.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "POST /api/v1/auth/token" in answer.json()["detail"]
        assert anonymous.get("/api/v1/streams", headers={"Authorization": "Basic YTpi"}).json()["detail"] == (
            "the Authorization header must be 'Bearer <token>'"
        )
        assert (
            anonymous.get("/api/v1/streams", headers={"Authorization": "Bearer dfs_nonsense"}).json()["detail"]
            == "unknown token"
        )
        assert anonymous.get("/docs").status_code == 200  # the documentation itself holds no data


def test_roles_decide_what_a_token_may_do(api):
    with api.client("viewer") as viewer, api.client("analyst") as analyst, api.client("admin") as admin:
        assert viewer.get("/api/v1/users/me").json()["role"] == "viewer"
        refused = viewer.post("/api/v1/media", files={"file": ("a.mp4", b"x")})
        assert refused.status_code == 403
        assert refused.json()["detail"] == "viewer (viewer) may not do this: it needs the 'write' scope"
        assert analyst.get("/api/v1/users").status_code == 403
        assert (
            analyst.post("/api/v1/users", json={"username": "eve", "password": "x" * 12, "role": "admin"}).status_code
            == 403
        )
        assert viewer.post("/api/v1/events/0123/ack").status_code == 403
        made = admin.post("/api/v1/users", json={"username": "carol", "password": "long enough 1", "role": "analyst"})
        assert made.status_code == 201 and made.json()["role"] == "analyst"
        assert admin.post("/api/v1/users", json={"username": "carol", "password": "long enough 1"}).status_code == 409
        assert admin.post("/api/v1/users", json={"username": "dave", "password": "short"}).status_code == 422
        assert {u["username"] for u in admin.get("/api/v1/users").json()} >= {"admin", "analyst", "viewer", "carol"}
        carol = made.json()["id"]
        assert admin.patch(f"/api/v1/users/{carol}", json={"disabled": True}).json()["disabled"] is True
        login = httpx.post(f"{api.base}/api/v1/auth/token", data={"username": "carol", "password": "long enough 1"})
        assert login.status_code == 401
        me = admin.get("/api/v1/users/me").json()["id"]
        assert (
            admin.patch(f"/api/v1/users/{me}", json={"role": "viewer"}).status_code == 409
        )  # never lock out the last door
        assert admin.patch("/api/v1/users/99999", json={"role": "viewer"}).status_code == 404


def test_api_tokens_are_scoped_expire_and_can_be_revoked(api):
    with api.client("analyst") as analyst:
        too_much = analyst.post("/api/v1/tokens", json={"name": "ci", "scopes": ["admin"]})
        assert too_much.status_code == 403 and "cannot hold scopes ['admin']" in too_much.json()["detail"]
        made = analyst.post("/api/v1/tokens", json={"name": "grafana", "scopes": ["read"]})
        assert made.status_code == 201
        token = made.json()["access_token"]
        short = analyst.post(
            "/api/v1/tokens", json={"name": "brief", "scopes": ["read"], "expires_days": 1.5e-5}
        ).json()["access_token"]
        listed = analyst.get("/api/v1/tokens").json()
        assert {t["name"] for t in listed} >= {"grafana", "brief"} and all("access_token" not in t for t in listed)
    with httpx.Client(base_url=api.base, headers={"Authorization": f"Bearer {token}"}) as script:
        assert script.get("/api/v1/events").status_code == 200
        assert (
            script.post("/api/v1/media", files={"file": ("a.mp4", b"x")}).status_code == 403
        )  # read only, though its user may write
    time.sleep(1.4)
    expired = httpx.get(f"{api.base}/api/v1/events", headers={"Authorization": f"Bearer {short}"})
    assert expired.status_code == 401 and expired.json()["detail"] == "the token has expired: log in again"
    with api.client("analyst") as analyst:
        token_id = next(t["id"] for t in analyst.get("/api/v1/tokens").json() if t["name"] == "grafana")
        assert analyst.delete(f"/api/v1/tokens/{token_id}").json()["revoked_at"] is not None
    revoked = httpx.get(f"{api.base}/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401 and revoked.json()["detail"] == "the token was revoked"


def test_failed_logins_are_rate_limited(api):
    def login(password: str) -> httpx.Response:
        return httpx.post(f"{api.base}/api/v1/auth/token", data={"username": "viewer", "password": password})

    time.sleep(2.1)  # the window (2 s) of failures earlier tests made from this address passes
    assert [login("wrong").status_code for _ in range(3)] == [401, 401, 401]
    limited = login(PASSWORD)  # even the right password waits: the window is the point
    assert limited.status_code == 429
    assert "too many failed logins" in limited.json()["detail"] and int(limited.headers["retry-after"]) >= 1
    wait_until(lambda: login(PASSWORD).status_code == 200, 10, "the login window to pass")
    with api.client("viewer") as viewer:
        metrics = viewer.get("/metrics").text
    assert 'dfstream_api_rejected_total{reason="rate_limited"}' in metrics


def _upload(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    with path.open("rb") as fh:
        return client.post("/api/v1/media", files={"file": (name or path.name, fh, "video/mp4")})


def test_an_upload_is_analysed_in_the_background_with_the_numbers_eval_gives(api, short_clip, tmp_path):
    with api.client("analyst") as analyst:
        created = _upload(analyst, short_clip, "../../etc/passwd.mp4")
        assert created.status_code == 201, created.text
        media = created.json()
        assert media["status"] in ("queued", "running")
        assert (media["container"], media["codec"], media["width"], media["height"]) == (
            "mov,mp4,m4a,3gp,3g2,mj2",
            "h264",
            640,
            360,
        )
        assert media["original_name"] == "passwd.mp4"  # shown, cleaned; never a path
        assert not list((tmp_path.parent).rglob("passwd.mp4"))
    done = api.wait_media(media["id"])
    assert done["status"] == "done" and done["progress"] == 1.0, done
    with api.client("viewer") as viewer:
        results = viewer.get(f"/api/v1/media/{media['id']}/results").json()
    assert results["verdict"] in ("real", "fake", "uncertain") and 0 <= results["fake_probability"] <= 1
    assert results["aggregation"] == "mean" and results["frames_scored"] == 8
    assert set(results["models"]) == {"meso4", "mesoinception4"}

    # dfstream eval on the same file: the same frames, the same P(fake), from the same code
    for label in ("real", "fake"):
        (tmp_path / "set" / label).mkdir(parents=True)
        (tmp_path / "set" / label / "clip.mp4").write_bytes(short_clip.read_bytes())
    evaluated = dfstream(
        "eval",
        str(tmp_path / "set"),
        "--frames",
        "8",
        "--out",
        str(tmp_path / "out"),
        "--detectors",
        *mesonet_specs(TEST_WEIGHTS),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    with (tmp_path / "out" / "frame_scores.csv").open() as fh:
        expected = {int(row["frame"]): row for row in csv.DictReader(fh) if "/fake/" in row["path"]}
    largest = {row["frame"]: row for row in results["rows"] if row["face"] == 0}
    assert sorted(largest) == sorted(expected)
    for frame, row in largest.items():
        assert row["fake_probability"] == pytest.approx(float(expected[frame]["fused"]), abs=1e-6)
        assert row["models"]["meso4"] == pytest.approx(float(expected[frame]["meso4"]), abs=1e-6)
    mean = sum(float(r["fused"]) for r in expected.values()) / len(expected)
    assert results["fake_probability"] == pytest.approx(mean, abs=1e-5)


def _leftovers(api: Served) -> list[Path]:
    return sorted((api.config.parent / "data" / "media").glob("*.part"))


def test_bad_uploads_are_refused_and_leave_nothing_behind(api, short_clip, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(short_clip.read_bytes()[: short_clip.stat().st_size // 3])
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 3_000_000)
    with api.client("analyst") as analyst:
        before = {m["id"] for m in analyst.get("/api/v1/media").json()}
        answer = _upload(analyst, text)
        assert answer.status_code == 415 and answer.json()["detail"].startswith("not a video PyAV can read")
        answer = _upload(analyst, truncated)
        assert answer.status_code == 415, answer.text
        answer = _upload(analyst, big)
        assert answer.status_code == 413 and "limit of 2 MB" in answer.json()["detail"]
        # without a Content-Length (chunked): stopped while streaming, not after
        chunks = (b"\0" * 65536 for _ in range(60))
        boundary = "dfstreamtestboundary"

        def body():
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n'.encode()
            yield from chunks
            yield f"\r\n--{boundary}--\r\n".encode()

        answer = analyst.post(
            "/api/v1/media", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert answer.status_code == 413
        answer = analyst.post("/api/v1/media", content=b"raw bytes", headers={"Content-Type": "video/mp4"})
        assert answer.status_code == 415 and "multipart/form-data" in answer.json()["detail"]
        answer = analyst.post("/api/v1/media", files={"other": ("a.mp4", b"abc")})
        assert answer.status_code == 422 and "no multipart field named 'file'" in answer.json()["detail"]
        answer = analyst.post("/api/v1/media", files={"file": ("empty.mp4", b"")})
        assert answer.status_code == 415 and answer.json()["detail"] == "the file is empty"
        assert {m["id"] for m in analyst.get("/api/v1/media").json()} == before  # no half-written rows
        assert analyst.get("/api/v1/media/424242").status_code == 404
        assert analyst.get("/api/v1/media/424242/results").json() == {"detail": "no media 424242"}
        assert analyst.get("/api/v1/media/not-a-number").status_code == 422
    assert _leftovers(api) == []


def test_a_media_file_is_deleted_with_its_results(api, short_clip):
    with api.client("analyst") as analyst, api.client("viewer") as viewer:
        media = _upload(analyst, short_clip).json()
        api.wait_media(media["id"])
        assert viewer.delete(f"/api/v1/media/{media['id']}").status_code == 403
        assert analyst.delete(f"/api/v1/media/{media['id']}").status_code == 204
        assert analyst.get(f"/api/v1/media/{media['id']}").status_code == 404
        assert analyst.get(f"/api/v1/media/{media['id']}/results").status_code == 404


def test_streams_show_the_runtime_live(api):
    with api.client("viewer") as viewer:
        wait_until(lambda: viewer.get("/api/v1/streams/cam1").json()["tracks"], 30, "a live track on cam1")
        cam = viewer.get("/api/v1/streams/cam1").json()
        assert cam["status"] == "online" and cam["up"] is True and cam["url"] == "sample://astronaut"
        assert cam["label"] in ("real", "uncertain", "fake") and cam["frames_decoded"] > 0
        track = cam["tracks"][0]
        assert set(track["models"]) == {"meso4", "mesoinception4"} and len(track["bbox"]) == 4
        assert [s["id"] for s in viewer.get("/api/v1/streams").json()] == ["cam1"]
        missing = viewer.get("/api/v1/streams/cam9")
        assert missing.status_code == 404 and missing.json()["detail"] == "no stream 'cam9' (configured: cam1)"


def test_the_live_feed_sends_server_sent_events(api):
    token = api.token("viewer")
    seen: list[dict] = []
    with httpx.stream(
        "GET", f"{api.base}/api/v1/feed?types=verdict,state&stream=cam1&access_token={token}", timeout=20
    ) as feed:
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(feed):
            if event["event"] in ("verdict", "state"):
                seen.append({"event": event["event"], **event["data"]})
            if {e["event"] for e in seen} == {"verdict", "state"}:
                break
    assert all(e["stream"] == "cam1" and e["type"] == e["event"] for e in seen)
    assert next(e for e in seen if e["event"] == "verdict")["label"] in ("real", "uncertain", "fake")
    with api.client("viewer") as viewer:
        assert viewer.get("/api/v1/feed?types=verdict,gossip").status_code == 422


def _feed(api: Served, token: str, query: str = "", headers: dict | None = None, until=None) -> list[dict]:
    """The feed's events from connecting until ``until(events)`` holds (or the ready event)."""
    url = f"{api.base}/api/v1/feed?stream=cam1&access_token={token}{query}"
    events: list[dict] = []
    with httpx.stream("GET", url, headers=headers or {}, timeout=20) as feed:
        assert feed.status_code == 200
        for event in sse_events(feed):
            events.append(event)
            if (until or (lambda seen: seen[-1]["event"] == "ready"))(events):
                return events
    raise AssertionError(f"the feed ended before it was expected to: {events[-3:]}")


def _number(event: dict) -> int:
    return int(event["id"].rpartition("-")[2])


def test_a_feed_client_that_reconnects_gets_what_it_missed_then_live(api):
    token = api.token("viewer")
    # a first connection: the current state, ready, then a few live verdicts, each with its id
    first = _feed(api, token, until=lambda seen: sum(e["event"] == "verdict" for e in seen) >= 3)
    ready = next(i for i, e in enumerate(first) if e["event"] == "ready")
    assert {e["event"] for e in first[:ready]} <= {"state"} and all(e["id"] is None for e in first[:ready])
    live = [e for e in first if e["event"] == "verdict"]
    assert all(e["id"] for e in live) and all(e["data"]["stream"] == "cam1" for e in live)
    last = live[-1]
    time.sleep(2)  # away: verdicts go on at 5 fps

    # back with Last-Event-ID: every event since, numbered on from it without a gap, then ready, then live
    back = _feed(
        api,
        token,
        headers={"Last-Event-ID": last["id"]},
        until=lambda seen: len(seen) > 2 and any(e["event"] == "ready" for e in seen[:-2]),
    )
    ready = next(i for i, e in enumerate(back) if e["event"] == "ready")
    replayed = back[:ready]
    assert len(replayed) >= 5 and back[ready]["data"] == {"replayed": len(replayed), "resumed": True}
    # this server's only stream is cam1 and alerts are of no stream: this client wants every event
    numbers = [_number(e) for e in back if e["event"] != "ready"]
    assert numbers == list(range(_number(last) + 1, _number(last) + 1 + len(numbers))), numbers
    assert _number(back[ready]) == _number(replayed[-1])  # ready holds the position: the last one replayed
    assert {e["event"] for e in replayed} <= {"verdict", "state", "status"}
    gap = [e["data"]["ts"] for e in replayed if e["event"] == "verdict"]
    assert gap[-1] - gap[0] > 1.5, "the replay does not span the time away"

    # the same id after a restart of dfstream (another epoch) or garbage: a reset, then the state, then ready
    epoch_number = last["id"].rpartition("-")[2]
    for stale, reason in ((f"00000000-{epoch_number}", "restarted"), ("not-an-id", "unknown"), ("x" * 500, "unknown")):
        events = _feed(api, token, headers={"Last-Event-ID": stale})
        assert events[0]["event"] == "reset" and events[0]["data"]["reason"] == reason, events[0]
        assert events[-1]["data"] == {"replayed": 0, "resumed": False}
        assert "state" in {e["event"] for e in events}
    # an id whose number is a digit to str.isdigit() but not to int() ("²"): more times than the user
    # has feed seats, each a reset, and every seat given back (it was a 500 that kept its seat)
    epoch = last["id"].rpartition("-")[0]
    for _ in range(22):  # the default feed_per_user is 20
        events = _feed(api, token, query=f"&resume_after={epoch}-%C2%B2")
        assert events[0]["data"]["reason"] == "unknown", events[0]
    # a new client may ask for the recent past: a page opened now shows the last seconds, not nothing
    recent = _feed(api, token, query="&types=verdict&replay_s=60")
    verdicts = [e["data"]["ts"] for e in recent if e["event"] == "verdict"]
    assert len(verdicts) > 10 and time.time() - verdicts[0] > 3 and verdicts == sorted(verdicts)
    with api.client("viewer") as viewer:
        metrics = viewer.get("/metrics").text
    for outcome in ("replayed", "reset:restarted", "reset:unknown"):
        assert f'dfstream_feed_resumes_total{{outcome="{outcome}"}}' in metrics


def test_metrics_need_a_token_and_count_refusals(api):
    with api.client("viewer") as viewer:
        text = viewer.get("/metrics").text
    assert "dfstream_frames_decoded_total" in text and 'dfstream_api_rejected_total{reason="unauthorized"}' in text
    assert "dfstream_store_pending_writes" in text and "dfstream_analysis_jobs_total" in text


def test_malformed_event_queries_get_a_clear_answer(api):
    with api.client("viewer") as viewer:
        assert viewer.get("/api/v1/events?cursor=bm90IGEgY3Vyc29y").json() == {
            "detail": "cursor: not a cursor this server gave (pass next_cursor back as it is)"
        }
        assert viewer.get("/api/v1/events?since=yesterday").status_code == 422
        assert (
            viewer.get("/api/v1/events?since=2026-01-01T00:00:00")
            .json()["detail"]
            .startswith("since: give a time zone")
        )
        assert viewer.get("/api/v1/events?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z").status_code == 422
        assert viewer.get("/api/v1/events?limit=0").status_code == 422
        assert viewer.get("/api/v1/events?label=weird").status_code == 422
        assert viewer.get("/api/v1/events/nope").json() == {"detail": "no event 'nope'"}
        assert viewer.get("/api/v1/events/nope/face.jpg").status_code == 404


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["stream", "label", "since", "until", "acknowledged", "cursor", "limit"]),
        st.one_of(
            st.text(max_size=40),
            st.integers(-10, 10**12).map(str),
            st.sampled_from(["fake", "true", "2026-11-24T00:00:00Z"]),
        ),
    )
)
def test_any_event_query_gets_json_never_a_server_error(api, params):
    with api.client("viewer") as viewer:
        answer = viewer.get("/api/v1/events", params=params)
    assert answer.status_code in (200, 400, 422), (params, answer.status_code, answer.text)
    body = answer.json()
    assert ("items" in body) if answer.status_code == 200 else ("detail" in body)
