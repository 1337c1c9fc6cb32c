"""A corrupt-media corpus, generated here from seeded randomness: truncated files, byte flips in
the H.264 payload, zeroed headers, absurd dimensions, wrong extensions, files that are not video,
an empty file, an audio-only file, over MP4, Matroska and MPEG-TS. Every case decodes what it can
or ends with a one-line error and a counted metric; none crashes, none hangs, memory stays bounded."""

from __future__ import annotations

import asyncio
import gc
import random
import struct
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from stream import Source, SourceStatus, StreamConfig, make_sample_clip

CASE_TIMEOUT_S = 15.0


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = (np.sin(np.arange(16000) / 10) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _payload_start(data: bytes, suffix: str) -> int:
    """Where the compressed frames begin: past the MP4 'mdat' header, else a tenth into the file."""
    if suffix == ".mp4" and b"mdat" in data:
        return data.index(b"mdat") + 4
    return len(data) // 10


def build_corpus(root: Path) -> list[tuple[str, Path]]:
    rng = random.Random(20261124)
    cases: list[tuple[str, Path]] = []

    def add(name: str, data: bytes, suffix: str) -> None:
        path = root / f"{len(cases):03d}-{name}{suffix}"
        path.write_bytes(data)
        cases.append((name, path))

    bases = {
        suffix: make_sample_clip(root / f"base{suffix}", seconds=1.0, width=320, height=180)
        for suffix in (".mp4", ".mkv", ".ts")
    }
    for suffix, base in bases.items():
        data = base.read_bytes()
        start = _payload_start(data, suffix)
        for i in range(30):  # truncated at random offsets
            add(f"truncated{i}", data[: rng.randrange(1, len(data))], suffix)
        for i in range(35):  # random byte flips in the compressed frames
            flipped = bytearray(data)
            for _ in range(rng.choice([1, 4, 16, 64, 256])):
                at = rng.randrange(start, len(data))
                flipped[at] ^= 1 << rng.randrange(8)
            add(f"flipped{i}", bytes(flipped), suffix)
        for i, size in enumerate([4, 16, 64, 256, 1024]):  # zeroed headers
            add(f"zeroed{i}", bytes(size) + data[size:], suffix)
    mp4 = bases[".mp4"].read_bytes()
    at = mp4.index(b"avc1") + 28  # VisualSampleEntry width, height
    for w, h in [(0, 0), (65535, 65535), (1, 1), (65535, 1), (16384, 16384)]:
        add(f"avc1_{w}x{h}", mp4[:at] + struct.pack(">HH", w, h) + mp4[at + 4 :], ".mp4")
    at = mp4.index(b"tkhd") + 4 + 76  # track header width, height (16.16 fixed point)
    for w, h in [(0, 0), (65535, 65535)]:
        add(f"tkhd_{w}x{h}", mp4[:at] + struct.pack(">II", w << 16, h << 16) + mp4[at + 8 :], ".mp4")
    for suffix in (".avi", ".mkv", ".jpg", ".txt", ".mov"):  # a good MP4 with the wrong extension
        add("mp4_named" + suffix.replace(".", "_"), mp4, suffix)
    add("empty", b"", ".mp4")
    add("text", b"this is not a video\n" * 50, ".mp4")
    add("json", b'{"streams": [], "note": "not a video"}', ".mkv")
    add("random", rng.randbytes(100_000), ".mp4")
    add("random_small", rng.randbytes(100), ".ts")
    add("zeros", bytes(50_000), ".mp4")
    add("elf", Path("/bin/true").read_bytes(), ".mp4")
    add("html_404", b"<html><body><h1>404 Not Found</h1></body></html>", ".m3u8")
    add("m3u8_to_nowhere", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nmissing.ts\n#EXT-X-ENDLIST\n", ".m3u8")
    add("mp4_header_only", mp4[: mp4.index(b"mdat") if b"mdat" in mp4 else 64], ".mp4")
    add("two_files_glued", mp4 + bases[".ts"].read_bytes(), ".mp4")
    cases.append(("audio_only", _audio_only(root / "audio_only.m4a")))
    for path in bases.values():
        cases.append(("intact", path))  # the controls: every frame decodes
    return cases


async def decode_case(path: Path) -> tuple[int, Source]:
    config = StreamConfig(id="case", url=str(path), pace="asap", queue_size=4)
    frames = 0
    async with Source(config) as source:
        async for _frame in source:
            frames += 1
    return frames, source


def test_every_corrupt_file_decodes_what_it_can_or_fails_in_one_line(tmp_path, figures):
    cases = build_corpus(tmp_path)
    assert len(cases) >= 200
    process = psutil.Process()
    outcomes: dict[str, int] = {"decoded_all": 0, "decoded_some": 0, "error_no_frames": 0}
    slowest, rss = 0.0, []

    async def run_all() -> None:
        nonlocal slowest
        loop = asyncio.get_running_loop()
        for i, (name, path) in enumerate(cases):
            start = loop.time()
            try:
                frames, source = await asyncio.wait_for(decode_case(path), CASE_TIMEOUT_S)
            except TimeoutError:
                pytest.fail(f"{path.name}: no end within {CASE_TIMEOUT_S}s")
            slowest = max(slowest, loop.time() - start)
            error = source.last_error
            assert source.status is SourceStatus.OFFLINE, path.name
            if error is not None:
                assert "\n" not in error and len(error) < 400, error  # one line
                assert source.counters.values.get("errors", 0) == 1, (path.name, source.counters.values)
            if name == "intact":
                assert frames == 30 and error is None, (path.name, frames, error)
            elif frames == 0:
                assert error, f"{path.name}: no frame and no error"
            counters = source.counters.values
            if frames == 0:
                outcomes["error_no_frames"] += 1
            elif error or counters.get("decode_errors"):
                outcomes["decoded_some"] += 1
            else:
                outcomes["decoded_all"] += 1
            if i % 20 == 0:
                gc.collect()
                rss.append(process.memory_info().rss)

    asyncio.run(run_all())
    growth_mb = (rss[-1] - rss[1]) / 2**20  # after the first few cases have loaded the decoders
    figures(cases=len(cases), **outcomes, slowest_case_s=slowest, rss_growth_mb=growth_mb)
    assert growth_mb < 50


@pytest.mark.parametrize(
    "name, message",
    [("empty", "Invalid data found"), ("text", "Invalid data found"), ("audio_only", "no video stream")],
)
def test_what_is_not_video_says_so(tmp_path, name, message):
    path = dict(build_small(tmp_path))[name]
    frames, source = asyncio.run(decode_case(path))
    assert frames == 0 and message in source.last_error and source.counters.values["errors"] == 1


def build_small(root: Path) -> list[tuple[str, Path]]:
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_bytes(b"this is not a video\n" * 50)
    return [("empty", root / "empty.mp4"), ("text", root / "text.mp4"), ("audio_only", _audio_only(root / "a.m4a"))]


@pytest.mark.weights
def test_broken_files_beside_a_good_one_leave_its_verdicts_whole(weights_dir, short_clip, tmp_path):
    from pipeline.monitoring.keys import Count, Subject
    from pipeline.runtime.runtime import Runtime
    from tests.helpers import MemorySink, load_detectors, make_config

    broken = build_small(tmp_path)
    streams = [{"id": "good", "url": str(short_clip), "pace": "asap"}]
    streams += [{"id": name, "url": str(path), "pace": "asap"} for name, path in broken]
    config = make_config(weights_dir, streams)
    sink = MemorySink()
    runtime = Runtime(config, load_detectors(config), [sink])
    asyncio.run(asyncio.wait_for(runtime.run(), 120))  # files that do not loop end the run by themselves
    assert len(sink.verdicts("good")) == 60
    for name, _ in broken:
        errors = runtime.monitor.counter(Subject.stream(name), Count.SOURCE_ERRORS)
        assert sink.statuses(name)[-1] == "offline" and errors == 1, name
