"""The analysis queue under pressure, against a real `dfstream serve`: an upload refused because the
queue is full is not stored (nothing waits that was not accepted), and a backlog larger than the
queue, left in the database by an earlier process, neither stops `serve` from starting (it died
with asyncio.QueueFull before) nor is lost: every job of it runs."""

from __future__ import annotations

import sqlite3

import pytest

pytestmark = pytest.mark.weights


def upload(client, clip):
    with clip.open("rb") as fh:
        return client.post("/api/v1/media", files={"file": (clip.name, fh, "video/mp4")})


def test_a_full_queue_refuses_uploads_without_storing_them_and_a_big_backlog_still_starts(serve, face_clip):
    served = serve(
        [{"id": "cam1", "url": "sample://astronaut", "fps": 2, "loop": True}],
        {"analysis": {"frames": 48, "workers": 1, "queue": 1}},
    )
    with served.client("analyst") as analyst:
        answers = [upload(analyst, face_clip) for _ in range(4)]  # one runs, one waits, the rest find it full
        codes = [a.status_code for a in answers]
        assert codes[:2] == [201, 201] and 503 in codes[2:], codes
        refused = [a for a in answers if a.status_code == 503]
        assert all("analyses are waiting" in a.json()["detail"] for a in refused)
        listed = analyst.get("/api/v1/media").json()
        assert len(listed) == codes.count(201)  # the refused left no row
    files = sorted(p.name for p in (served.config.parent / "data" / "media").iterdir())
    assert len(files) == codes.count(201), files  # ... and no file

    # the previous process left more queued jobs than the queue holds (a crash, an older version)
    served.stop()
    database = served.config.parent / "data" / "dfstream.db"
    with sqlite3.connect(database) as db:
        (template,) = db.execute("SELECT * FROM media_files ORDER BY id LIMIT 1").fetchall()
        columns = [c[1] for c in db.execute("PRAGMA table_info(media_files)")]
        row = dict(zip(columns, template))
        for _ in range(3):
            row |= {"id": None, "status": "queued", "progress": 0.0, "started_at": None, "finished_at": None}
            names = ", ".join(row)
            db.execute(f"INSERT INTO media_files ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        waiting = [i for (i,) in db.execute("SELECT id FROM media_files WHERE status IN ('queued', 'running')")]
    assert len(waiting) >= 4  # more than the queue's one place
    served.start()
    for media_id in waiting:
        assert served.wait_media(media_id, timeout=240)["status"] == "done"
    assert "QueueFull" not in served.log.read_text()
