"""Media as a weapon, against a real `dfstream serve` on loopback: an upload that would make FFmpeg
read other files of the server (an HLS playlist, an ffconcat list), a video over the size or length
limits, a job that runs too long, a file that kills the process at every try (played by killing it
twice mid-job), and `queued` rows the queue never saw."""

from __future__ import annotations

import json
import signal
import sqlite3
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stream import make_sample_clip
from tests.helpers import free_port, wait_until
from tests.security.conftest import Served, running, write_config

pytestmark = pytest.mark.weights
STREAM = {"id": "cam1", "url": "sample://astronaut", "fps": 2, "loop": True}


def slow_detector(folder: Path, delay_s: float) -> dict:
    """The scripted detector, ``delay_s`` per face: a job that takes a known while."""
    script = folder / "slow.json"
    script.write_text(json.dumps({"base": 0.05, "fake": 0.95, "windows": [], "delay_s": delay_s}))
    return {"name": "scripted", "type": "scripted", "weights": str(script)}


def set_delay(folder: Path, delay_s: float) -> None:
    script = folder / "slow.json"
    script.write_text(json.dumps({**json.loads(script.read_text()), "delay_s": delay_s}))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media_attacks")
    api = {
        "media": {"max_width": 1280, "max_height": 720, "max_duration_s": 30},
        "analysis": {"frames": 16, "workers": 1, "job_timeout_s": 6, "rescan_s": 1},
    }
    with running(folder, [STREAM], api, detectors=[slow_detector(folder, 0.0)]) as server:
        yield server


def upload(client, path: Path, name: str | None = None):
    with path.open("rb") as fh:
        return client.post("/api/v1/media", files={"file": (name or path.name, fh, "video/mp4")})


def stored_files(served: Served) -> list[str]:
    media = served.config.parent / "data" / "media"
    return sorted(p.name for p in media.iterdir()) if media.is_dir() else []


