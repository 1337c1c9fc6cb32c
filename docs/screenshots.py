"""Remake the README's screenshots from the real UI: runs the browser tests with
$DFSTREAM_SCREENSHOTS set, then keeps the pages people look at, shrunk under 200 KB each.

    python docs/screenshots.py        (needs Chromium, chromedriver and the MesoNet weights, as the tests do)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
KEEP = {
    "ui_grid.png": "streams",
    "ui_stream.png": "stream",
    "ui_events.png": "events",
    "ui_event.png": "event",
    "ui_media_page.png": "media",
    "overlay.png": "overlay",
    "check-a-call-page.png": "call",
    "check-a-call-compact.png": "call_compact",
}
LIMIT = 200_000


def shrink(source: Path, target: Path) -> int:
    image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if image.shape[2] == 4:  # the overlay: keep its transparency, as PNG
        cv2.imwrite(str(target.with_suffix(".png")), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        return target.with_suffix(".png").stat().st_size
    for width, quality in ((1280, 85), (1024, 80), (960, 70)):
        scaled = cv2.resize(
            image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA
        )
        cv2.imwrite(str(target.with_suffix(".jpg")), scaled, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if target.with_suffix(".jpg").stat().st_size < LIMIT:
            break
    return target.with_suffix(".jpg").stat().st_size


def main() -> int:
    with tempfile.TemporaryDirectory() as shots:
        tests = ["tests/service/test_web_ui.py", "tests/service/test_overlay.py", "tests/service/test_check_a_call.py"]
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=HERE.parent,
            env={**os.environ, "DFSTREAM_SCREENSHOTS": shots},
        )
        if run.returncode:
            return run.returncode
        for name, stem in KEEP.items():
            size = shrink(Path(shots) / name, HERE / "screenshots" / stem)
            print(f"docs/screenshots/{stem}: {size / 1000:.0f} KB")
            assert size < LIMIT, f"{stem} is {size} bytes"
    return 0


if __name__ == "__main__":
    sys.exit(main())
