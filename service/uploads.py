"""An upload, streamed from the request to a file under a name the server chooses: never held in
memory, hashed as it arrives, stopped the moment it passes the cap. Then PyAV decides what it is
(not its name or its Content-Type): a file none of whose frames decodes is refused. Whatever goes
wrong, the partial file is removed."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import ClientDisconnect, Request

from core.errors import SourceError, UploadError, one_line
from service.config import MediaLimitsConfig
from service.db.models import MediaFile
from stream.probe import Probe, probe

log = logging.getLogger(__name__)
FIELD = "file"


@dataclass(frozen=True)
class Received:
    path: Path
    original_name: str
    size: int
    sha256: str


async def receive(request: Request, folder: Path, max_bytes: int) -> Received:
    mime, params = parse_options_header(request.headers.get("content-type", ""))
    if mime != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(415, f"send the file as multipart/form-data in a field named {FIELD!r}")
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes + 1_000_000:
        raise UploadError(
            413, f"the upload is {int(declared) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.0f} MB"
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.part"
    part = _Part()
    parser = MultipartParser(params[b"boundary"], part.callbacks())
    digest = hashlib.sha256()
    size = body = 0
    try:
        with path.open("wb") as out:
            async for chunk in request.stream():
                body += len(chunk)
                parser.write(chunk)
                data = part.take()
                size += len(data)
                if size > max_bytes or body > max_bytes + 1_000_000:
                    raise UploadError(413, f"the upload passed the limit of {max_bytes / 1e6:.0f} MB and was stopped")
                if data:
                    await asyncio.to_thread(_write, out, digest, data)
            parser.finalize()
        if not part.seen:
            raise UploadError(422, f"no multipart field named {FIELD!r} with a file in it")
        if size == 0:
            raise UploadError(415, "the file is empty")
    except ClientDisconnect:
        path.unlink(missing_ok=True)
        raise UploadError(400, "the client went away before the upload ended") from None
    except UploadError:
        path.unlink(missing_ok=True)
        raise
    except ValueError as exc:  # python-multipart: a malformed body
        path.unlink(missing_ok=True)
        raise UploadError(400, f"not a valid multipart body: {one_line(exc)}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path, part.filename or "upload", size, digest.hexdigest())


def _write(out, digest, data: bytes) -> None:  # type: ignore[no-untyped-def]
    out.write(data)
    digest.update(data)


class _Part:
    """python-multipart's callbacks: the bytes of the field ``file`` (only the first such part)."""

    def __init__(self) -> None:
        self.seen = False
        self.filename = ""
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._in_file = False
        self._done = False
        self._chunks: list[bytes] = []

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: setattr(self, "_field", self._field + data[start:end]),
            "on_header_value": lambda data, start, end: setattr(self, "_value", self._value + data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def _begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        is_file = options.get(b"name") == FIELD.encode() and b"filename" in options
        self._in_file = is_file and not self._done
        if self._in_file:
            self.seen = True
            # kept for people to read, cut and cleaned; never part of a path
            name = options[b"filename"].decode("utf-8", "replace")
            self.filename = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())[:255]

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._chunks.append(data[start:end])

    def _end(self) -> None:
        if self._in_file:
            self._done = True
        self._in_file = False


def sweep_orphans(media_dir: Path, sessions: sessionmaker[Session]) -> int:
    """At start, before any upload: files in the media folder no row names -- partial uploads a
    killed process left (``*.part``), a file whose row never committed -- are removed. How many."""
    if not media_dir.is_dir():
        return 0
    with sessions() as session:
        known = {Path(p).name for p in session.scalars(select(MediaFile.storage_path))}
    orphans = [p for p in media_dir.iterdir() if p.is_file() and p.name not in known]
    for path in orphans:
        path.unlink(missing_ok=True)
    if orphans:
        log.warning("uploads: removed %d files no media row names (partial uploads of a stopped process)", len(orphans))
    return len(orphans)


def quota_left(session: Session, user_id: int, quota_bytes: int) -> int:
    """Bytes the user may still upload: ``api.upload_quota_gb`` less what their media take."""
    used = session.scalar(select(func.coalesce(func.sum(MediaFile.size), 0)).where(MediaFile.owner_id == user_id))
    return quota_bytes - int(used or 0)


def check_video(path: Path, limits: MediaLimitsConfig) -> Probe:
    """The upload probed as a video, by FFmpeg allowed only this file and ``limits.containers``;
    415 when it is not a video of those, 413 when it is over a limit of ``api.media``."""
    try:
        found = probe(str(path), options=limits.ffmpeg_options)
    except SourceError as exc:
        reason = str(exc).removeprefix(f"{path}: ")  # the server's own file name tells the client nothing
        if "Invalid argument" in reason:  # FFmpeg's answer to a demuxer off the whitelist
            raise UploadError(
                415, f"not a video in an accepted container (api.media.containers: {', '.join(limits.containers)})"
            ) from None
        if reason.startswith("cannot be read: "):
            raise UploadError(415, f"not a video PyAV can read: {reason.removeprefix('cannot be read: ')}") from None
        raise UploadError(415, f"not a video: {reason}") from None
    over = over_limits(found, limits)
    if over:
        raise UploadError(413, f"the video is over the limits of api.media: {over}")
    return found


def over_limits(found: Probe, limits: MediaLimitsConfig) -> str:
    """What of ``found`` passes ``limits`` (one line), or ''."""
    checks = (
        ("width", found.width, limits.max_width, "max_width"),
        ("height", found.height, limits.max_height, "max_height"),
        ("frame rate", float(found.fps), limits.max_fps, "max_fps"),
        ("duration", found.duration_s, limits.max_duration_s, "max_duration_s"),
        ("frames", found.frames, limits.max_frames, "max_frames"),
        ("audio sample rate", found.sample_rate, limits.max_sample_rate, "max_sample_rate"),
    )
    return "; ".join(
        f"{what} {value:g} > {limit:g} ({key})" for what, value, limit, key in checks if value and value > limit
    )
