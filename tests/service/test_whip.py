"""WHIP into `dfstream serve`, pushed by a real WebRTC client (aiortc, as OBS's WHIP output does):
verdicts for the declared stream, DELETE ends the push, a client that vanishes without DELETE is
offline within the stall timeout, and the refusals: no token, a malformed offer, a second publisher,
a stream that takes no pushes, the session cap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from bench.whip import WhipPush
from tests.helpers import REPO, wait_until

STALL_S = 4.0


def stream(served, stream_id: str) -> dict:
    with served.client("viewer") as client:
        return client.get(f"/api/v1/streams/{stream_id}").json()


@pytest.fixture
def whip_server(serve):
    return serve(
        [
            {"id": "obs", "url": "whip://", "stall_timeout_s": STALL_S},
            {"id": "cam", "url": "sample://astronaut", "loop": True},
        ],
        api={"calls": {"max_sessions": 2, "per_user": 2}},
    )


@pytest.mark.timeout(180)
def test_a_whip_push_is_judged_as_the_declared_stream_and_delete_ends_it(whip_server, face_clip):
    served = whip_server
    assert stream(served, "obs")["status"] == "offline"  # waiting for a publisher
    assert "waiting for a call" in stream(served, "obs")["reason"]

    async def push_and_end() -> tuple[int, dict, int | None]:
        push = WhipPush(f"{served.base}/whip/obs", served.token("analyst"), str(face_clip))
        answer = await push.start()
        assert answer.status_code == 201, answer.text
        assert answer.headers["content-type"].startswith("application/sdp")
        assert answer.headers["location"].startswith("/whip/obs/")
        assert "a=candidate" in answer.text  # every candidate in the answer: no trickle needed
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            seen = await asyncio.to_thread(stream, served, "obs")
            if seen["status"] == "online" and seen["tracks"]:
                break
        # a second publisher for the same stream is refused while the first sends
        second = WhipPush(f"{served.base}/whip/obs", served.token("admin"), str(face_clip))
        busy = await second.start()
        await second.stop(delete=False)
        return busy.status_code, seen, await push.stop()

    busy, seen, deleted = asyncio.run(push_and_end())
    assert seen["status"] == "online" and seen["tracks"], seen  # the astronaut's face, judged
    assert seen["tracks"][0]["label"] in ("real", "fake", "uncertain")
    assert seen["frames_decoded"] > 5
    assert busy == 409
    assert deleted == 200
    wait_until(lambda: stream(served, "obs")["status"] == "offline", 10, "obs offline after DELETE")
    assert stream(served, "obs")["tracks"] == []
    with served.client("admin") as client:  # its events were closed with the push
        events = client.get("/api/v1/events", params={"stream": "obs"}).json()
    assert all(e["ended_at"] is not None for e in events["items"]), events
    metrics = scrape_api(served)
    assert metrics['dfstream_calls_total{event="started"}'] == 1
    assert metrics['dfstream_calls_total{event="ended"}'] == 1


def scrape_api(served) -> dict[str, float]:
    with served.client("admin") as client:
        text = client.get("/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.mark.timeout(180)
def test_a_publisher_that_vanishes_without_delete_is_offline_within_the_stall_timeout(whip_server, face_clip):
    served = whip_server
    token = served.token("analyst")
    client = subprocess.Popen(
        [sys.executable, "-m", "bench.whip", f"{served.base}/whip/obs", str(face_clip), "--token", token],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: stream(served, "obs")["status"] == "online", 60, "the pushed stream online")
        client.send_signal(signal.SIGKILL)  # no DELETE, no RTCP BYE: the packets just stop
        client.wait(10)
        gone = time.monotonic()
        statuses = []

        def offline() -> bool:
            statuses.append(stream(served, "obs")["status"])
            return statuses[-1] == "offline"

        wait_until(offline, STALL_S + 4, "obs offline after its publisher vanished")
        took = time.monotonic() - gone
    finally:
        if client.poll() is None:
            client.kill()
        client.communicate()
    assert "reconnecting" in statuses, statuses  # first: it may only have paused
    assert took <= STALL_S + 2, took  # the stall timeout, and the watchdog's half-second tick
    reason = stream(served, "obs")["reason"]
    assert "no media for 4s" in reason, reason
    # and the stream takes the next publisher
    again = WhipPush(f"{served.base}/whip/obs", served.token("analyst"), str(face_clip))

    async def push_again() -> int:
        answer = await again.start()
        await again.stop()
        return answer.status_code

    assert asyncio.run(push_again()) == 201


def test_whip_refusals_are_one_line_each(whip_server, face_clip):
    served = whip_server
    endpoint = f"{served.base}/whip/obs"

    async def attempt(token: str | None, offer: str | None = None, where: str = endpoint) -> httpx.Response:
        push = WhipPush(where, token, str(face_clip))
        try:
            return await push.start(offer)
        finally:
            await push.stop(delete=False)

    no_token = asyncio.run(attempt(None))
    assert no_token.status_code == 401
    viewer = asyncio.run(attempt(served.token("viewer")))
    assert viewer.status_code == 403 and "'write' scope" in viewer.json()["detail"]
    malformed = asyncio.run(attempt(served.token("analyst"), "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=garbage\r\n"))
    assert malformed.status_code == 400, malformed.text
    detail = malformed.json()["detail"]
    assert "the SDP offer cannot be used" in detail and "\n" not in detail
    no_video = asyncio.run(attempt(served.token("analyst"), "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"))
    assert no_video.status_code == 400 and "no video" in no_video.json()["detail"]
    camera = asyncio.run(attempt(served.token("analyst"), where=f"{served.base}/whip/cam"))
    assert camera.status_code == 404 and "url: whip://" in camera.json()["detail"]
    with served.client("analyst") as client:
        wrong_type = client.post("/whip/obs", content="v=0", headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 415
        trickle = client.patch("/whip/obs/whatever", content="a=candidate")
        assert trickle.status_code == 405
        unknown = client.delete("/whip/obs/not-a-session")
        assert unknown.status_code == 404
    metrics = scrape_api(served)
    assert metrics['dfstream_api_rejected_total{reason="bad_request"}'] >= 2
    assert metrics['dfstream_api_rejected_total{reason="unauthorized"}'] >= 1
    assert metrics["dfstream_call_sessions"] == 0  # nothing refused holds a seat
    assert os.path.exists(served.log)
