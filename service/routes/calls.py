"""Calls in over WebRTC: WHIP (RFC 9725) for OBS, GStreamer or FFmpeg pushing a programme feed to a
declared ``whip://`` stream, and the JSON twin the "Check a call" page uses to make a stream of its own.

    POST   /whip/{stream}             Authorization: Bearer <token>, Content-Type: application/sdp
                                      -> 201, the SDP answer, Location: /whip/{stream}/{session}
    DELETE /whip/{stream}/{session}   -> 200: the push ends (the stream waits for the next one)
    POST   /api/v1/calls              {"sdp": offer} -> 201 {"stream", "session", "sdp": answer}
    DELETE /api/v1/calls/{session}    -> 204: the call ends, its stream goes offline
    GET    /api/v1/calls/ice          the STUN / TURN servers (api.calls.ice_servers) for the page's offer

Both need a token with the ``write`` scope: media comes in only from an authenticated session.
Trickle ICE (PATCH) is not offered: the answer already carries every candidate (405, as RFC 9725
lets a server say)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service.auth import Principal
from service.calls import CallDesk
from service.deps import Service, get_service, require
from stream.calls import IceServerConfig

router = APIRouter(tags=["calls"])
SDP = "application/sdp"
MAX_SDP = 64 * 1024  # an offer with every codec and candidate is a few kB


def _desk(service: Service) -> CallDesk:
    if service.calls is None:
        raise HTTPException(503, "calls are not taken by this server")
    return service.calls


async def _offer(request: Request) -> str:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != SDP:
        raise HTTPException(415, f"a WHIP offer is {SDP}, not {kind or 'nothing'}")
    body = await request.body()
    if len(body) > MAX_SDP:
        raise HTTPException(413, f"an SDP offer over {MAX_SDP // 1024} kB")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the SDP offer is not UTF-8 text") from None


@router.post("/whip/{stream_id}", status_code=201, summary="WHIP: push a stream's media (SDP offer in, answer out)")
async def whip_publish(
    stream_id: str,
    request: Request,
    who: Principal = Depends(require("write")),
    service: Service = Depends(get_service),
) -> Response:
    session = await _desk(service).push(who, stream_id, await _offer(request))
    return Response(
        session.answer,
        201,
        media_type=SDP,
        headers={"Location": f"/whip/{stream_id}/{session.id}", "Cache-Control": "no-store"},
    )


@router.delete("/whip/{stream_id}/{session_id}", summary="WHIP: end a push")
async def whip_end(
    stream_id: str,
    session_id: str,
    who: Principal = Depends(require("write")),
    service: Service = Depends(get_service),
) -> Response:
    await _desk(service).end(who, session_id, stream_id)
    return Response(status_code=200)


@router.patch("/whip/{stream_id}/{session_id}", include_in_schema=False)
async def whip_trickle(stream_id: str, session_id: str) -> Response:
    return Response(status_code=405, headers={"Allow": "DELETE"})


class CallOffer(BaseModel):
    sdp: str = Field(min_length=10, max_length=MAX_SDP)


class CallAnswer(BaseModel):
    stream: str  # the call's stream id: /api/v1/streams/{stream}, the feed, the overlay
    session: str  # DELETE /api/v1/calls/{session} ends it
    sdp: str
    type: str = "answer"


@router.post(
    "/api/v1/calls", status_code=201, response_model=CallAnswer, summary="Check a call: a stream from a WebRTC offer"
)
async def start_call(
    offer: CallOffer, who: Principal = Depends(require("write")), service: Service = Depends(get_service)
) -> CallAnswer:
    session = await _desk(service).start_call(who, offer.sdp)
    return CallAnswer(stream=session.stream_id, session=session.id, sdp=session.answer)


class IceServers(BaseModel):
    ice_servers: list[IceServerConfig]


@router.get("/api/v1/calls/ice", response_model=IceServers, summary="The STUN / TURN servers a caller should use")
async def ice_servers(_: Principal = Depends(require("write")), service: Service = Depends(get_service)) -> IceServers:
    return IceServers(ice_servers=_desk(service).hub.ice_servers)


@router.delete("/api/v1/calls/{session_id}", status_code=204, summary="End a call")
async def end_call(
    session_id: str, who: Principal = Depends(require("write")), service: Service = Depends(get_service)
) -> Response:
    await _desk(service).end(who, session_id)
    return Response(status_code=204)
