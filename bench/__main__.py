"""The dfstream benchmark suite: every figure measured in one run, side by side.

    python -m bench [--quick] [--soak] [--device cpu|cuda] [--weights DIR]

Writes bench/results.json and bench/RESULTS.md. Absolute numbers depend on the machine; the
ratios (efficiency, speedups) are what the targets are about.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import psutil
import torch

from dfstream.config import parse_config
from pipeline.models.faces import FaceDetector
from pipeline.models.registry import ModelRegistry
from stream import make_sample_clip
from stream.sample import sample_frames

from .naive import naive_fps
from .rtsp_latency import Collect, measure, new_runtime
from .stages import decode_fps, detector_fps, faces_fps

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def config_for(clip: Path | None, weights: Path, device: str, streams: list[dict] | None = None, **faces) -> object:
    return parse_config({
        "streams": streams or [{"id": "bench", "url": str(clip), "pace": "asap"}],
        "faces": {"device": device, **faces},
        "detectors": [
            {"name": "meso4", "type": "meso4", "weights": str(weights / "Meso4_DF.h5"), "device": device},
            {"name": "mesoinception4", "type": "mesoinception4", "weights": str(weights / "MesoInception_DF.h5"), "device": device},
        ],
    })  # fmt: skip


def pipeline_fps(config, frames: int) -> tuple[float, int]:
    """Frames per second of the whole runtime on a file read asap (models loaded beforehand)."""
    sink = Collect()
    runtime = new_runtime(config, sink)
    start = time.perf_counter()
    asyncio.run(runtime.run())
    return frames / (time.perf_counter() - start), len(sink.verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a short run that checks the suite works (CI)")
    parser.add_argument("--soak", action="store_true", help="also run one stream for 10 minutes and report RSS growth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "models" / "mesonet")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    quick = args.quick
    stage_s = 0.5 if quick else 3.0
    n_frames = 60 if quick else 300
    results: dict = {"device": args.device, "quick": quick}
    rss_start = psutil.Process().memory_info().rss
    default_threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(Path(tmp) / "360p.mp4", seconds=n_frames / 30)
        clip720 = make_sample_clip(Path(tmp) / "720p.mp4", seconds=n_frames / 30, width=1280, height=720)
        frames = list(sample_frames(8))

        # 1. ceilings
        base = config_for(clip, args.weights, args.device)
        face_detector = FaceDetector(base.faces)
        detectors = ModelRegistry().load_configured(base.detectors)
        found = face_detector.detect(frames[:1])[0]
        items = [(f, tuple(face_detector.detect([f])[0].xyxy[0])) for f in frames[:4]]
        faces = faces_fps(face_detector, frames, [1, 4, 8], stage_s)
        dets = {name: detector_fps(d, items, [1, 4, 8, 16], stage_s) for name, d in detectors.items()}
        results["ceilings"] = {
            "decode_fps_360p": round(decode_fps(clip), 1),
            "decode_fps_720p": round(decode_fps(clip720), 1),
            "faces_fps": round(max(faces.values()), 1),
            "faces_fps_by_batch": {str(k): round(v, 1) for k, v in faces.items()},
            "detectors": {name: round(max(v.values()), 1) for name, v in dets.items()},
            "detectors_by_batch": {name: {str(k): round(x, 1) for k, x in v.items()} for name, v in dets.items()},
        }
        assert len(found), "the sample has a face"

        # 2. the pipeline against the bound of its stages sharing the CPU
        every = base.faces.detect_every
        c = results["ceilings"]
        per_frame = 1 / c["decode_fps_360p"] + 1 / (every * c["faces_fps"]) + sum(1 / v for v in c["detectors"].values())
        results["bound_fps"] = round(1 / per_frame, 1)
        fps_default, verdicts = pipeline_fps(base, n_frames)
        results["pipeline_fps"] = round(fps_default, 1)
        results["efficiency"] = round(fps_default / results["bound_fps"], 3)

        # 3. the naive loop: stock facenet-pytorch MTCNN with the same settings, the same detectors,
        # torch's default threads (the runtime shares the cores out among its stages)
        torch.set_num_threads(default_threads)
        from facenet_pytorch import MTCNN

        stock = MTCNN(keep_all=True, min_face_size=base.faces.min_face_size, thresholds=list(base.faces.thresholds), device=args.device)
        naive, naive_faces = naive_fps(clip, stock, list(detectors.values()), max_frames=n_frames)
        same_work, same_verdicts = pipeline_fps(config_for(clip, args.weights, args.device, detect_every=1), n_frames)
        results["naive_fps"] = round(naive, 1)
        results["speedup_same_work"] = round(same_work / naive, 2)
        results["speedup_default"] = round(fps_default / naive, 2)
        results["work"] = {"frames": n_frames, "naive_faces": naive_faces, "same_work_verdicts": same_verdicts,
                           "default_verdicts": verdicts}  # fmt: skip

    # 4. latency at real-time pacing over RTSP
    seconds = 4.0 if quick else 20.0
    results["latency_ms"] = {}
    results["dropped_ratio"] = {}
    sustained = 0
    for n in [1] if quick else [1, 2, 3, 4]:
        figures = measure(n, seconds, args.weights, warmup=2.0 if quick else 3.0)
        if n in (1, 2, 4):
            results["latency_ms"][str(n)] = figures["latency_ms"]
        results["dropped_ratio"][str(n)] = figures["dropped_ratio"]
        if figures["dropped_ratio"] is not None and figures["dropped_ratio"] < 0.01:
            sustained = n
    results["max_streams_realtime"] = sustained

    # 5. memory
    if args.soak:
        before = psutil.Process().memory_info().rss
        measure(1, 600.0, args.weights)
        results["rss_growth"] = round(psutil.Process().memory_info().rss / before - 1, 4)
    results["rss_bytes"] = {"start": rss_start, "end": psutil.Process().memory_info().rss}
    results["versions"] = {"python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
                           "numpy": np.__version__, "cpus": psutil.cpu_count(), "torch_threads": torch.get_num_threads()}  # fmt: skip

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(table(results))
    print(table(results))


def table(r: dict) -> str:
    c = r["ceilings"]
    rows = [
        ("decode fps 360p / 720p", f"{c['decode_fps_360p']} / {c['decode_fps_720p']}"),
        ("faces fps (by batch)", json.dumps(c["faces_fps_by_batch"])),
        *[(f"{n} crops/s (by batch)", json.dumps(v)) for n, v in c["detectors_by_batch"].items()],
        ("bound fps", r["bound_fps"]),
        ("pipeline fps (default config)", r["pipeline_fps"]),
        ("efficiency (target >= 0.85)", r["efficiency"]),
        ("naive fps", r["naive_fps"]),
        ("speedup, same work (target >= 1.3)", r["speedup_same_work"]),
        ("speedup, default config (target >= 3)", r["speedup_default"]),
        *[(f"latency ms, {n} stream(s) p50/p95/p99", "/".join(str(v) for v in (lat or {}).values())) for n, lat in r["latency_ms"].items()],
        ("dropped ratio by streams", json.dumps(r["dropped_ratio"])),
        ("max 360p30 streams in real time (target >= 2)", r["max_streams_realtime"]),
        ("rss growth over 10 min (target < 10 %)", r.get("rss_growth", "not soaked (--soak)")),
    ]
    lines = [f"# dfstream benchmark ({'quick' if r['quick'] else 'full'}, {r['device']})", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + f"\n\n{json.dumps(r['versions'])}\n"


if __name__ == "__main__":
    main()
