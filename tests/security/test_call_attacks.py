"""Calls under attack (issue 38), against a real `dfstream serve` and real aiortc peers on loopback:
concurrent offers to one stream claim it once, and an offer built to cost the server (hundreds of
media sections or candidates) is refused in one line before aiortc parses it."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urljoin

import httpx
import pytest

from bench.whip import WhipPush
from tests.security.conftest import running
from tests.service.conftest import sse_events
from tests.service.test_whip import scrape_api, stream


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(
        tmp_path_factory.mktemp("calls"),
        [{"id": "obs", "url": "whip://", "stall_timeout_s": 6.0}],
        {"calls": {"max_sessions": 8, "per_user": 8}},
    ) as served:
        yield served


@pytest.mark.timeout(180)
def test_concurrent_offers_to_one_stream_give_one_publisher_and_the_rest_busy(server, face_clip):
    endpoint = f"{server.base}/whip/obs"

    async def race() -> tuple[list[int], int, int | None]:
        pushes = [WhipPush(endpoint, server.token("analyst"), str(face_clip), audio=False) for _ in range(4)]
        answers = await asyncio.gather(*(p.start() for p in pushes))
        statuses = [a.status_code for a in answers]
        for push, status in zip(pushes, statuses):
            if status != 201:
                await push.stop(delete=False)
        first = pushes[statuses.index(201)] if 201 in statuses else None
        deleted = await first.stop() if first is not None else None
        # the stream takes its next publisher once the first has left
        again = WhipPush(endpoint, server.token("analyst"), str(face_clip), audio=False)
        try:
            status = (await again.start()).status_code
        finally:
            await again.stop()
        return statuses, status, deleted

    statuses, next_status, deleted = asyncio.run(race())
    assert sorted(statuses) == [201, 409, 409, 409], statuses  # never a 500, never two publishers
    assert deleted == 200 and next_status == 201
    assert scrape_api(server)["dfstream_call_sessions"] == 0  # every seat given back


def _offer(media: int, candidates: int) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    for i in range(media):
        lines += ["m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", f"a=mid:{i}", "a=rtpmap:96 VP8/90000"]
    lines += [f"a=candidate:{i} 1 udp 2130706431 10.0.{i // 250}.{i % 250} 9 typ host" for i in range(candidates)]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    ("media", "candidates", "says"), [(690, 0, "690 media sections"), (1, 300, "300 ICE candidates")]
)
def test_an_offer_built_to_cost_the_server_is_refused_in_one_line_at_once(server, media, candidates, says):
    offer = _offer(media, candidates)
    assert len(offer.encode()) < 64 * 1024  # under the byte cap: the structure is what is refused
    with server.client("analyst") as client:
        started = time.monotonic()
        refused = client.post("/whip/obs", content=offer, headers={"Content-Type": "application/sdp"})
        took = time.monotonic() - started
        health = client.get("/healthz")
    assert refused.status_code == 400, refused.text
    detail = refused.json()["detail"]
    assert says in detail and "\n" not in detail
    assert took < 1.0 and health.status_code == 200  # it was 2.7 s of the event loop for 690 sections
    assert stream(server, "obs")["status"] == "offline"  # nothing claimed: the stream still waits


@pytest.mark.timeout(240)
def test_page_calls_opened_and_ended_leave_metrics_and_the_feed_as_they_were(tmp_path, face_clip):
    """Each page call is a stream of its own; once it has lingered, nothing of it is kept: not its
    metrics series, not its state in the feed (1,100 calls grew /metrics 16x and sent every new feed
    client 1,100 stale states)."""
    from aiortc import RTCPeerConnection
    from aiortc.contrib.media import MediaPlayer

    calls = 12
    with running(
        tmp_path, [{"id": "cam", "url": "sample://astronaut", "loop": True}], {"calls": {"linger_s": 1.0}}
    ) as served:
        token = served.token("analyst")
        _feed_all(served, token)  # the server is up

        async def one_call() -> str:
            pc, player = RTCPeerConnection(), MediaPlayer(str(face_clip), loop=True)
            pc.addTransceiver(player.video, direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=served.base, timeout=30, headers=headers) as client:
                answer = await client.post("/api/v1/calls", json={"sdp": pc.localDescription.sdp})
                assert answer.status_code == 201, answer.text
                body = answer.json()
                await asyncio.sleep(1.0)  # its stream is added and reports
                assert (await client.delete(f"/api/v1/calls/{body['session']}")).status_code == 204
            await pc.close()
            player.video.stop()
            return body["stream"]

        async def many() -> list[str]:
            return [await one_call() for _ in range(calls)]

        ended = asyncio.run(many())
        with served.client("admin") as client:
            seen = lambda: client.get("/metrics").text  # noqa: E731
            wait_for = time.monotonic() + 30
            while any(s in seen() for s in ended) and time.monotonic() < wait_for:
                time.sleep(0.5)
            metrics = seen()
            listed = {s["id"] for s in client.get("/api/v1/streams").json()}
        assert not [s for s in ended if s in metrics], "an ended call's series are still in /metrics"
        assert not listed & set(ended)
        states = [e for e in _feed_all(served, token) if e["event"] == "state"]
        assert [e["data"]["stream"] for e in states] == ["cam"], states  # no stale call states before ready


def _feed_all(served, token: str) -> list[dict]:
    url = f"{served.base}/api/v1/feed?access_token={token}"
    events: list[dict] = []
    with httpx.stream("GET", url, timeout=20) as feed:
        for event in sse_events(feed):
            events.append(event)
            if event["event"] == "ready":
                return events
    raise AssertionError(f"the feed ended before ready: {events[-3:]}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("allow", "probed"), [(["127.0.0.1/32"], False), (["127.0.0.0/8"], True)])
def test_the_server_sends_ice_checks_only_to_allowed_networks(tmp_path, face_clip, allow, probed):
    """An offer names a candidate at 127.0.0.2, where a socket listens: outside ``ice_allow`` it gets
    no packet; inside it (the control) it gets the server's STUN checks."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.2", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    api = {"calls": {"ice_allow": allow}}
    with running(tmp_path, [{"id": "obs", "url": "whip://", "stall_timeout_s": 6.0}], api) as served:

        async def push() -> int:
            from aiortc import RTCPeerConnection

            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            offer = (
                pc.localDescription.sdp.rstrip("\r\n")
                + f"\r\na=candidate:9 1 udp 2130706431 127.0.0.2 {port} typ host\r\n"
            )
            headers = {"Authorization": f"Bearer {served.token('analyst')}", "Content-Type": "application/sdp"}
            async with httpx.AsyncClient(timeout=30) as client:
                status = (await client.post(f"{served.base}/whip/obs", content=offer, headers=headers)).status_code
            await asyncio.sleep(0.1)
            await pc.close()
            return status

        assert asyncio.run(push()) == 201
        packets = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not packets:
            try:
                listener.recvfrom(2048)
                packets += 1
            except TimeoutError:
                pass
    listener.close()
    assert bool(packets) == probed, f"{packets} packets at 127.0.0.2 with ice_allow {allow}"


