"""Labelled media for ``dfstream eval`` and ``dfstream calibrate``.

Three layouts, recognised in this order:

- a CSV file of ``path,label[,...]`` rows (further columns ignored; label ``real``/``fake`` or
  ``0``/``1``; a header row is allowed; relative paths are relative to the CSV's folder);
- FaceForensics++: ``original_sequences/**`` is real, ``manipulated_sequences/**`` is fake;
- a folder holding ``real/`` and ``fake/``, searched recursively.

Items are videos or still images, sorted by path so that every run sees them in the same order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from core.errors import ConfigError, InputError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}  # judged by voice models only
LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}


@dataclass(frozen=True)
class Item:
    path: Path
    label: int  # 1 = fake

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES

    @property
    def is_audio(self) -> bool:
        return self.path.suffix.lower() in AUDIO_SUFFIXES


def load_dataset(location: str | Path) -> list[Item]:
    root = Path(location)
    if root.is_file() and root.suffix.lower() == ".csv":
        return _from_csv(root)
    if not root.is_dir():
        raise ConfigError(
            f"{root}: no such dataset (a folder with real/ and fake/, a FaceForensics++ tree, or a CSV of path,label)"
        )
    if (root / "original_sequences").is_dir() and (root / "manipulated_sequences").is_dir():
        items = [Item(p, 0) for p in _media(root / "original_sequences")] + [
            Item(p, 1) for p in _media(root / "manipulated_sequences")
        ]
    elif (root / "real").is_dir() and (root / "fake").is_dir():
        items = [Item(p, 0) for p in _media(root / "real")] + [Item(p, 1) for p in _media(root / "fake")]
    else:
        raise ConfigError(
            f"{root}: expected real/ and fake/ folders, or original_sequences/ and manipulated_sequences/"
        )
    if not items:
        raise ConfigError(f"{root}: no videos, images or audio files found")
    return sorted(items, key=lambda item: str(item.path))


def _media(folder: Path) -> list[Path]:
    known = VIDEO_SUFFIXES | IMAGE_SUFFIXES | AUDIO_SUFFIXES
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in known]


def _from_csv(path: Path) -> list[Item]:
    items = []
    with open(path, newline="") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            if not row or (number == 1 and len(row) > 1 and row[1].strip().lower() == "label"):
                continue
            # columns after the label (a source, a note: the development set's labels.csv has one) are kept out
            if len(row) < 2 or row[1].strip().lower() not in LABELS:
                raise ConfigError(
                    f"{path}:{number}: expected path,label[,...] with label real, fake, 0 or 1; got {row!r}"
                )
            media = Path(row[0].strip())
            items.append(Item(media if media.is_absolute() else path.parent / media, LABELS[row[1].strip().lower()]))
    if not items:
        raise ConfigError(f"{path}: no rows")
    return sorted(items, key=lambda item: str(item.path))


def spaced_frames(item: Item, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """``count`` evenly spaced frames (index, RGB array) of a video, or the image itself."""
    if not item.is_video:
        import cv2

        image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"{item.path}: not a readable image")
        yield 0, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return
    yield from spaced_video_frames(item.path, count)


def spaced_video_frames(
    path: Path,
    count: int,
    options: dict[str, str] | None = None,
    max_frames: int | None = None,
    max_size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """``count`` evenly spaced frames (index, RGB array) of the first video stream of ``path``.
    ``options`` go to FFmpeg's open; a file of more than ``max_frames`` frames, or one with a frame
    larger than ``max_size`` (width, height) anywhere, raises InputError: what was probed from its
    header is not trusted to the end."""
    with av.open(str(path), options=options or {}) as container:
        total = container.streams.video[0].frames
        if not total:  # the container does not say (MPEG-TS, MKV): count its packets, then start again
            total = 0
            for packet in container.demux(video=0):
                total += 1 if packet.size else 0
                if max_frames is not None and total > max_frames:
                    break
            container.seek(0)
        if max_frames is not None and total > max_frames:
            raise InputError(f"the video has more than {max_frames} frames")
        if total <= 0:
            return
        wanted = sorted({int(i) for i in np.linspace(0, total - 1, min(count, total))})
        for index, frame in enumerate(container.decode(video=0)):
            if max_size is not None and (frame.width > max_size[0] or frame.height > max_size[1]):
                raise InputError(
                    f"frame {index} is {frame.width}x{frame.height}, over the limit of {max_size[0]}x{max_size[1]}"
                )
            if index == wanted[0]:
                yield index, frame.to_ndarray(format="rgb24")
                wanted.pop(0)
                if not wanted:
                    return
