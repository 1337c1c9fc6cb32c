"""Calls pushed to dfstream over WebRTC (aiortc): a WHIP client (OBS, GStreamer, an aiortc script) or
the web UI's "Check a call" page sends an SDP offer, the ``CallHub`` answers it with a receive-only
``RTCPeerConnection`` and hands the ``Session`` to the stream that expects it (its ``Inbox``); the
stream reads the session's tracks as it would read a camera (``call_source.py``).

    hub = CallHub(ice_servers)
    inbox = hub.inbox("lobby")                   # the stream's worker: async for session in inbox.sessions(stop)
    session = await hub.publish("lobby", offer)  # the WHIP route: session.answer is the SDP answer
    await session.close("DELETE")                # or the peer vanishes, or no media comes (the source's watchdog)

One publisher per stream at a time (a second gets ``CallBusy``): two pushers into one stream would
interleave two pictures into one set of tracks. ICE gathers host candidates (loopback and LAN); STUN
and TURN servers from ``ice_servers`` add reflexive and relayed ones for calls across NAT. Answers
carry every candidate (aiortc gathers before it answers), so no trickle ICE is needed.

A peer is not trusted (``CallPolicy``): its offer is checked on its text before aiortc reads it
(sections, candidates, the networks they name), the claim on a stream is taken with no await after
the busy check, what aiortc receives is held in bounded queues (``peer_queues.py``) and what it logs
per packet goes through the rate rule.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address, ip_network

from pydantic import Field, IPvAnyNetwork

from core.errors import SourceError, one_line
from core.ratelog import RateLimitedRecords
from core.strict import StrictModel

from .peer_queues import bound_receiver

log = logging.getLogger(__name__)
# aiortc's loggers that write a line per bad packet or frame a peer sends (garbage RTP: ~50 a second)
PEER_DRIVEN_LOGGERS = (
    "aiortc.rtcrtpreceiver",
    "aiortc.rtcdtlstransport",
    "aiortc.rtcpeerconnection",
    "aiortc.rtcsctptransport",
    "aioice.ice",
)
PEER_LOG_RULE = RateLimitedRecords()


def limit_peer_logs() -> None:
    """What a peer can make aiortc write goes through the rate rule (once per logger, however often
    it is called)."""
    for name in PEER_DRIVEN_LOGGERS:
        logger = logging.getLogger(name)
        if PEER_LOG_RULE not in logger.filters:
            logger.addFilter(PEER_LOG_RULE)


class IceServerConfig(StrictModel):
    """A STUN or TURN server, as a browser's RTCIceServer says it."""

    urls: list[str] = Field(min_length=1)  # stun:stun.example.org:3478, turn:turn.example.org?transport=tcp
    username: str | None = None
    credential: str | None = None  # ${TURN_PASSWORD}


PRIVATE_NETWORKS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10")


class CallPolicy(StrictModel):
    """What a peer may send. An SDP offer is checked on its text before aiortc parses it: a parse and
    an answer cost the event loop in proportion to its media sections (690 of them, under the byte
    cap, took 2.7 s of the loop and answered 725 KB), and every candidate is an address ICE will
    send to. The media are checked as they come: a picture larger or faster than the limits ends the
    session (an 8K stream once took 11.5 GB); every queue between the peer and dfstream is bounded."""

    max_media: int = Field(2, ge=1, le=16)  # m= sections: what a call needs is one video and one audio
    # a=candidate lines, all sections together (a browser on a host with several addresses, each over
    # UDP and TCP, repeated per section, lists a dozen or two)
    max_candidates: int = Field(40, ge=0, le=256)
    # the networks a peer's candidates may name: ICE sends connectivity checks to every candidate
    # an offer lists (300 of them once made the server probe 300 addresses), so the others are
    # struck from the offer before aiortc reads it. Loopback and the private ranges by default; a
    # call across the internet needs its peers' public (or TURN) addresses added here
    ice_allow: list[IPvAnyNetwork] = Field(default_factory=lambda: [ip_network(n) for n in PRIVATE_NETWORKS])
    ice_mdns: bool = False  # keep .local candidates (aiortc then resolves them by multicast DNS)
    max_width: int = Field(1920, ge=16)  # a picture wider than this ends the session, with the reason
    max_height: int = Field(1080, ge=16)  # (either orientation: a portrait 1080x1920 phone fits)
    max_fps: float = Field(60.0, gt=0)  # pictures a second, over a second; beyond: the session ends
    # pictures (decoded) and frames (encoded) each of aiortc's queues holds; beyond, the oldest go
    queue_frames: int = Field(8, ge=1, le=256)


