"""A WHIP client (RFC 9725) built on aiortc: what OBS's WHIP output does, for tests and benchmarks.

    python -m bench.whip http://127.0.0.1:8080/whip/obs --token TOKEN clip.mp4 [--seconds 30] [--no-audio]

It plays a media file in real time (aiortc's MediaPlayer decodes it with PyAV, looped), encodes it
as a browser would (VP8 or H.264, Opus) and pushes it: POST the SDP offer with the bearer token, set
the answer, send until told to stop, then DELETE the resource the server named in ``Location``.
Killed instead (SIGKILL), it is a client that vanished without a DELETE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from urllib.parse import urljoin

import httpx


class WhipPush:
    def __init__(self, endpoint: str, token: str | None, media: str, audio: bool = True, loop: bool = True):
        self.endpoint, self.token, self.media, self.audio, self.loop = endpoint, token, media, audio, loop
        self.resource: str | None = None
        self.pc = None
        self.player = None

    def _headers(self, **more: str) -> dict[str, str]:
        return {**({"Authorization": f"Bearer {self.token}"} if self.token else {}), **more}

    async def start(self, offer_sdp: str | None = None) -> httpx.Response:
        """Offer, post, answer; the server's response (201 when the push is on). ``offer_sdp``: send
        this text instead of the real offer (a malformed one, for tests)."""
        from aiortc import RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaPlayer

        self.pc = RTCPeerConnection()
        self.player = MediaPlayer(self.media, loop=self.loop)
        self.pc.addTransceiver(self.player.video, direction="sendonly")
        if self.audio and self.player.audio is not None:
            self.pc.addTransceiver(self.player.audio, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                self.endpoint,
                content=offer_sdp if offer_sdp is not None else self.pc.localDescription.sdp,
                headers=self._headers(**{"Content-Type": "application/sdp"}),
            )
        if answer.status_code == 201:
            self.resource = urljoin(self.endpoint, answer.headers["Location"])
            await self.pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        return answer

    async def stop(self, delete: bool = True) -> int | None:
        """End the push: DELETE the resource (its status), then close the connection."""
        status = None
        if delete and self.resource is not None:
            async with httpx.AsyncClient(timeout=30) as client:
                status = (await client.delete(self.resource, headers=self._headers())).status_code
        if self.pc is not None:
            await self.pc.close()
        if self.player is not None:
            for track in (self.player.video, self.player.audio):
                if track is not None:
                    track.stop()
        return status


async def _main(args: argparse.Namespace) -> int:
    push = WhipPush(args.endpoint, args.token, args.media, audio=not args.no_audio)
    answer = await push.start()
    if answer.status_code != 201:
        print(f"whip: {answer.status_code} {answer.text.strip()}", file=sys.stderr)
        await push.stop(delete=False)
        return 1
    print(f"whip: pushing to {push.resource}", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(args.seconds)
    print(f"whip: DELETE -> {await push.stop()}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("media")
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--no-audio", action="store_true")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
