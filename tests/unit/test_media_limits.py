"""What an upload is checked against, on real files: the limits a header declares at probe time,
and the frames themselves as they are decoded (a header can lie, or say nothing)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from core.errors import InputError
from pipeline.evaluation.datasets import spaced_video_frames
from service.config import MediaLimitsConfig
from service.uploads import over_limits
from stream.probe import probe


def mpegts(path, sizes):
    """An MPEG-TS file (its header counts no frames) with one frame of each (width, height)."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuv420p"
        for width, height in sizes:
            image = np.zeros((height, width, 3), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(*sizes[0])):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_file_without_a_frame_count_is_counted_only_up_to_the_limit(tmp_path):
    path = mpegts(tmp_path / "a.ts", [(64, 48)] * 30)
    assert probe(str(path)).container == "mpegts"
    assert len(list(spaced_video_frames(path, 4, max_frames=30))) == 4
    with pytest.raises(InputError, match="more than 29 frames"):
        list(spaced_video_frames(path, 4, max_frames=29))


def test_a_frame_over_the_size_limit_stops_the_decode(tmp_path):
    path = mpegts(tmp_path / "b.ts", [(128, 96)] * 5)
    with pytest.raises(InputError, match="frame 0 is 128x96, over the limit of 64x64"):
        list(spaced_video_frames(path, 2, max_size=(64, 64)))


def test_the_probe_limits_name_each_value_over_them(tmp_path):
    found = probe(str(mpegts(tmp_path / "c.ts", [(128, 96)] * 5)))
    assert over_limits(found, MediaLimitsConfig()) == ""
    assert over_limits(found, MediaLimitsConfig(max_width=100, max_fps=5)) == (
        "width 128 > 100 (max_width); frame rate 10 > 5 (max_fps)"
    )


def test_the_ffmpeg_options_allow_only_local_files_and_the_listed_demuxers():
    options = MediaLimitsConfig(containers=["mp4", "matroska"]).ffmpeg_options
    assert options == {"protocol_whitelist": "file", "format_whitelist": "mp4,matroska"}
