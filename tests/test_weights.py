"""Weights are pulled from a real HTTP server on loopback, checked by sha256, and found again."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading

import pytest

from pipeline.errors import ChecksumError, DownloadError, WeightsError
from pipeline.weights import WeightsEntry, load_manifest, pull, resolve_weights, verify
from tests.conftest import SHARED_WEIGHTS

SHA256SUMS = SHARED_WEIGHTS / "SHA256SUMS"


@pytest.fixture
def file_server(tmp_path):
    """Serve tmp_path/www over HTTP on an ephemeral loopback port."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def entry_for(data: bytes, name: str = "tiny", file: str = "tiny.h5") -> WeightsEntry:
    return WeightsEntry(name=name, architecture="meso4", file=file, url="http://unused.invalid/x",
                        sha256=hashlib.sha256(data).hexdigest(), size=len(data), license="Apache-2.0")  # fmt: skip


def test_pull_downloads_and_verifies(file_server, tmp_path):
    root, base = file_server
    data = b"weights" * 1000
    (root / "tiny.h5").write_bytes(data)
    seen = []
    cache = tmp_path / "cache"
    path = pull(entry_for(data), cache, url=f"{base}/tiny.h5", progress=lambda got, total: seen.append((got, total)))
    assert path.read_bytes() == data and verify(entry_for(data), cache)
    assert seen[-1] == (len(data), len(data))
    (root / "tiny.h5").unlink()  # a verified copy is not fetched again
    assert pull(entry_for(data), cache, url=f"{base}/tiny.h5") == path


def test_a_tampered_file_is_discarded(file_server, tmp_path):
    root, base = file_server
    (root / "tiny.h5").write_bytes(b"evil" * 100)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="tiny: downloaded 400 bytes with sha256"):
        pull(entry_for(b"good" * 100), cache, url=f"{base}/tiny.h5")
    assert list(cache.iterdir()) == []  # neither the file nor a .part is left


def test_http_404_and_refused_port_are_download_errors(file_server, tmp_path):
    _, base = file_server
    with pytest.raises(DownloadError, match="HTTP Error 404"):
        pull(entry_for(b"x"), tmp_path, url=f"{base}/missing.h5")
    with pytest.raises(DownloadError, match="Connection refused"):
        pull(entry_for(b"x"), tmp_path, url="http://127.0.0.1:9/missing.h5")


def test_manifest_matches_the_published_digests():
    manifest = load_manifest()
    assert {"meso4_df", "meso4_f2f", "mesoinception4_df", "mesoinception4_f2f"} <= set(manifest)
    if SHA256SUMS.is_file():
        published = dict(reversed(line.split()) for line in SHA256SUMS.read_text().splitlines() if line.strip())
        for entry in manifest.values():
            assert published[entry.file] == entry.sha256


def test_resolve_weights_explains_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="run `dfstream models pull meso4_df`"):
        resolve_weights("meso4_df")
    with pytest.raises(WeightsError, match="no such file, and not a name in the manifest"):
        resolve_weights("nope.h5")
    (tmp_path / "Meso4_DF.h5").write_bytes(b"x")
    assert resolve_weights("meso4_df") == tmp_path / "Meso4_DF.h5"


@pytest.mark.weights
def test_cli_pulls_the_real_files_from_a_mirror(weights_dir, file_server, tmp_path):
    root, base = file_server
    for f in ("Meso4_DF.h5", "Meso4_F2F.h5"):
        (root / f).write_bytes((weights_dir / f).read_bytes())
    env = {"DFSTREAM_MODEL_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "pipeline.cli", "models", *a], capture_output=True, text=True, env=env)
    out = run("pull", "meso4_df", "meso4_f2f", "--mirror", base)
    assert out.returncode == 0, out.stderr
    assert "license Apache-2.0" in out.stdout and out.stdout.count("verified sha256") == 2
    listing = run("list").stdout
    assert "meso4_df" in listing and listing.count("verified") == 2 and listing.count("missing") == 2
    (tmp_path / "cache" / "Meso4_DF.h5").write_bytes(b"corrupted")
    out = run("verify")
    assert out.returncode == 1 and "meso4_df: sha256 mismatch" in out.stdout
    out = run("pull", "nope")
    assert out.returncode == 2 and "unknown model(s) ['nope']" in out.stderr
