"""The CUDA path: detectors in fp32 and fp16 by batch size, MTCNN, and the whole runtime on many
file streams at once, on the GPU against the same machine's CPU.

    python -m bench.gpu --weights DIR [--streams 1 8 32]

Run where a GPU is lent (the ``device`` tool); prints JSON and writes bench/gpu_results.json,
which ``python -m bench`` shows in bench/RESULTS.md with the device named. Faces use MTCNN on CUDA
here (BlazeFace runs on the CPU through OpenVINO).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from dfstream.config import parse_config
from pipeline.models.faces.finder import FaceDetector, FacesConfig
from pipeline.models.registry import ModelRegistry
from pipeline.monitoring.keys import Count
from pipeline.runtime.runtime import Runtime
from stream import make_sample_clip
from stream.sample import sample_frames

from .rtsp_latency import Collect
from .stages import best_of


def detectors(weights: Path, device: str, fp16: bool = False, backend: str = "torch") -> list[dict]:
    return [
        {
            "name": "meso4",
            "type": "meso4",
            "weights": str(weights / "Meso4_DF.h5"),
            "device": device,
            "fp16": fp16,
            "backend": backend,
            "max_batch": 64,
        },
        {
            "name": "mesoinception4",
            "type": "mesoinception4",
            "weights": str(weights / "MesoInception_DF.h5"),
            "device": device,
            "fp16": fp16,
            "backend": backend,
            "max_batch": 64,
        },
    ]


def crops_per_s(weights: Path, device: str, fp16: bool, batches: list[int], seconds: float) -> dict:
    config = parse_config({"streams": [{"id": "x", "url": "sample://"}], "detectors": detectors(weights, device, fp16)})
    loaded = ModelRegistry().load_configured(config.detectors)
    out = {}
    for name, detector in loaded.items():
        tensor = torch.rand(max(batches), 3, 256, 256)

        def run(b: int) -> int:
            detector.score_tensor(tensor[:b])  # .cpu() inside waits for the GPU
            return b

        out[name] = {str(b): round(best_of(lambda b=b: run(b), seconds), 1) for b in batches}
    return out


def runtime_fps(clip: Path, weights: Path, streams: int, device: str, fp16: bool) -> dict:
    config = parse_config(
        {
            "streams": [{"id": f"s{i}", "url": str(clip), "pace": "asap"} for i in range(streams)],
            "faces": {"model": "mtcnn", "device": device, "max_batch": 32},
            "detectors": detectors(weights, device, fp16),  # torch: the CPU figure is PyTorch on the same machine
        }
    )
    sink = Collect()
    runtime = Runtime(config, ModelRegistry().load_configured(config.detectors), [sink])
    start = time.perf_counter()
    asyncio.run(runtime.run())
    seconds = time.perf_counter() - start
    frames = sum(runtime.monitor.counter(w.subject, Count.FRAMES_PROCESSED) for w in runtime.workers)
    return {
        "streams": streams,
        "frames_per_s": round(frames / seconds, 1),
        "verdicts": len(sink.verdicts),
        "batch_mean": {
            n: round(sum(b.batch_sizes) / max(len(b.batch_sizes), 1), 2) for n, b in runtime.backends.models.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    import pynvml

    pynvml.nvmlInit()
    out: dict = {
        "device": torch.cuda.get_device_name(0),
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python -m bench.gpu " + " ".join(sys.argv[1:]),
    }
    batches = [1, 4, 16, 64]
    out["crops_per_s"] = {
        "cuda_fp32": crops_per_s(args.weights, "cuda", False, batches, args.seconds),
        "cuda_fp16": crops_per_s(args.weights, "cuda", True, batches, args.seconds),
        "cpu_torch": crops_per_s(args.weights, "cpu", False, batches[:3], args.seconds),
    }
    print(json.dumps(out), flush=True)  # each part as it is done: a failure later keeps these
    frames = list(sample_frames(8))
    for device in ("cuda", "cpu"):
        mtcnn = FaceDetector(FacesConfig(model="mtcnn", device=device))
        out[f"mtcnn_fps_{device}"] = {
            str(b): round(best_of(lambda b=b: len(mtcnn.detect(frames[:b])), args.seconds), 1) for b in (1, 8)
        }
        print(json.dumps({f"mtcnn_fps_{device}": out[f"mtcnn_fps_{device}"]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(Path(tmp) / "clip.mp4", seconds=10.0)
        out["runtime"] = {}
        for n in args.streams:
            out["runtime"][f"cuda_fp16_{n}"] = runtime_fps(clip, args.weights, n, "cuda", True)
            print(json.dumps({f"cuda_fp16_{n}": out["runtime"][f"cuda_fp16_{n}"]}), flush=True)
        out["runtime"]["cpu_1"] = runtime_fps(clip, args.weights, 1, "cpu", False)
    print(json.dumps(out, indent=1))
    # the suite's RESULTS.md shows these beside the CPU figures
    (Path(__file__).resolve().parent / "gpu_results.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
