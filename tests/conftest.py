"""Shared fixtures: the real MesoNet weights ($DFSTREAM_TEST_WEIGHTS), a real face photo, a loaded detector."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, TEST_WEIGHTS, free_port, wait_listening

WEIGHT_FILES = ["Meso4_DF.h5", "Meso4_F2F.h5", "MesoInception_DF.h5", "MesoInception_F2F.h5"]


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    if not os.environ.get("DFSTREAM_TEST_WEIGHTS"):
        reason = "DFSTREAM_TEST_WEIGHTS is not set: point it at the folder holding " + ", ".join(WEIGHT_FILES)
    elif not all((TEST_WEIGHTS / f).is_file() for f in WEIGHT_FILES):
        reason = f"DFSTREAM_TEST_WEIGHTS={TEST_WEIGHTS} does not hold all of " + ", ".join(WEIGHT_FILES)
    else:
        reason = None
    if reason is not None:
        if os.environ.get("DFSTREAM_REQUIRE_WEIGHTS") == "1":
            pytest.fail(reason + "; CI requires them")
        pytest.skip(reason)
    return TEST_WEIGHTS


AASIST_FILES = ["AASIST.pth", "AASIST-L.pth", "reference/inputs.npz", "reference/logits.json"]


@pytest.fixture(scope="session")
def aasist_dir() -> Path:
    """The AASIST checkpoints and their reference outputs: $DFSTREAM_TEST_AASIST, or the folder
    `aasist` beside $DFSTREAM_TEST_WEIGHTS (the workspace keeps ../shared/models/{mesonet,aasist})."""
    folder = Path(os.environ.get("DFSTREAM_TEST_AASIST") or TEST_WEIGHTS.parent / "aasist").expanduser()
    if not all((folder / f).is_file() for f in AASIST_FILES):
        reason = f"{folder} does not hold all of " + ", ".join(AASIST_FILES) + " (set DFSTREAM_TEST_AASIST)"
        if os.environ.get("DFSTREAM_REQUIRE_WEIGHTS") == "1":
            pytest.fail(reason + "; CI requires them")
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as photo

    return photo()


@pytest.fixture(scope="session")
def face_crop(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's face as MTCNN finds it (x1 181, y1 62, x2 268, y2 172), with MesoNet's margin."""
    from pipeline.models.preprocessing import crop_with_margin

    return crop_with_margin(astronaut, (181.05, 62.16, 267.75, 172.05), 0.15)


# ---- media and a real RTSP server -----------------------------------------------------------------
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = REPO / "tests" / "servers" / "rtsp_server.py"


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory) -> Path:
    """10 s of the astronaut sliding across a 640x360 frame at 30 fps, H.264 in MP4."""
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("media") / "face_360p30.mp4", seconds=10.0)


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory) -> Path:
    """2 s, 60 frames."""
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("media") / "face_2s.mp4", seconds=2.0)


@pytest.fixture(scope="session")
def sound_clips(tmp_path_factory, face_clip) -> dict[str, Path]:
    """The face clip with a sound track made here (AAC, 44.1 kHz stereo, as a camera or a call
    sends it): espeak-ng speech, sox music, pink noise, silence; and ``mute``, no audio track."""
    from bench.sounds import make_wav, mux_with_sound, tool

    for name in ("espeak-ng", "sox"):
        try:
            tool(name)
        except RuntimeError as exc:
            pytest.fail(str(exc))
    folder = tmp_path_factory.mktemp("sound")
    clips = {"mute": mux_with_sound(face_clip, None, folder / "mute.mp4", 10.0)}
    for name in ("speech", "music", "noise", "silence"):
        wav = make_wav(name, folder, seconds=10.0, rate=44_100, channels=2)
        clips[name] = mux_with_sound(face_clip, wav, folder / f"{name}.mp4", 10.0)
    return clips


class RtspServer:
    """GStreamer's RTSP server in its own process, on loopback; can be killed and restarted."""

    def __init__(self, mounts: dict[str, Path], port: int | None = None, audio: set[str] = frozenset()):
        """``audio``: the mounts whose file's AAC track is sent too."""
        self.mounts = mounts
        self.audio = audio
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{mount}"

    def start(self) -> RtspServer:
        args = [SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port)]
        for mount, clip in self.mounts.items():
            args += ["--mount", f"{mount}={clip}"] + (["--audio", mount] if mount in self.audio else [])
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_listening([self.port], self.process, "the RTSP server")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)

    def stop(self) -> None:
        self.kill()
        if self.process is not None:
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe:
                    pipe.close()


@pytest.fixture(scope="session")
def rtsp_available() -> None:
    """The real server must be installed: a missing part fails, it never skips."""
    check = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        pytest.fail(
            "GStreamer's RTSP server is missing: apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi "
            f"gstreamer1.0-plugins-good gstreamer1.0-plugins-bad ({check.stderr.strip().splitlines()[-1]})"
        )


@pytest.fixture
def rtsp_server(rtsp_available, face_clip):
    """A server with /cam1 and /cam2 serving the face clip; stopped after the test."""
    servers: list[RtspServer] = []

    def start(mounts: dict[str, Path] | None = None, port: int | None = None, audio: set[str] = frozenset()):
        server = RtspServer(mounts or {"/cam1": face_clip, "/cam2": face_clip}, port, audio).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mosquitto():
    from tests.mqtt_broker import Mosquitto

    broker = Mosquitto().start()
    yield broker
    broker.close()


@pytest.fixture
def creds(monkeypatch):
    """dfstream's own MQTT user, given the way users give it: in the environment."""
    from tests.mqtt_broker import USERS

    monkeypatch.setenv("DFSTREAM_MQTT_USERNAME", "dfstream")
    monkeypatch.setenv("DFSTREAM_MQTT_PASSWORD", USERS["dfstream"])


@pytest.fixture
def serve_folder():
    """serve_folder(root) → the base URL of a quiet HTTP server for ``root`` on loopback."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    servers = []

    def serve(root: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def file_server(tmp_path, serve_folder):
    """tmp_path/www over HTTP on an ephemeral loopback port."""
    root = tmp_path / "www"
    root.mkdir()
    return root, serve_folder(root)
