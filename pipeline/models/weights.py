"""Published weights: the manifest (configs/models.yaml), the local cache, and pinned downloads.

Nothing here runs implicitly: loading a detector never downloads; ``pull`` does, on request, and
refuses a file whose sha256 differs from the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError
from tqdm import tqdm

from core.errors import ChecksumError, ConfigError, DownloadError, WeightsError
from core.strict import StrictModel

log = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "configs" / "models.yaml"
CHUNK = 1 << 16


class WeightsEntry(StrictModel):
    model_config = ConfigDict(frozen=True)

    name: str
    architecture: str
    modality: Literal["video", "audio"] = "video"  # a face detector's weights, or a voice model's (audio_detectors)
    # the input it was trained with: video, a preprocessing profile (PROFILES in pipeline/models/detectors/__init__.py);
    # audio, waveform_16k (raw 16 kHz mono, the voice models' only input)
    profile: str
    file: str
    url: str
    # None: not pinned yet (the publisher gives no digest and nobody has recorded one); such a
    # file is installed only when asked to, and its digest is then recorded beside it
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, gt=0)
    license: str
    description: str = ""
    trained_on: str = ""
    citation: str = ""
    requires: tuple[str, ...] = ()  # entries pulled with this one (a checkpoint's config file beside it)
    # the publisher offers the file only behind a page a script cannot fetch (a Google Drive folder):
    # ``url`` is that page, and ``pull`` says where to put the file instead of downloading it
    manual: bool = False

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None


def load_manifest(path: str | Path = MANIFEST_PATH) -> dict[str, WeightsEntry]:
    try:
        data = yaml.safe_load(Path(path).read_text())
        return {name: WeightsEntry(name=name, **entry) for name, entry in data["models"].items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the model manifest: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: invalid model manifest: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        ) from exc


def fetch_by_hand(entry: WeightsEntry, directory: Path | None = None) -> str:
    """What to do for a ``manual`` entry: where its authors publish it and where dfstream looks for it."""
    target = (directory or model_dir()) / entry.file
    return (
        f"{entry.name}: its authors publish {Path(entry.file).name} only at {entry.url}, which is not a direct "
        f"download: fetch it there (license {entry.license}) and copy it to {target}, "
        "or serve it from a mirror (--mirror / DFSTREAM_MODEL_MIRROR)"
    )


def source_url(entry: WeightsEntry) -> str:
    """The manifest URL, or the same file under $DFSTREAM_MODEL_MIRROR (a local or company mirror)."""
    mirror = os.environ.get("DFSTREAM_MODEL_MIRROR")
    return f"{mirror.rstrip('/')}/{entry.file}" if mirror else entry.url


def model_dir() -> Path:
    """Where weights are cached: $DFSTREAM_MODEL_DIR, else ~/.cache/dfstream/models."""
    env = os.environ.get("DFSTREAM_MODEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dfstream" / "models"


def search_dirs() -> list[Path]:
    """The cache, then the read-only folders of $DFSTREAM_MODEL_PATH (os.pathsep-separated), where
    an offline machine or a shared volume keeps weight files."""
    extra = [Path(p).expanduser() for p in os.environ.get("DFSTREAM_MODEL_PATH", "").split(os.pathsep) if p]
    return [model_dir(), *extra]


def find_weights(entry: WeightsEntry) -> Path | None:
    """The first copy of ``entry`` in ``search_dirs()`` whose sha256 matches, or None."""
    for directory in search_dirs():
        if verify(entry, directory):
            return directory / entry.file
    return None


def ensure_available(names: list[str], offline: bool, say: Callable[[str], None]) -> None:
    """Make sure each manifest name in ``names`` has a verified local copy: found on the search
    path, else pulled (its licence said first), unless ``offline``."""
    manifest = load_manifest()
    for name in names:
        entry = manifest[name]
        if find_weights(entry) is not None:
            continue
        if not entry.pinned:
            present = [d / entry.file for d in search_dirs() if (d / entry.file).is_file()]
            if present:  # placed by hand: nothing to check it against
                say(f"{name}: using {present[0]} unverified (the manifest pins no sha256 for it)")
                continue
            if entry.manual and not os.environ.get("DFSTREAM_MODEL_MIRROR"):
                raise WeightsError(fetch_by_hand(entry))
            raise WeightsError(
                f"{name} is not in {model_dir()}: run `dfstream models pull {name} --accept-unpinned` (license "
                f"{entry.license})"
            )
        if offline:
            raise WeightsError(
                f"{name} is not in {model_dir()} and --offline was given: run `dfstream models pull {name}`"
            )
        say(f"fetching {name} ({entry.size} bytes, license {entry.license}) from {source_url(entry)}")
        try:
            with download_progress(name) as progress:
                pull(entry, progress=progress)
        except WeightsError as exc:
            raise WeightsError(
                f"{exc}. Without internet access, copy {entry.file} into {model_dir()}, "
                f"or name its folder in DFSTREAM_MODEL_PATH"
            ) from exc


def resolve_weights(name_or_path: str | Path, manifest: dict[str, WeightsEntry] | None = None) -> Path:
    """A path that exists, or a manifest name whose file is in the cache; else a ``WeightsError``
    that says how to get it."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    manifest = manifest if manifest is not None else load_manifest()
    entry = manifest.get(str(name_or_path))
    if entry is None:
        raise WeightsError(
            f"weights {str(name_or_path)!r}: no such file, and not a name in the manifest ({', '.join(manifest)})"
        )
    for directory in search_dirs():
        if (directory / entry.file).is_file():
            return directory / entry.file
    raise WeightsError(
        f"weights {entry.name!r} are not in {model_dir()}: run `dfstream models pull {entry.name}` "
        f"or copy {entry.file} there (or set DFSTREAM_MODEL_DIR)"
    )


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_sha256(entry: WeightsEntry, directory: Path) -> str | None:
    """The manifest's digest; for an unpinned entry, the one recorded when it was first pulled."""
    if entry.sha256 is not None:
        return entry.sha256
    recorded = directory / f"{entry.file}.sha256"
    return recorded.read_text().split()[0] if recorded.is_file() else None


