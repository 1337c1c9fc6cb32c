"""The disk attacked by one user, against a real `dfstream serve` on loopback: uploads past their
owner's quota are refused (others still upload), and what a killed process left half-written in
the media folder is swept at the next start. (That uploads filling their budget never delete an
event is `tests/service/test_store_and_retention.py`: retention is a function of the database.)"""

from __future__ import annotations

import signal

import pytest

from tests.helpers import free_port
from tests.security.conftest import Served, write_config

pytestmark = pytest.mark.weights
QUOTA_GB = 0.0003  # 300 kB: two 2-second clips (111 kB each), not three


def upload(client, path):
    with path.open("rb") as fh:
        return client.post("/api/v1/media", files={"file": (path.name, fh, "video/mp4")})


def test_one_user_cannot_fill_the_disk_and_a_killed_upload_leaves_nothing(tmp_path, short_clip):
    assert 100_000 < short_clip.stat().st_size < QUOTA_GB * 1e9 / 2
    port = free_port()
    config = write_config(
        tmp_path,
        [{"id": "cam1", "url": "sample://astronaut", "fps": 2, "loop": True}],
        {"port": port, "upload_quota_gb": QUOTA_GB, "analysis": {"frames": 4}},
    )
    served = Served(config, port).add_users().start()
    try:
        with served.client("analyst") as analyst, served.client("admin") as admin:
            codes = [upload(analyst, short_clip).status_code for _ in range(3)]
            assert codes == [201, 201, 413], codes
            refused = upload(analyst, short_clip).json()["detail"]
            assert refused.startswith("over your upload quota of 0.0003 GB (api.upload_quota_gb): ")
            assert upload(admin, short_clip).status_code == 201  # a quota is per user
            mine = [m for m in analyst.get("/api/v1/media").json() if m["owner"] == "analyst"]
            served.wait_media(mine[0]["id"])
            assert analyst.delete(f"/api/v1/media/{mine[0]['id']}").status_code in (200, 204)
            assert upload(analyst, short_clip).status_code == 201  # room again
        served.kill(signal.SIGKILL)
        media = tmp_path / "data" / "media"
        kept = sorted(p.name for p in media.iterdir())
        (media / "0123456789abcdef.part").write_bytes(b"\0" * 50_000)  # an upload cut by the kill
        (media / "fedcba9876543210").write_bytes(b"\0" * 50_000)  # renamed, its row never committed
        served.start()
        assert sorted(p.name for p in media.iterdir()) == kept
        assert "uploads: removed 2 files no media row names" in served.log.read_text()
    finally:
        served.stop()
