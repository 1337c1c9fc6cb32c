"""CPU inference runners for PyTorch models, face detectors and voice models alike: the loaded
module exported to ONNX and run by ONNX Runtime or OpenVINO, checked against PyTorch at load.

Measured on the 2-core development machine (``python -m bench``, crops/s by backend): the MesoNets run 1.5-3x
faster per crop in either than in PyTorch at small batches. OpenVINO's CPU plugin lowers its
precision by itself on some CPUs (0.29 off in P(fake) there), so it is always asked for f32. A
backend whose P(fake) differs from PyTorch's by more than ``TOLERANCE`` on a fixed input is refused:
the detector does not load, with the difference in the message.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError, ModelLoadError
from pipeline.models.devices import BackendName
from pipeline.models.weights import model_dir

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]  # a float32 batch (NCHW, or N x samples) → the module's output

TOLERANCE = 1e-4  # max |ΔP(fake)| against PyTorch on the check input


def compile_module(
    module: nn.Module,
    backend: BackendName,
    sample_shape: tuple[int, ...],
    cache_name: str,
    name: str,
    check: Callable[[Runner], float],
) -> tuple[Runner, float]:
    """``module`` (eval, float32, on the CPU) as a ``backend`` runner that passed ``check`` (which
    returns its error or raises ``ModelLoadError``); its input is a batch of ``sample_shape`` (CHW
    for an image, samples for a waveform). The ONNX file is cached under ``cache_name``
    (which must change with the weights) in the weights cache; a cached file that does not load or
    does not pass is exported again once."""
    path = _cached(cache_name)
    if path.is_file():
        try:
            runner = onnx_runner(path, backend)
            return runner, check(runner)
        except Exception as exc:
            log.warning("%s: the cached export %s is unusable (%s); exporting again", name, path, exc)
            path.unlink(missing_ok=True)
    path = _export(module, sample_shape, path, name)
    runner = onnx_runner(path, backend)
    return runner, check(runner)


def onnx_runner(path: Path, backend: str, device: str = "cpu", output: str | None = None, half: bool = False) -> Runner:
    """An ONNX file as a runner: ONNX Runtime (its CUDA execution provider on a GPU, or its TensorRT
    one: ``tensorrt``, ``half`` letting TensorRT build fp16 kernels) or OpenVINO on the CPU;
    ``output``: the output it returns (None: the first)."""
    threads = torch.get_num_threads()  # the share ``share_cpu_threads`` gave each inference thread
    if backend in ("onnxruntime", "tensorrt"):
        import onnxruntime as ort

        providers = _providers(ort.get_available_providers(), path, backend, device, half)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=providers)
        input_name = session.get_inputs()[0].name
        outputs = None if output is None else [output]
        return lambda batch: session.run(outputs, {input_name: batch})[0]
    if backend == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(path),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        port = compiled.output(output) if output is not None else compiled.output(0)
        request = compiled.create_infer_request()  # one: the detector's batcher calls from one thread
        return lambda batch: np.array(request.infer([batch])[port])
    raise ConfigError(f"unknown backend {backend!r}")


def _providers(available: list[str], path: Path, backend: str, device: str, half: bool) -> list:
    """ONNX Runtime's execution providers for ``backend`` on ``device``, best first, the CPU last."""
    if backend == "tensorrt" and not device.startswith("cuda"):
        raise ConfigError(f"backend tensorrt runs on a GPU; the device here is {device} (use device: cuda)")
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    wanted = "TensorrtExecutionProvider" if backend == "tensorrt" else "CUDAExecutionProvider"
    if wanted not in available or "CUDAExecutionProvider" not in available:
        raise ModelLoadError(
            f"{path.name}: device {device}, backend {backend}, but this ONNX Runtime has no {wanted} "
            f"(it has {', '.join(available)}; install onnxruntime-gpu{' with TensorRT' * (backend == 'tensorrt')}, "
            "or use device: cpu)"
        )
    index = int(device.partition(":")[2] or 0)
    cuda = ("CUDAExecutionProvider", {"device_id": index})
    if backend != "tensorrt":
        return [cuda, "CPUExecutionProvider"]
    # TensorRT builds an engine per input shape on first use (minutes for a ViT): cached beside the
    # weights' cache, so a restart reuses it; layers TensorRT cannot take fall back to CUDA
    engines = model_dir() / "tensorrt"
    engines.mkdir(parents=True, exist_ok=True)
    options = {
        "device_id": index,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engines),
        "trt_fp16_enable": half,
    }
    return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]


def check_against_torch(name: str, backend: str, torch_p: np.ndarray, backend_p: np.ndarray) -> float:
    """The largest |ΔP(fake)| (for a voice model, P(spoof)); raises ``ModelLoadError`` beyond ``TOLERANCE``."""
    worst = float(np.max(np.abs(torch_p - backend_p)))
    if not np.isfinite(worst) or worst > TOLERANCE:
        raise ModelLoadError(
            f"{name}: backend {backend} gives P(fake) up to {worst:.2g} away from PyTorch on the check input "
            f"(limit {TOLERANCE:g}); use backend: torch"
        )
    return worst


def _cached(cache_name: str) -> Path:
    return model_dir() / "compiled" / f"{cache_name}.onnx"


def _export(module: nn.Module, sample_shape: tuple[int, ...], path: Path, name: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only cache: export for this run only
        path = Path(tempfile.mkdtemp(prefix="dfstream-onnx-")) / path.name
    sample = torch.zeros(1, *sample_shape)
    partial = path.with_suffix(".partial")
    try:
        with warnings.catch_warnings():
            # the TorchScript exporter (the torch.export one needs onnxscript, not a dependency); its
            # deprecation notice would be printed at every first start
            warnings.simplefilter("ignore", DeprecationWarning)
            # sizes the trace fixes (AASIST's graph pools keep a count of nodes set by the input
            # length, which a runner's input never changes): not news at every first start
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                (sample,),
                str(partial),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=17,
            )
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"{name}: cannot export to ONNX for another backend: {type(exc).__name__}: {exc}") from exc
    partial.replace(path)  # whole or not at all: a crash mid-export never leaves a file that looks usable
    log.info("%s: exported to %s", name, path)
    return path