def verify(entry: WeightsEntry, directory: Path | None = None) -> bool:
    """True when the cached file exists with the expected sha256."""
    directory = directory or model_dir()
    path = directory / entry.file
    expected = expected_sha256(entry, directory)
    return expected is not None and path.is_file() and sha256_file(path) == expected


def pull(
    entry: WeightsEntry,
    directory: Path | None = None,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 30.0,
    accept_unpinned: bool = False,
) -> Path:
    """Download ``entry`` into the cache unless a verified copy is there; returns its path.

    The bytes go to ``*.part``, which an interrupted download leaves behind: the next pull asks
    the server for the rest (HTTP Range) instead of starting again. The file is renamed into
    place only after its size and sha256 match, so a broken download never looks like a usable
    checkpoint. An entry without a pinned sha256 is refused unless ``accept_unpinned``; its
    digest is then recorded beside it, and later pulls and verifies hold it to that.
    """
    directory = directory or model_dir()
    target = directory / entry.file
    target.parent.mkdir(parents=True, exist_ok=True)  # a file may sit in its checkpoint's folder
    if verify(entry, directory):
        return target
    if not entry.pinned and not accept_unpinned:
        raise WeightsError(
            f"{entry.name}: the manifest pins no sha256 for {entry.file}, so a download cannot be checked; "
            f"`dfstream models pull {entry.name} --accept-unpinned` fetches it and records its digest"
        )
    if entry.manual and url is None and not os.environ.get("DFSTREAM_MODEL_MIRROR"):
        raise WeightsError(fetch_by_hand(entry, directory))
    partial = target.with_name(target.name + ".part")
    source = url or source_url(entry)
    digest, received, total = _download(entry, source, partial, progress, timeout_s)
    # a publisher may give the digest without the size (OpenAI names its CLIP files by their sha256)
    if entry.pinned and ((entry.size is not None and received != entry.size) or digest != entry.sha256):
        partial.unlink(missing_ok=True)
        expected = f"{entry.size} bytes with sha256" if entry.size is not None else "sha256"
        raise ChecksumError(
            f"{entry.name}: downloaded {received} bytes with sha256 {digest[:16]}…, "
            f"expected {expected} {entry.sha256[:16]}…; file discarded"
        )
    if not entry.pinned:
        if total is not None and received != total:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{entry.name}: the server announced {total} bytes and sent {received}; file discarded")
        (directory / f"{entry.file}.sha256").write_text(f"{digest}  {entry.file}\n")
        log.warning(
            "%s is not pinned: recorded sha256 %s (%d bytes); pin it in configs/models.yaml",
            entry.name,
            digest,
            received,
        )
    partial.replace(target)
    log.info("weights %s saved to %s", entry.name, target)
    return target


@contextlib.contextmanager
def download_progress(name: str) -> Iterator[Callable[[int, int | None], None]]:
    """A ``pull`` progress callback drawing a bar (rate, ETA) on stderr; quiet when stderr is not a terminal."""
    with tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=None, file=sys.stderr) as bar:

        def show(received: int, total: int | None) -> None:
            bar.total = total
            bar.update(received - bar.n)

        yield show


def _download(
    entry: WeightsEntry,
    source: str,
    partial: Path,
    progress: Callable[[int, int | None], None] | None,
    timeout_s: float,
) -> tuple[str, int, int | None]:
    """Fetch ``source`` into ``partial``, resuming what an earlier attempt left; returns the
    sha256 and size of the whole file and the size the server announced (None if it did not)."""
    digest = hashlib.sha256()
    have = partial.stat().st_size if partial.is_file() else 0
    if entry.size is not None and have > entry.size:
        have = 0  # longer than the file can be: not a prefix of it
    request = urllib.request.Request(source, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            resumed = have > 0 and response.status == 206
            if resumed:
                with open(partial, "rb") as earlier:
                    for chunk in iter(lambda: earlier.read(CHUNK), b""):
                        digest.update(chunk)
            received = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = received + int(length) if length is not None else entry.size
            with open(partial, "ab" if resumed else "wb") as out:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, entry.size or total)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        # the .part stays: the next pull resumes from it
        raise DownloadError(f"{entry.name}: download from {source} failed: {exc}") from exc
    if length is not None and received < total:  # read(n) reports a dropped connection as a short end
        raise DownloadError(
            f"{entry.name}: download from {source} failed: the connection closed after {received} of {total} bytes "
            "(run the pull again to resume)"
        )
    return digest.hexdigest(), received, total