class _Pictures:
    """A sender's video of ``width`` x ``height`` grey pictures at ``fps`` (aiortc encodes them)."""

    def __init__(self, width: int, height: int, fps: float):
        import fractions

        import av
        import numpy as np
        from aiortc import VideoStreamTrack

        class Track(VideoStreamTrack):
            async def recv(self):  # noqa: ANN202
                await asyncio.sleep(1 / fps)
                frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 120, np.uint8), format="rgb24")
                self.count = getattr(self, "count", 0) + 1
                frame.pts, frame.time_base = self.count * 3000, fractions.Fraction(1, 90000)
                return frame

        self.track = Track()


@pytest.mark.timeout(180)
def test_a_picture_over_the_size_limit_ends_the_call_and_unheard_sound_is_refused(server):
    """A 4K stream against the default 1920x1080 limit: the session ends, the stream says why, and the
    server's memory comes back (an 8K one once reached 11.5 GB). The server judges no voice here, so
    the offer's audio is answered inactive (not received)."""
    import psutil
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    async def push(width: int = 3840, height: int = 2160, until: str = "max_width") -> tuple[str, dict]:
        pc = RTCPeerConnection()
        pc.addTransceiver(_Pictures(width, height, 10).track, direction="sendonly")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        answer = await _answered(server, pc)
        deadline = time.monotonic() + 60
        seen = {}
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            seen = await asyncio.to_thread(stream, server, "obs")
            if until in (seen.get("reason") or "") or (until == "online" and seen["status"] == "online"):
                break
        await pc.close()
        return answer.text, seen

    process = psutil.Process(server.process.pid)
    asyncio.run(push(640, 360, until="online"))  # a normal call first: what any call costs once
    time.sleep(2)
    before = process.memory_info().rss / 1e6
    answer, seen = asyncio.run(push())
    time.sleep(2)
    grown = process.memory_info().rss / 1e6 - before
    print(f"\n4K push: server RSS {before:.0f} MB after a normal call, {grown:+.0f} MB after the 4K one ended")
    audio = answer[answer.index("m=audio") :]
    assert "a=inactive" in audio.split("m=video")[0], audio[:400]
    assert seen["status"] == "offline" and "3840x2160" in seen["reason"], seen
    assert grown < 150, f"server RSS grew {grown:.0f} MB"