def secret_video(path: Path) -> Path:
    """A video outside the server's data folder, which no client may make it read (MPEG-TS)."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 10 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_an_uploaded_playlist_cannot_make_ffmpeg_read_the_servers_files(served, tmp_path):
    """An ffconcat list names files beside it -- in the media folder, other people's uploads; an HLS
    playlist names any path. FFmpeg unrestricted follows both."""
    secret = secret_video(tmp_path / "secret.ts")
    concat = tmp_path / "0123abcd"  # named as the server names an upload
    concat.write_text("ffconcat version 1.0\nfile 'secret.ts'\n")
    with av.open(str(concat)) as opened:  # the attack is real: this reads the other file
        assert opened.format.name == "concat" and opened.streams.video[0].width == 320
    playlist = tmp_path / "playlist.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{secret}\n#EXT-X-ENDLIST\n")
    before = stored_files(served)
    with served.client("analyst") as analyst:
        answer = upload(analyst, concat, "holiday.mp4")  # the name claims a video
        assert answer.status_code == 415, answer.text
        assert answer.json()["detail"] == (
            "not a video in an accepted container (api.media.containers: mov, mp4, matroska, webm, avi, mpegts, "
            "flv, ogg, mpeg, asf, gif, h264, hevc, ivf, nut)"
        )
        answer = upload(analyst, playlist, "holiday.m3u8")
        assert answer.status_code == 415 and answer.json()["detail"].startswith("not a video"), answer.text
        assert str(secret) not in answer.text
        assert analyst.get("/api/v1/media").json() == []
    assert stored_files(served) == before  # nothing of them was kept
    assert "Traceback" not in served.log.read_text()


def test_a_video_over_the_size_or_length_limits_is_refused_before_it_is_stored(served, tmp_path):
    wide = make_sample_clip(tmp_path / "wide.mp4", seconds=1.0, fps=10, width=1920, height=1080)
    long = make_sample_clip(tmp_path / "long.mp4", seconds=40.0, fps=5, width=160, height=96)
    with served.client("analyst") as analyst:
        answer = upload(analyst, wide)
        assert answer.status_code == 413
        assert answer.json()["detail"] == (
            "the video is over the limits of api.media: width 1920 > 1280 (max_width); height 1080 > 720 (max_height)"
        )
        answer = upload(analyst, long)
        assert answer.status_code == 413 and "duration 40 > 30 (max_duration_s)" in answer.json()["detail"]
        assert analyst.get("/api/v1/media").json() == []
    assert stored_files(served) == []


def test_a_job_past_its_time_limit_fails_saying_so_and_the_next_runs(served, short_clip):
    set_delay(served.config.parent, 1.0)  # 16 faces at 1 s each: past the limit of 6 s
    try:
        with served.client("analyst") as analyst:
            slow = upload(analyst, short_clip).json()["id"]
            found = served.wait_media(slow, timeout=60)
            assert found["status"] == "failed"
            assert found["error"] == "the analysis passed its limit of 6 s (api.analysis.job_timeout_s)"
            set_delay(served.config.parent, 0.0)
            quick = upload(analyst, short_clip).json()["id"]
            assert served.wait_media(quick, timeout=60)["status"] == "done"  # the worker went on
            metrics = analyst.get("/metrics").text
            assert 'dfstream_analysis_jobs_total{outcome="failed"}' in metrics
    finally:
        set_delay(served.config.parent, 0.0)


def test_queued_rows_the_queue_never_held_are_picked_up(served, short_clip):
    """A row written `queued` by another process sharing the database (or left by a retry that found
    the queue full) is found by the re-scan, not only at the next start."""
    with served.client("analyst") as analyst:
        first = upload(analyst, short_clip).json()["id"]
        assert served.wait_media(first, timeout=60)["status"] == "done"
    database = served.config.parent / "data" / "dfstream.db"
    with sqlite3.connect(database) as db:
        columns = [c[1] for c in db.execute("PRAGMA table_info(media_files)")]
        row = dict(zip(columns, db.execute("SELECT * FROM media_files WHERE id = ?", (first,)).fetchone()))
        row |= {"id": None, "status": "queued", "progress": 0.0, "attempts": 0, "finished_at": None}
        cursor = db.execute(
            f"INSERT INTO media_files ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
        added = cursor.lastrowid
    assert served.wait_media(added, timeout=30)["status"] == "done"


def test_a_file_that_kills_the_process_twice_is_failed_not_retried_for_ever(tmp_path, short_clip):
    """The crash loop of the finding: every start resumed every `running` row, so a file that
    OOM-kills the process killed it at every start. SIGKILL mid-job plays that file."""
    port = free_port()
    config = write_config(
        tmp_path,
        [STREAM],
        {"port": port, "analysis": {"frames": 16, "workers": 1, "max_attempts": 2}},
        detectors=[slow_detector(tmp_path, 2.0)],  # 32 s a job: time to kill it mid-way
    )
    served = Served(config, port).add_users().start()
    try:
        with served.client("analyst") as analyst:
            media_id = upload(analyst, short_clip).json()["id"]
        for attempt in (1, 2):
            served.wait_media(media_id, until=("running",), timeout=60)
            with served.client("viewer") as viewer:
                wait_until(lambda: viewer.get(f"/api/v1/media/{media_id}").json()["attempts"] == attempt, 30, "start")
            served.kill(signal.SIGKILL)
            served.start()
        found = served.wait_media(media_id, timeout=60)
        assert found["status"] == "failed" and found["attempts"] == 2
        assert found["error"].startswith("its analysis was started 2 times and the process stopped during each")
        with served.client("viewer") as viewer:
            assert viewer.get("/readyz").status_code in (200, 503)  # serving: it started, whatever the file
        set_delay(tmp_path, 0.0)
        with served.client("analyst") as analyst:  # and the queue works for the next file
            assert served.wait_media(upload(analyst, short_clip).json()["id"], timeout=60)["status"] == "done"
        served.kill(signal.SIGTERM)
    finally:
        served.stop()
    assert "Traceback" not in served.log.read_text()