class CallError(SourceError):
    """A publish refused; ``reason`` is what the WHIP route's status is chosen by."""

    reason = "refused"


class OfferError(CallError):
    reason = "bad_offer"


class NoSuchStream(CallError):
    reason = "no_stream"


class CallBusy(CallError):
    reason = "busy"


class Session:
    """One peer connection and what it sends: a video track and, when offered, an audio track."""

    def __init__(
        self,
        stream_id: str,
        pc: object,
        on_end: list[Callable[[Session], None]],
        policy: CallPolicy | None = None,
    ):
        self.id = secrets.token_urlsafe(12)
        self.stream_id = stream_id
        self.pc = pc
        self.policy = policy or CallPolicy()
        self.dropped = 0  # pictures and frames aiortc's bounded queues dropped (call_source counts them)
        self.video: object | None = None  # aiortc MediaStreamTrack
        self.audio: object | None = None
        self.answer = ""
        self.started_mono = time.monotonic()
        self.ended = asyncio.Event()
        self.reason: str | None = None
        self._on_end = on_end

    async def close(self, reason: str) -> None:
        """End the session (idempotent): the peer connection closes, its tracks end."""
        if self.reason is not None:
            return
        self.reason = reason
        self.ended.set()
        log.info("%s: call session %s ended: %s", self.stream_id, self.id, reason)
        for callback in self._on_end:
            callback(self)
        # shielded: a second close() waits on the first one's future, and a waiter cancelled (the
        # stream's task, at shutdown) cancels that future, and the first close then fails on it
        await asyncio.shield(self.pc.close())  # type: ignore[attr-defined]