def test_a_second_video_track_is_refused(server):
    offer = _offer(1, 0).replace("a=mid:0", "a=mid:0") + _offer(1, 0).split("t=0 0\r\n")[1].replace(
        "a=mid:0", "a=mid:1"
    )
    with server.client("analyst") as client:
        refused = client.post("/whip/obs", content=offer, headers={"Content-Type": "application/sdp"})
    assert refused.status_code == 400 and "2 video and 0 audio sections" in refused.json()["detail"]


@pytest.mark.timeout(120)
def test_a_peer_that_never_connects_frees_the_stream_and_call_starts_are_rate_limited(tmp_path, face_clip):
    """An offer answered and then abandoned (the peer never connects, never DELETEs) holds the stream
    only until ``open_timeout_s``; one user's call starts past ``starts_per_minute`` are 429."""
    streams = [{"id": "obs", "url": "whip://", "open_timeout_s": 3.0, "stall_timeout_s": 6.0}]
    with running(tmp_path, streams, {"calls": {"starts_per_minute": 3}}) as served:
        endpoint = f"{served.base}/whip/obs"
        token = served.token("analyst")

        async def start() -> int:
            push = WhipPush(endpoint, token, str(face_clip), audio=False)
            try:
                return (await push.start()).status_code
            finally:
                await push.stop(delete=False)  # gone before it ever connects

        assert asyncio.run(start()) == 201
        assert asyncio.run(start()) == 409  # claimed by the peer that left
        deadline = time.monotonic() + 20
        while "open_timeout_s" not in (stream(served, "obs").get("reason") or "") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "open_timeout_s" in stream(served, "obs")["reason"]
        assert asyncio.run(start()) == 201  # the claim was released at the open timeout
        with served.client("analyst") as client:
            limited = client.post("/whip/obs", content=_offer(1, 0), headers={"Content-Type": "application/sdp"})
        assert limited.status_code == 429 and "starts_per_minute" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) > 0
        assert scrape_api(served)['dfstream_calls_total{event="refused:rate"}'] == 1


@pytest.mark.timeout(120)
def test_garbage_rtp_from_a_connected_peer_is_one_log_line(server):
    """A peer that, once connected, sends 400 RTP packets of random bytes as its video: aiortc cannot
    decode them and warns per packet (498 lines in 10 s, once); the server's log has one such line."""
    import os
    import random

    import pylibsrtp
    from aiortc import RTCPeerConnection
    from aiortc.rtp import RtpPacket

    def failed_lines() -> int:
        return sum("failed to decode" in line for line in server.log.read_text(errors="replace").splitlines())

    already = failed_lines()

    async def push_garbage() -> None:
        pc = RTCPeerConnection()
        sender = pc.addTransceiver(_Pictures(320, 240, 10).track, direction="sendonly").sender
        answer = await _answered(server, pc)
        headers = {"Authorization": f"Bearer {server.token('analyst')}"}
        async with httpx.AsyncClient(timeout=30) as client:
            deadline = time.monotonic() + 30
            while stream(server, "obs")["status"] != "online" and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            payload_type = next(
                int(line.split(":")[1].split()[0]) for line in answer.text.splitlines() if "VP8/90000" in line
            )
            rng = random.Random(7)
            stamp = rng.randrange(1 << 32)

            async def send(sequence: int, i: int) -> bool:
                packet = RtpPacket(
                    payload_type=payload_type,
                    marker=1,
                    sequence_number=sequence % (1 << 16),
                    timestamp=(stamp + 3000 * i) % (1 << 32),
                    ssrc=sender._ssrc,
                    payload=os.urandom(rng.randrange(20, 1000)),
                )
                try:
                    await sender.transport._send_rtp(packet.serialize())
                except pylibsrtp.Error:  # our own SRTP refuses a number behind the track's (its replay check)
                    return False
                return True

            # the track's own numbers start at random: the first of these starts ahead of them
            for sequence in range(0, 1 << 16, 1 << 13):
                if await send(sequence, 0):
                    break
            for i in range(1, 400):
                assert await send(sequence + i, i)
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            await client.delete(urljoin(f"{server.base}/whip/obs", answer.headers["location"]), headers=headers)
        await pc.close()

    asyncio.run(push_garbage())
    assert failed_lines() - already == 1, server.log.read_text(errors="replace")[-2000:]


async def _answered(server, pc) -> httpx.Response:  # noqa: ANN001 -- an aiortc RTCPeerConnection
    """``pc``'s offer pushed to ``obs`` by an analyst: the 201 answer, set on ``pc``."""
    from aiortc import RTCSessionDescription

    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {server.token('analyst')}", "Content-Type": "application/sdp"}
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"{server.base}/whip/obs", content=pc.localDescription.sdp, headers=headers)
    assert answer.status_code == 201, answer.text
    await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    return answer
