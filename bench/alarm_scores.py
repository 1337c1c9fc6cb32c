"""Every face track's scores on real labelled footage, through the whole runtime: decode, the face
finder, the tracker, both MesoNets, fusion. What ``bench.alarms`` turns into false alarms per hour,
share of fakes flagged and time to flag, for any smoothing, without running the models again.

    python -m bench.alarm_scores --devset DEVSET/video --out SCORES_DIR [--finders blazeface mtcnn]

``DEVSET/video`` is the development set's video folder (``../shared/devset``: ``labels.csv`` of
path,label[,source]). Each video is read as fast as it decodes (stream time drives the tracker and
the judge rate, as a live stream's arrival time does), every track scored at ``--rate`` Hz (never
skimmed: a calm track's rate is the smoothing's business, replayed in ``bench.alarms``), nothing
smoothed. Writes ``SCORES_DIR/<finder>.json``: per video its label, duration and per track the
(stream second, fused P(fake), each model's P(fake), box) of every scored verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import time
from pathlib import Path

import av

from bench.rtsp_latency import Collect, new_runtime
from bench.stages import weights_argument
from dfstream.config import parse_config

FINDERS = ("blazeface", "mtcnn")
BATCH = 6  # videos judged at once by one runtime (as streams: faces and crops batched across them)


def load_labels(folder: Path) -> list[dict]:
    """The videos of a ``labels.csv`` (path,label[,...]) with their duration in seconds."""
    rows = []
    with open(folder / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            path = folder / row["path"]
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                seconds = (
                    float(container.duration / 1e6) if container.duration else float(stream.duration * stream.time_base)
                )
                size = (stream.width, stream.height)
            rows.append({"path": row["path"], "label": row["label"], "seconds": seconds, "size": size})
    return rows


def stream_id(index: int, path: str) -> str:
    return f"v{index}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:40]


def detectors(weights: Path) -> list[dict]:
    return [
        {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5")},
        {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5")},
    ]


def score_videos(folder: Path, videos: list[dict], finder: str, weights: Path, rate_hz: float) -> dict[str, dict]:
    """Per video path: its tracks' scored verdicts."""
    out: dict[str, dict] = {}
    for start in range(0, len(videos), BATCH):
        chunk = videos[start : start + BATCH]
        ids = {stream_id(start + i, v["path"]): v for i, v in enumerate(chunk)}
        config = parse_config(
            {
                "streams": [{"id": sid, "url": str(folder / v["path"]), "pace": "asap"} for sid, v in ids.items()],
                "faces": {"model": finder},
                "detectors": detectors(weights),
                "judge": {"max_rate_hz": rate_hz, "min_rate_hz": None},
                "smoothing": {"method": "none"},
            }
        )
        sink = Collect()
        asyncio.run(new_runtime(config, sink).run())
        for sid, video in ids.items():
            tracks: dict[int, list] = {}
            for v in sink.verdicts:
                if v.stream == sid and v.scored and v.frame_pts is not None:
                    tracks.setdefault(v.track_id, []).append(
                        [round(v.frame_pts, 4), v.raw_probability, v.models, [round(x, 1) for x in v.bbox]]
                    )
            out[video["path"]] = {**video, "tracks": {str(k): s for k, s in tracks.items()}}
        print(f"{finder}: {min(start + BATCH, len(videos))}/{len(videos)} videos", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, required=True, help="the development set's video folder (labels.csv)")
    parser.add_argument("--out", type=Path, required=True, help="where <finder>.json are written")
    parser.add_argument("--weights", type=Path, **weights_argument())
    parser.add_argument("--finders", nargs="+", choices=FINDERS, default=list(FINDERS))
    parser.add_argument("--rate", type=float, default=10.0, help="scores per second and track (the judge's max rate)")
    args = parser.parse_args()
    videos = load_labels(args.devset)
    args.out.mkdir(parents=True, exist_ok=True)
    for finder in args.finders:
        started = time.monotonic()
        scored = score_videos(args.devset, videos, finder, args.weights, args.rate)
        meta = {"finder": finder, "rate_hz": args.rate, "seconds": round(time.monotonic() - started, 1)}
        (args.out / f"{finder}.json").write_text(json.dumps({"meta": meta, "videos": scored}))
        print(f"{finder}: wrote {args.out / (finder + '.json')} in {meta['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
