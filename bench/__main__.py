"""The dfstream benchmark suite: every figure measured in one run, side by side.

    python -m bench [--quick] [--soak] [--device cpu|cuda] [--weights DIR]

Writes bench/results.json and bench/RESULTS.md. Absolute numbers depend on the machine; the
ratios (efficiency, speedups, the default against ``BEFORE``: MTCNN, PyTorch, every face scored on
every frame) are what the targets are about.
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

from bench.stages import weights_argument
from dfstream.config import parse_config
from pipeline.judging.cadence import JudgeConfig
from pipeline.models.faces.finder import FaceDetector
from pipeline.models.registry import ModelRegistry
from pipeline.runtime.runtime import share_cpu_threads
from stream import make_sample_clip
from stream.sample import sample_frames

from . import faces as faces_bench
from . import judging, mqtt_distance
from .naive import naive_fps
from .rtsp_latency import BEFORE, Collect, measure, new_runtime
from .stages import decode_fps, detector_fps, faces_fps

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def config_for(
    clip: Path | None, weights: Path, device: str, backend: str = "auto", judge: dict | None = None, **faces
) -> object:
    return parse_config(
        {
            "streams": [{"id": "bench", "url": str(clip), "pace": "asap"}],
            "faces": {"device": device, **faces},
            "judge": judge or {},
            "detectors": [
                {
                    "name": "meso4",
                    "type": "meso4",
                    "weights": str(weights / "Meso4_DF.h5"),
                    "device": device,
                    "backend": backend,
                },
                {
                    "name": "mesoinception4",
                    "type": "mesoinception4",
                    "weights": str(weights / "MesoInception_DF.h5"),
                    "device": device,
                    "backend": backend,
                },
            ],
        }
    )


def pipeline_fps(config, frames: int) -> tuple[float, dict]:
    """Frames per second of the whole runtime on a file read asap, and the work it did: face
    detection calls, crops per model and the batch sizes it formed."""
    sink = Collect()
    runtime = new_runtime(config, sink)
    start = time.perf_counter()
    asyncio.run(runtime.run())
    fps = frames / (time.perf_counter() - start)
    report = runtime.monitor.get_performance_report()
    work = {
        "verdicts": len(sink.verdicts),
        "scored": sum(v.scored for v in sink.verdicts),
        "face_frames": report["stages"]["faces"]["items"],
        "batches": {name: b.batch_sizes for name, b in runtime.backends.models.items()},
    }
    return fps, work


def bound_for(work: dict, frames: int, ceilings: dict) -> float:
    """The fps the stages would allow doing this run's work at the batch sizes it formed (a batch
    of b crops costs b / ceiling(b), the nearest measured batch size). Each stage has one thread
    (the ceilings are measured so): the stages share the cores, and none can go faster than its
    own thread, so the bound is set by the larger of the total over the cores and the slowest stage."""
    stages = [frames / ceilings["decode_fps_360p"], work["face_frames"] / ceilings["faces_fps_by_batch"]["1"]]
    for name, sizes in work["batches"].items():
        by_batch = {int(k): v for k, v in ceilings["detectors_by_batch"][name].items()}
        stages.append(sum(b / by_batch[min(by_batch, key=lambda k: abs(k - b))] for b in sizes))
    cores = psutil.cpu_count() or 1
    return frames / max(sum(stages) / cores, max(stages))


def realtime(figures: dict) -> bool:
    """The target's definition of a stream sustained in real time."""
    lat, scored = figures["latency_ms"], figures["scored_hz_min"]
    return (
        figures["dropped_ratio"] is not None
        and figures["dropped_ratio"] < 0.01
        and lat is not None
        and lat["p99"] <= 150
        and scored is not None
        and scored >= 9.5
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a short run that checks the suite works (CI)")
    parser.add_argument("--soak", action="store_true", help="also run one stream for 10 minutes and report RSS growth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, **weights_argument())
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

        # 1. ceilings: each stage alone, each detector on every backend, with the threads the
        # runtime gives each stage (backends size their thread pools when they load)
        base = config_for(clip, args.weights, args.device)
        share_cpu_threads(len(base.detectors) + 1)
        face_detector = FaceDetector(base.faces)
        mtcnn = FaceDetector(base.faces.model_copy(update={"model": "mtcnn"}))
        detectors = ModelRegistry().load_configured(base.detectors)
        torch_config = config_for(clip, args.weights, args.device, backend="torch")
        torch_detectors = ModelRegistry().load_configured(torch_config.detectors)
        found = face_detector.detect(frames[:1])[0]
        assert len(found), "the sample has a face"
        items = [(f, tuple(face_detector.detect([f])[0].xyxy[0])) for f in frames[:4]]
        faces = faces_fps(face_detector, frames, [1, 4, 8], stage_s)
        batches = [1, 4, 8, 16]
        dets = {name: detector_fps(d, items, batches, stage_s) for name, d in detectors.items()}
        by_backend: dict = {}
        backends = ["torch"] if args.device != "cpu" else ["torch", "onnxruntime", "openvino"]
        for backend in backends:
            loaded = (
                torch_detectors
                if backend == "torch"
                else ModelRegistry().load_configured(
                    config_for(clip, args.weights, args.device, backend=backend).detectors
                )
            )
            for name, d in loaded.items():
                by_backend.setdefault(name, {})[backend] = {
                    str(b): round(v, 1) for b, v in detector_fps(d, items, [1, 4], stage_s).items()
                }
        results["ceilings"] = {
            "decode_fps_360p": round(decode_fps(clip), 1),
            "decode_fps_720p": round(decode_fps(clip720), 1),
            "faces_fps": round(max(faces.values()), 1),
            "faces_fps_by_batch": {str(k): round(v, 1) for k, v in faces.items()},
            "mtcnn_fps_by_batch": {str(k): round(v, 1) for k, v in faces_fps(mtcnn, frames, [1, 8], stage_s).items()},
            "detectors": {name: round(max(v.values()), 1) for name, v in dets.items()},
            "detectors_by_batch": {name: {str(k): round(x, 1) for k, x in v.items()} for name, v in dets.items()},
            "crops_per_s_by_backend": by_backend,
        }

        # 2. the pipeline against the bound of its stages sharing the CPU
        every = base.faces.detect_every
        c = results["ceilings"]
        per_frame = (
            1 / c["decode_fps_360p"] + 1 / (every * c["faces_fps"]) + sum(1 / v for v in c["detectors"].values())
        )
        fps_default, work = pipeline_fps(base, n_frames)
        results["pipeline_fps"] = round(fps_default, 1)
        # scoring every face on every frame at the best batch size (the figure kept from before judge rates)
        results["bound_fps_best_batch"] = round(1 / per_frame, 1)
        results["efficiency_best_batch"] = round(
            fps_default * (work["scored"] / max(work["verdicts"], 1)) / results["bound_fps_best_batch"], 3
        )
        results["bound_fps"] = round(bound_for(work, n_frames, c), 1)
        results["efficiency"] = round(fps_default / results["bound_fps"], 3)
        results["batch_histogram"] = {
            name: {str(b): sizes.count(b) for b in sorted(set(sizes))} for name, sizes in work["batches"].items()
        }

        # 3. the naive loop: stock facenet-pytorch MTCNN with the same settings, the same detectors
        # in PyTorch, torch's default threads (the runtime shares the cores out among its stages)
        torch.set_num_threads(default_threads)
        from facenet_pytorch import MTCNN

        stock = MTCNN(
            keep_all=True,
            min_face_size=base.faces.min_face_size,
            thresholds=list(base.faces.thresholds),
            device=args.device,
        )
        naive, naive_faces = naive_fps(clip, stock, list(torch_detectors.values()), max_frames=n_frames)
        same = config_for(clip, args.weights, args.device, judge={"max_rate_hz": None}, detect_every=1)
        same_work, same_done = pipeline_fps(same, n_frames)
        before_fps, _ = pipeline_fps(
            config_for(clip, args.weights, args.device, backend="torch", judge={"max_rate_hz": None}, model="mtcnn"),
            n_frames,
        )
        results["naive_fps"] = round(naive, 1)
        results["pipeline_fps_before"] = round(before_fps, 1)
        results["speedup_same_work"] = round(same_work / naive, 2)
        results["speedup_default"] = round(fps_default / naive, 2)
        results["work"] = {
            "frames": n_frames,
            "naive_faces": naive_faces,
            "same_work_verdicts": same_done["verdicts"],
            "default_verdicts": work["verdicts"],
            "default_scored": work["scored"],
            "default_face_frames": work["face_frames"],
        }

    # 4. live 360p30 RTSP streams: the most sustained in real time, the default against BEFORE, and what each costs
    seconds = 4.0 if quick else 15.0
    counts = [1] if quick else [1, 2, 3, 4, 5, 6, 8]
    results["live"] = {}
    for label, overrides in (("default", {}), ("before", BEFORE)):
        runs, sustained = {}, 0
        for n in counts:
            figures = measure(n, seconds, args.weights, warmup=2.0 if quick else 3.0, overrides=overrides)
            runs[str(n)] = figures
            if not realtime(figures):
                break
            sustained = n
        results["live"][label] = {"max_streams_realtime": sustained, "runs": runs}
    results["max_streams_realtime"] = results["live"]["default"]["max_streams_realtime"]
    results["max_streams_realtime_before"] = results["live"]["before"]["max_streams_realtime"]
    runs = results["live"]["default"]["runs"]
    results["latency_ms"] = {n: r["latency_ms"] for n, r in runs.items()}
    results["dropped_ratio"] = {n: r["dropped_ratio"] for n, r in runs.items()}
    results["cost_per_stream"] = {
        n: {"cpu_s_per_stream_s": r["cpu_s_per_stream_s"], "rss_mb_per_stream": r["rss_mb_per_stream"]}
        for n, r in runs.items()
    }

    # 5. judging at a rate, face finders, a distant broker
    judges = {**judging.at_rates([None, 10.0, 5.0]), "10.0 calm 2.0": JudgeConfig(max_rate_hz=10.0, min_rate_hz=2.0)}
    results["judging"] = judging.measure(30 if quick else 300, judges, rho=0.0)
    results["faces"] = faces_bench.measure(1 if quick else 8)
    results["mqtt_distance"] = mqtt_distance.measure([0, 100], 200 if quick else 2000)

    # 6. memory
    if args.soak:
        before = psutil.Process().memory_info().rss
        measure(1, 600.0, args.weights)
        results["rss_growth"] = round(psutil.Process().memory_info().rss / before - 1, 4)
    results["rss_bytes"] = {"start": rss_start, "end": psutil.Process().memory_info().rss}
    results["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "av": av.__version__,
        "numpy": np.__version__,
        "cpus": psutil.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(table(results))
    print(table(results))


def table(r: dict) -> str:
    c = r["ceilings"]
    live = r["live"]
    f = r["faces"]
    m = r["mqtt_distance"]
    rows = [
        ("decode fps 360p / 720p", f"{c['decode_fps_360p']} / {c['decode_fps_720p']}"),
        (
            "faces fps, BlazeFace / MTCNN (by batch)",
            f"{json.dumps(c['faces_fps_by_batch'])} / {json.dumps(c['mtcnn_fps_by_batch'])}",
        ),
        *[(f"{n} crops/s by backend (batch 1 / 4)", json.dumps(v)) for n, v in c["crops_per_s_by_backend"].items()],
        (
            "pipeline fps (default config) / before (MTCNN, torch, every frame scored)",
            f"{r['pipeline_fps']} / {r['pipeline_fps_before']}",
        ),
        (
            "efficiency at the batch sizes formed, stages sharing the cores (target >= 0.85)",
            f"{r['efficiency']} (bound {r['bound_fps']} fps; batches {json.dumps(r['batch_histogram'])})",
        ),
        (
            "efficiency, old best-batch bound",
            f"{r['efficiency_best_batch']} (bound {r['bound_fps_best_batch']} fps, scaled by the share scored)",
        ),
        ("naive fps", r["naive_fps"]),
        ("speedup, same work (target >= 1.3)", r["speedup_same_work"]),
        ("speedup, default config (target >= 5)", r["speedup_default"]),
        ("max 360p30 streams in real time, default (target >= 8)", r["max_streams_realtime"]),
        ("max 360p30 streams in real time, before (default must be >= 4x)", r["max_streams_realtime_before"]),
        *[
            (
                f"{n} stream(s): p50/p95/p99 ms, dropped, scored Hz (min track), CPU s per stream-s, MB per stream",
                f"{'/'.join(str(v) for v in (x['latency_ms'] or {}).values())}, {x['dropped_ratio']}, "
                f"{x['scored_hz_min']}, "
                f"{x['cpu_s_per_stream_s']}, {x['rss_mb_per_stream']}",
            )
            for n, x in live["default"]["runs"].items()
        ],
        *[
            (
                f"before, {n} stream(s): p50/p95/p99 ms, dropped, CPU s per stream-s",
                f"{'/'.join(str(v) for v in (x['latency_ms'] or {}).values())}, {x['dropped_ratio']}, "
                f"{x['cpu_s_per_stream_s']}",
            )
            for n, x in live["before"]["runs"].items()
        ],
        (
            "fake label later than scoring every frame, ms mean / p95 (10 Hz; 5 Hz)",
            f"{r['judging']['10.0']['onset_later_ms_mean']} / {r['judging']['10.0']['onset_later_ms_p95']}; "
            f"{r['judging']['5.0']['onset_later_ms_mean']} / {r['judging']['5.0']['onset_later_ms_p95']}",
        ),
        (
            "faces: ms per frame MTCNN / BlazeFace, agreement (IoU >= 0.5)",
            f"{f['ms_per_frame']['mtcnn']} / {f['ms_per_frame']['blazeface']}, {f['agreement_with_mtcnn']}",
        ),
        (
            "faces: recall by face width px, still (MTCNN / BlazeFace)",
            ", ".join(
                f"{s}: {v['0']['mtcnn']:.2f}/{v['0']['blazeface']:.2f}"
                for s, v in f["recall_by_face_px_and_blur"].items()
            ),
        ),
        (
            "MQTT messages/s at 100 ms RTT, one at a time / windowed (target >= 500)",
            f"{m['rtt_100ms_inflight_1']['messages_per_s']} / {m['rtt_100ms_inflight_100']['messages_per_s']}, "
            f"lost {m['rtt_100ms_inflight_100']['lost']}, gaps {m['rtt_100ms_inflight_100']['seq_gaps']}",
        ),
        ("rss growth over 10 min (target < 10 %)", r.get("rss_growth", "not soaked (--soak)")),
    ]
    lines = [
        f"# dfstream benchmark ({'quick' if r['quick'] else 'full'}, {r['device']})",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + f"\n\n{json.dumps(r['versions'])}\n" + gpu_table()


def gpu_table() -> str:
    """The CUDA figures ``python -m bench.gpu`` wrote where a GPU was lent (CI has none)."""
    path = HERE / "gpu_results.json"
    if not path.is_file():
        return ""
    g = json.loads(path.read_text())
    crops = g["crops_per_s"]
    rows = [
        *[
            (
                f"{name} crops/s by batch: CUDA fp32 / fp16 / this machine's CPU (torch)",
                f"{json.dumps(crops['cuda_fp32'][name])} / {json.dumps(crops['cuda_fp16'][name])} / "
                f"{json.dumps(crops['cpu_torch'][name])}",
            )
            for name in crops["cuda_fp32"]
        ],
        (
            "MTCNN frames/s by batch, CUDA / CPU",
            f"{json.dumps(g['mtcnn_fps_cuda'])} / {json.dumps(g['mtcnn_fps_cpu'])}",
        ),
        *[
            (
                f"runtime, {k.replace('_', ' ')} file stream(s) read asap: frames/s (mean detector batch)",
                f"{v['frames_per_s']} ({json.dumps(v['batch_mean'])})",
            )
            for k, v in g["runtime"].items()
        ],
    ]
    lines = [
        "",
        f"## GPU: {g['device']} (driver {g['driver']}, torch {g['torch']}, Python {g['python']})",
        "",
        f"`{g['command']}`; MTCNN faces on CUDA, both MesoNets on CUDA in fp16 unless named.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
