"""`dfstream annotate`: a clip in, the same clip out with every face's box in its label's colour
and the verdict timeline along the bottom; every frame written; bad input a one-line error."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from pipeline.runtime.drawing import COLOURS
from tests.helpers import REPO, mesonet_specs

pytestmark = pytest.mark.weights


def dfstream(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dfstream", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_annotate_draws_every_frame_with_boxes_and_a_timeline(short_clip, weights_dir, tmp_path):
    out = tmp_path / "annotated.mp4"
    done = dfstream(
        "annotate",
        str(short_clip),
        "--out",
        str(out),
        "--detectors",
        *mesonet_specs(weights_dir),
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 60 frames" in done.stdout
    source, annotated = frames(short_clip), frames(out)
    assert len(annotated) == len(source) == 60 and annotated[0].shape == source[0].shape
    label_colours = [np.array(COLOURS[k]) for k in ("real", "uncertain", "fake")]

    def coloured(image: np.ndarray) -> int:
        return max(int((np.abs(image.astype(int) - c).sum(axis=2) < 50).sum()) for c in label_colours)

    # boxes: many more pixels of a label's colour than the source frame has
    assert all(coloured(a[:-30]) > coloured(s[:-30]) + 150 for s, a in zip(source[10:], annotated[10:]))
    # the timeline fills from the left as the clip plays: the last frame's band is coloured across
    width = annotated[0].shape[1]
    assert coloured(annotated[-1][None, -26]) > 0.8 * width and coloured(annotated[5][None, -26]) < 0.3 * width


def test_annotate_refuses_bad_input_in_one_line(tmp_path, weights_dir):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    detectors = ["--detectors", f"meso4={weights_dir / 'Meso4_DF.h5'}"]
    bad = dfstream("annotate", str(text), "--out", str(tmp_path / "o.mp4"), *detectors)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot be read" in bad.stderr
    wrong = dfstream("annotate", str(text), "--out", str(tmp_path / "o.gif"), *detectors)
    assert wrong.returncode == 2 and ("must end in .mp4" in wrong.stderr or "cannot be read" in wrong.stderr)
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "o.mp4").exists()