class Inbox:
    """Where a stream receives its sessions, one at a time; ``once``: the stream lasts one session
    (a call from the page) instead of waiting for the next publisher (a declared WHIP stream)."""

    def __init__(self, stream_id: str, once: bool):
        self.stream_id, self.once = stream_id, once
        self.current: Session | None = None
        self._next: asyncio.Queue[Session] = asyncio.Queue(maxsize=1)
        self.closed = False

    async def sessions(self, stop: asyncio.Event) -> AsyncIterator[Session]:
        """Each session as it arrives, until ``stop`` (or after the first, when ``once``)."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not self.closed:
                taking = asyncio.ensure_future(self._next.get())
                await asyncio.wait([taking, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    return
                yield taking.result()
                if self.once:
                    return
        finally:
            stopping.cancel()


def check_offer(offer_sdp: str, policy: CallPolicy) -> str:
    """The offer with only the candidates ``policy`` allows; ``OfferError`` when it is not one a call
    sends: no video, two of a kind, or more media sections or candidates than ``policy`` (one pass
    over its lines, microseconds for any offer under the byte cap)."""
    media = candidates = videos = audios = 0
    kept: list[str] = []
    for line in offer_sdp.splitlines():
        if line.startswith("m="):
            media += 1
            videos += line.startswith("m=video")
            audios += line.startswith("m=audio")
        elif line.startswith("a=candidate"):
            candidates += 1
            if not _allowed(line, policy):
                continue
        kept.append(line)
    if not videos:
        raise OfferError("the SDP offer has no video (m=video): dfstream judges faces, a call needs a picture")
    if media > policy.max_media:
        raise OfferError(f"the SDP offer has {media} media sections (m=), over the limit of {policy.max_media}")
    if videos > 1 or audios > 1:
        # a second track would be received and decoded for nobody (+41 MB a second, once)
        raise OfferError(f"the SDP offer has {videos} video and {audios} audio sections: a call sends one of each")
    if candidates > policy.max_candidates:
        raise OfferError(f"the SDP offer has {candidates} ICE candidates, over the limit of {policy.max_candidates}")
    return "\r\n".join(kept) + "\r\n"


def _allowed(candidate: str, policy: CallPolicy) -> bool:
    """Whether an ``a=candidate:`` line names an address ICE may send to."""
    fields = candidate.split()
    if len(fields) < 8:
        return False  # not a candidate aiortc could use either
    address = fields[4]
    if address.endswith(".local"):
        return policy.ice_mdns
    try:
        ip = ip_address(address)
    except ValueError:
        return False  # a host name: resolving it is contacting whoever it names
    return any(ip in network for network in policy.ice_allow)


class CallHub:
    """Every stream that takes calls, and the sessions now sending."""

    def __init__(
        self,
        ice_servers: list[IceServerConfig] | None = None,
        answer_timeout_s: float = 10.0,
        policy: CallPolicy | None = None,
        listens: bool = True,
    ):
        """``listens``: a call's sound is judged (voice models are configured); if not, it is
        refused in the answer instead of received and decoded for nobody."""
        self.listens = listens
        self.ice_servers = ice_servers or []
        self.policy = policy or CallPolicy()
        limit_peer_logs()
        self.answer_timeout_s = answer_timeout_s
        self.inboxes: dict[str, Inbox] = {}
        self.sessions: dict[str, Session] = {}

    def inbox(self, stream_id: str, once: bool = False) -> Inbox:
        """The stream's inbox, made on first ask (by its worker or by whoever created the stream)."""
        if stream_id not in self.inboxes:
            self.inboxes[stream_id] = Inbox(stream_id, once)
        return self.inboxes[stream_id]

    async def forget(self, stream_id: str) -> None:
        """The stream has ended: its inbox goes, and the session still sending to it ends."""
        inbox = self.inboxes.pop(stream_id, None)
        if inbox is not None:
            inbox.closed = True
            if inbox.current is not None:
                await inbox.current.close("the stream ended")

    async def publish(self, stream_id: str, offer_sdp: str, on_end: Callable[[Session], None] | None = None) -> Session:
        """A session for ``stream_id`` from an SDP offer, answered; ``CallError`` says why not."""
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        inbox = self.inboxes.get(stream_id)
        if inbox is None or inbox.closed:
            raise NoSuchStream(f"no stream {stream_id!r} takes calls")
        if inbox.current is not None:
            raise CallBusy(f"stream {stream_id!r} already has a publisher; DELETE its session first")
        offer_sdp = check_offer(offer_sdp, self.policy)
        servers = [RTCIceServer(s.urls, s.username, s.credential) for s in self.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        session = Session(stream_id, pc, [self._ended, *([on_end] if on_end else [])], self.policy)
        # the claim, with no await since the check above: of concurrent offers to one stream exactly
        # one is answered, the others are busy (they once raced to two publishers and a stream stuck)
        inbox.current = session

        def dropped() -> None:
            session.dropped += 1

        @pc.on("track")
        def _track(track) -> None:  # noqa: ANN001 -- aiortc's MediaStreamTrack
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            bound_receiver(receiver, track, self.policy.queue_frames, dropped)
            if track.kind == "video" and session.video is None:
                session.video = track
            elif track.kind == "audio" and session.audio is None and self.listens:
                session.audio = track

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await session.close(f"the peer connection {pc.connectionState}")

        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
                if session.video is None:
                    raise OfferError("the SDP offer sends no video track")
                for transceiver in pc.getTransceivers():
                    if transceiver.receiver.track not in (session.video, session.audio):
                        transceiver.direction = "inactive"  # sound nobody judges: not received at all
                answer = await pc.createAnswer()
                await asyncio.wait_for(pc.setLocalDescription(answer), self.answer_timeout_s)
            except CallError:
                raise
            except TimeoutError:
                raise CallError(
                    f"ICE gathering took over {self.answer_timeout_s:g}s (a STUN/TURN server unreachable?)"
                ) from None
            except Exception as exc:  # noqa: BLE001 -- aiortc's parser raises what a malformed line trips
                raise OfferError(f"the SDP offer cannot be used: {one_line(exc, with_type=True)}") from None
            if inbox.closed:
                raise NoSuchStream(f"stream {stream_id!r} ended while the offer was answered")
        except BaseException:
            # every failure gives the claim back and closes its peer connection (cancelled included)
            if inbox.current is session:
                inbox.current = None
            await asyncio.shield(pc.close())
            raise
        session.answer = pc.localDescription.sdp
        self.sessions[session.id] = session
        inbox._next.put_nowait(session)  # cannot be full: a session is put only by its stream's one claim
        log.info("%s: call session %s started", stream_id, session.id)
        return session

    def _ended(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        inbox = self.inboxes.get(session.stream_id)
        if inbox is not None and inbox.current is session:
            inbox.current = None
            while not inbox._next.empty():  # answered, never taken: it is over too
                inbox._next.get_nowait()

    async def close(self) -> None:
        """Every session ends (the server is stopping)."""
        await asyncio.gather(*(s.close("the server stopped") for s in list(self.sessions.values())))
