"""Device and backend names: checked when a config is read, resolved (``auto``) when a model loads."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import AfterValidator

from core.errors import ConfigError


def check_device_name(device: str) -> str:
    """The spelling of a device, checked when a config is read (its availability, when a model loads)."""
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ConfigError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


DeviceName = Annotated[str, AfterValidator(check_device_name)]

# what runs a detector's module; auto: onnxruntime on the CPU, torch on a GPU. Measured on the
# 2-core machine (bench/PROFILE.md): OpenVINO is the fastest per crop alone, but with 6 live streams
# sharing the cores onnxruntime dropped 0.3-2 % of frames where OpenVINO dropped 11-20 % and PyTorch 47 %
# tensorrt: ONNX Runtime's TensorRT execution provider on a GPU, for declared onnx models
BackendName = Literal["auto", "torch", "onnxruntime", "openvino", "tensorrt"]


def resolve_backend(backend: str, device: str) -> str:
    """The backend a built-in model runs on (``auto``: ONNX Runtime on the CPU, else PyTorch)."""
    if backend == "tensorrt":
        raise ConfigError(
            "backend tensorrt: for models declared as type onnx; built-in models run on torch, onnxruntime or openvino"
        )
    if backend == "auto":
        return "onnxruntime" if device == "cpu" else "torch"
    return backend


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``cpu``; anything else is checked."""
    try:
        check_device_name(device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    return device
