"""``screen://``: the desktop as a source, for a call on the same desktop as dfstream. A real X server
(Xvfb) shows a window playing the face clip, as a call's window shows the far side; FFmpeg's x11grab
grabs a region of the display and the window by its id, and both are judged like cameras. Without a
display, or with one that is not there, the stream says so in one line and keeps retrying."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.runtime.runtime import Runtime
from stream import SourceStatus, StreamConfig
from stream.source import Source
from tests.helpers import REPO, MemorySink, load_detectors, make_config, run_for, wait_until


@pytest.fixture
def desktop(short_clip, tmp_path):
    """(display, window id): Xvfb 1280x720 with the face clip playing in a 640x360 window at (100, 80)."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is missing: apt-get install xvfb")
    number = next(n for n in range(90, 190) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    display = f":{number}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x720x24", "-nolisten", "tcp"])
    env = {**os.environ, "DISPLAY": display}
    player = None
    try:
        wait_until(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), 10, "Xvfb's socket")
        player = subprocess.Popen(
            [sys.executable, "-m", "tests.face_window", str(short_clip), "100", "80", "far side"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        window = player.stdout.readline().strip()  # shown once its id is printed
        assert window.startswith("0x"), f"the face window did not open (exit {player.poll()})"
        yield display, window
    finally:
        if player is not None:
            player.terminate()
            player.wait(10)
        xvfb.terminate()
        xvfb.wait(10)


@pytest.mark.weights
def test_a_region_and_a_window_of_the_desktop_are_judged(weights_dir, desktop):
    display, window = desktop
    config = make_config(
        weights_dir,
        [
            {"id": "desk", "url": f"screen://{display}?region=0,0,960,540&fps=15"},
            {"id": "win", "url": f"screen://{display}?window={window}&fps=15"},
        ],
    )
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(run_for(runtime, 6.0))

    for stream, (left, top), size in (("desk", (100, 80), (960, 540)), ("win", (0, 0), (640, 360))):
        verdicts = sink.verdicts(stream)
        assert len(verdicts) > 10, stream
        assert {v.frame_size for v in verdicts} == {size}, stream  # the region's or the window's pixels
        assert {v.label for v in verdicts} <= {"real", "uncertain"}  # the astronaut is a photograph
        x1, y1, x2, y2 = verdicts[-1].bbox
        # the face is inside the window's 640x360 picture, wherever the grab starts
        assert left <= x1 < x2 <= left + 640 and top <= y1 < y2 <= top + 360, (stream, verdicts[-1].bbox)
        assert 40 < x2 - x1 < 120, stream  # the astronaut's face at 360p, grabbed pixel for pixel
        assert sink.statuses(stream)[0] == "online" and sink.statuses(stream)[-1] == "offline"


@pytest.mark.parametrize(
    ("display", "message"),
    [(None, "DISPLAY is not set"), (":189", "x11grab cannot open ':189'")],
)
def test_no_display_is_one_clear_error_and_the_stream_retries(display, message, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    url = "screen://" if display is None else f"screen://{display}"
    config = StreamConfig(id="desk", url=url, retry_initial_s=0.1, retry_max_s=0.2)

    async def scenario():
        statuses = []
        async with Source(config, on_status=lambda _i, s, r: statuses.append((s, r))) as source:
            await asyncio.sleep(1.0)
        return statuses, source

    started = time.monotonic()
    statuses, source = asyncio.run(scenario())
    status, reason = statuses[0]
    assert time.monotonic() - started < 5
    assert status is SourceStatus.RECONNECTING and message in reason and "\n" not in reason
    assert source.counters.values["errors"] >= 2  # a display may come back: it keeps trying
    warnings = [r for r in caplog.records if r.name == "stream.source" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and message in warnings[0].getMessage()
