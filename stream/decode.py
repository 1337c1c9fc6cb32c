"""Decode a media file into Frames with PyAV (the file source of the runtime builds on this)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av

from .errors import SourceError
from .frame import Frame


def iter_file_frames(path: str | Path, stream_id: str = "file", max_frames: int | None = None) -> Iterator[Frame]:
    """Yield the video frames of ``path`` as RGB Frames, stamped at decode.

    Raises ``SourceError`` naming the file when it cannot be opened or has no video stream;
    corrupt packets end decoding with a ``SourceError`` after the frames that did decode.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"{path}: cannot open: {exc}") from exc
    with container:
        if not container.streams.video:
            raise SourceError(f"{path}: no video stream")
        video = container.streams.video[0]
        try:
            for seq, av_frame in enumerate(container.decode(video)):
                if max_frames is not None and seq >= max_frames:
                    break
                yield Frame(
                    stream_id=stream_id,
                    seq=seq,
                    pts=float(av_frame.pts * av_frame.time_base) if av_frame.pts is not None else None,
                    arrival_ts=time.time(),
                    arrival_mono=time.monotonic(),
                    image=av_frame.to_ndarray(format="rgb24"),
                )
        except av.error.FFmpegError as exc:
            raise SourceError(f"{path}: decoding failed: {exc}") from exc
