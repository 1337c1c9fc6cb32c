"""The reliability suite: each scenario records the figure it measured (time to detect, time to
recover, messages lost, ...). They are printed at the end of the run and, with
DFSTREAM_RELIABILITY_REPORT=path.json, written as JSON.

    pytest tests/reliability
"""

from __future__ import annotations

import json
import os

import pytest

_FIGURES: dict[str, dict] = {}


@pytest.fixture
def figures(request):
    """figures(key=value, ...) records what this scenario measured, under the test's name."""

    def record(**values) -> None:
        _FIGURES.setdefault(request.node.name, {}).update(values)

    return record


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in _FIGURES.items():
        shown = ", ".join(f"{k}={round(v, 3) if isinstance(v, float) else v}" for k, v in values.items())
        terminalreporter.write_line(f"{name}: {shown}")
    if os.environ.get("DFSTREAM_RELIABILITY_REPORT"):
        with open(os.environ["DFSTREAM_RELIABILITY_REPORT"], "w") as out:
            json.dump(_FIGURES, out, indent=2)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory):
    """30 s of the face clip: the RTSP server ends a stream at the end of its file."""
    from stream import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("media") / "face_30s.mp4", seconds=30.0)
