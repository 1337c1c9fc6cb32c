"""Weights are pulled from a real HTTP server on loopback, checked by sha256, and found again."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading

import pytest

from core.errors import ChecksumError, DownloadError, WeightsError
from pipeline.models.weights import WeightsEntry, load_manifest, pull, resolve_weights, verify
from tests.helpers import TEST_WEIGHTS

SHA256SUMS = TEST_WEIGHTS / "SHA256SUMS"


def entry_for(data: bytes, name: str = "tiny", file: str = "tiny.h5") -> WeightsEntry:
    return WeightsEntry(
        name=name,
        architecture="meso4",
        profile="mesonet",
        file=file,
        url="http://unused.invalid/x",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        license="Apache-2.0",
    )


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
    mesonet = {"meso4_df", "meso4_f2f", "mesoinception4_df", "mesoinception4_f2f"}
    assert mesonet <= set(manifest) and list(manifest)[:4] == sorted(mesonet, key=list(manifest).index)
    assert all(manifest[name].pinned for name in mesonet)
    assert {manifest[n].license for n in manifest if n.startswith("dfb_")} == {"CC-BY-NC-4.0"}
    assert manifest["dfdc_b7_111"].license == "MIT"
    from pipeline.models.audio.aasist import SHAPES
    from pipeline.models.detectors import PROFILES
    from pipeline.models.plugins import detector_types

    for entry in manifest.values():  # each file's declared profile is the one its architecture applies
        if entry.modality == "audio":
            assert entry.architecture in SHAPES and entry.profile == "waveform_16k", entry.name
        else:
            assert detector_types()[entry.architecture].preprocessing == PROFILES[entry.profile], entry.name
    if SHA256SUMS.is_file():
        published = dict(reversed(line.split()) for line in SHA256SUMS.read_text().splitlines() if line.strip())
        for name in mesonet:
            assert published[manifest[name].file] == manifest[name].sha256


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
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "dfstream", "models", *a], capture_output=True, text=True, env=env
    )
    out = run("pull", "meso4_df", "meso4_f2f", "--mirror", base)
    assert out.returncode == 0, out.stderr
    assert "license Apache-2.0" in out.stdout and out.stdout.count("verified sha256") == 2
    lines = {line.split()[0]: line for line in run("list").stdout.splitlines()[1:]}
    assert lines["meso4_df"].endswith(" verified") and lines["meso4_f2f"].endswith(" verified")
    assert lines["mesoinception4_df"].endswith(" missing") and "Apache-2.0" in lines["meso4_df"]
    assert "unpinned" in lines["dfb_xception"] and "CC-BY-NC-4.0" in lines["dfb_xception"]
    listed = run("list").stdout  # what each was trained on, and whose work it is
    assert "gend_clip_l14 " in listed and "trained on FaceForensics++ c23; Yermakov et al." in listed
    (tmp_path / "cache" / "Meso4_DF.h5").write_bytes(b"corrupted")
    out = run("verify")
    assert out.returncode == 1 and "meso4_df: sha256 mismatch" in out.stdout
    out = run("pull", "nope")
    assert out.returncode == 2 and "unknown model(s) ['nope']" in out.stderr
    (root / "meso4_best.pth").write_bytes(b"an unpinned checkpoint")
    out = run("pull", "dfb_meso4", "--mirror", base)
    assert out.returncode == 2 and "pins no sha256" in out.stderr and "--accept-unpinned" in out.stderr
    out = run("pull", "dfb_meso4", "--mirror", base, "--accept-unpinned")
    assert out.returncode == 0 and "license CC-BY-NC-4.0" in out.stdout and "recorded sha256" in out.stdout
    assert run("verify").returncode == 1  # Meso4_DF.h5 is still the corrupted one; dfb_meso4 holds to its record


class FlakyServer:
    """Serves one file with HTTP Range support; the first ``cuts`` answers stop after ``cut_at``
    bytes, as a dropped connection does."""

    def __init__(self, data: bytes, cut_at: int = 0, cuts: int = 0, ranges: bool = True):
        self.data, self.cut_at, self.cuts, self.ranges = data, cut_at, cuts, ranges
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                wanted = self.headers.get("Range")
                outer.requests.append(wanted)
                start = int(wanted.split("=")[1].rstrip("-")) if wanted and outer.ranges else 0
                body = outer.data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.data) - 1}/{len(outer.data)}")
                self.end_headers()
                if outer.cuts > 0:
                    outer.cuts -= 1
                    self.wfile.write(body[: outer.cut_at])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weights.pth"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "server-ignores-range"])
def test_an_interrupted_download_resumes_where_it_stopped(tmp_path, ranges):
    data = bytes(range(256)) * 4000  # 1 MB
    server = FlakyServer(data, cut_at=300_000, cuts=1, ranges=ranges)
    try:
        with pytest.raises(DownloadError, match="download from .* failed"):
            pull(entry_for(data), tmp_path, url=server.url)
        assert (tmp_path / "tiny.h5.part").stat().st_size == 300_000  # kept for the next attempt
        seen = []
        path = pull(entry_for(data), tmp_path, url=server.url, progress=lambda got, total: seen.append(got))
    finally:
        server.close()
    assert path.read_bytes() == data and not (tmp_path / "tiny.h5.part").exists()
    assert server.requests == [None, "bytes=300000-"]
    assert seen[0] > 300_000 if ranges else seen[0] <= 300_000  # resumed, or started over when the server cannot


def test_an_unpinned_file_needs_consent_and_its_digest_is_recorded(tmp_path):
    data = b"unpinned weights" * 1000
    entry = WeightsEntry(
        name="zoo",
        architecture="dfb_xception",
        profile="deepfakebench",
        file="zoo.pth",
        url="http://unused.invalid/x",
        license="CC-BY-NC-4.0",
    )
    server = FlakyServer(data)
    try:
        with pytest.raises(WeightsError, match="pins no sha256 .* --accept-unpinned"):
            pull(entry, tmp_path, url=server.url)
        path = pull(entry, tmp_path, url=server.url, accept_unpinned=True)
    finally:
        server.close()
    recorded = (tmp_path / "zoo.pth.sha256").read_text().split()[0]
    assert path.read_bytes() == data and recorded == hashlib.sha256(data).hexdigest() and verify(entry, tmp_path)
    path.write_bytes(b"swapped")  # from now on the recorded digest holds it
    assert not verify(entry, tmp_path)


def test_the_voice_models_in_the_manifest_are_the_published_files(aasist_dir):
    manifest = load_manifest()
    published = dict(reversed(line.split()) for line in (aasist_dir / "SHA256SUMS").read_text().splitlines() if line)
    for name in ("aasist", "aasist_l"):
        entry = manifest[name]
        assert entry.modality == "audio" and entry.license == "MIT"
        assert published[entry.file] == entry.sha256
        assert (aasist_dir / entry.file).stat().st_size == entry.size


def test_gend_is_pulled_with_the_config_beside_it_and_held_to_the_released_digest(file_server, tmp_path, monkeypatch):
    """The config comes first, from the same upload commit; weights that are not the released file
    (here: GenD's layout with random weights) are discarded, and the detector then names the pull."""
    from core.errors import ModelLoadError
    from pipeline.models.detectors import GenDDetector
    from tests.test_model_zoo import UpstreamGenD

    root, base = file_server
    UpstreamGenD(normalize=True).save_as_released(root / "GenD_CLIP_L_14", "LinearNorm")
    env = {"DFSTREAM_MODEL_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    pull = ["models", "pull", "gend_clip_l14", "--mirror", base]
    out = subprocess.run([sys.executable, "-m", "dfstream", *pull], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "gend_clip_l14_config: the manifest pins no sha256" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "dfstream", *pull, "--accept-unpinned"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 2 and "license MIT" in out.stdout
    assert "gend_clip_l14_config: recorded sha256" in out.stdout
    assert "expected 1215928160 bytes with sha256 d76f0bdfd74a29fe…; file discarded" in out.stderr
    assert (tmp_path / "cache" / "GenD_CLIP_L_14" / "config.json").is_file()
    assert not (tmp_path / "cache" / "GenD_CLIP_L_14" / "model.safetensors").exists()
    monkeypatch.setenv("DFSTREAM_MODEL_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="run `dfstream models pull gend_clip_l14`"):
        GenDDetector(device="cpu").load_model()  # its default weights: the manifest's gend_clip_l14


def test_univfd_pulls_openais_clip_beside_its_head_and_holds_it_to_the_published_digest(file_server, tmp_path):
    """OpenAI names its CLIP file by its sha256 and gives no size: a file that is not it is discarded."""
    root, base = file_server
    (root / "UnivFD").mkdir()
    (root / "UnivFD" / "fc_weights.pth").write_bytes(b"the head")
    (root / "UnivFD" / "ViT-L-14.pt").write_bytes(b"not OpenAI's CLIP")
    env = {"DFSTREAM_MODEL_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "dfstream", "models", "pull", "univfd_clip_l14", "--mirror", base, "--accept-unpinned"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert "clip_vit_l14_openai: downloaded 17 bytes with sha256" in out.stderr
    assert "expected sha256 b8cca3fd41ae0c99…; file discarded" in out.stderr
    assert not (tmp_path / "cache" / "UnivFD" / "ViT-L-14.pt").exists()


def test_a_checkpoint_published_only_on_a_drive_page_is_placed_by_hand(tmp_path):
    """Effort's authors share a Google Drive folder: pull says where to get the file and where it goes."""
    env = {"DFSTREAM_MODEL_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "dfstream", "models", *a], capture_output=True, text=True, env=env
    )
    out = run("pull", "effort_clip_l14_ff", "--accept-unpinned")
    target = tmp_path / "cache" / "Effort" / "effort_clip_L14_trainOn_FaceForensic.pth"
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "only at https://github.com/YZY-stack/Effort-AIGI-Detection, which is not a direct download" in out.stderr
    assert f"copy it to {target}" in out.stderr and "license CC-BY-NC-4.0" in out.stderr
    target.parent.mkdir(parents=True)
    target.write_bytes(b"placed by hand")
    out = run("pull", "effort_clip_l14_ff")
    assert out.returncode == 0 and "placed by hand, unverified" in out.stdout, out.stdout + out.stderr
