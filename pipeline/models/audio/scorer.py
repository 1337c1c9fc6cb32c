"""A voice model ready to judge 16 kHz windows: AASIST or AASIST-L on a backend (PyTorch, or its
export run by ONNX Runtime or OpenVINO, checked against PyTorch at load exactly as the video
detectors' backends are), answering P(spoof) for a batch of windows.

P(spoof) is the softmax of the two logits at index 0 (spoof); the authors score a file by the
bona-fide logit alone, which orders files the same way. Neither is calibrated: a threshold from
ASVspoof 2019 does not carry over to other speech (see the README on what a 2019 model knows).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from core.errors import ModelLoadError
from pipeline.models.audio.aasist import SHAPES, WINDOW, load_aasist, tile
from pipeline.models.devices import resolve_backend, resolve_device
from pipeline.models.runners import Runner, check_against_torch, compile_module
from pipeline.models.weights import sha256_file

SPOOF = 0


class VoiceModel(Protocol):
    """What the runtime, ``eval`` and the service ask of a voice model: P(spoof) per 16 kHz window."""

    def score(self, windows: Sequence[np.ndarray]) -> np.ndarray: ...


def p_spoof(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e[:, SPOOF] / e.sum(axis=1)).astype(np.float64)


def check_windows(count: int) -> np.ndarray:
    """A fixed input for the backend check: seeded noise at speech level, a chirp, silence."""
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW) / 16_000
    chirp = 0.3 * np.sin(2 * np.pi * (100 + 900 * t) * t)
    windows = [0.05 * rng.standard_normal(WINDOW), chirp, np.zeros(WINDOW)]
    return np.stack(windows[:count]).astype(np.float32)


class VoiceScorer:
    """``score(windows)``: P(spoof) for each 16 kHz mono float32 waveform (tiled or cut to 64,600)."""

    def __init__(self, variant: str, weights: str | Path, backend: str = "auto", device: str = "cpu"):
        if variant not in SHAPES:
            raise ModelLoadError(f"unknown voice model {variant!r} (known: {', '.join(SHAPES)})")
        self.variant = variant
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.backend_error: float | None = None  # |ΔP(spoof)| against PyTorch on the check input
        self.module = load_aasist(weights, variant).to(self.device)
        self._runner: Runner | None = None
        if self.backend != "torch":
            self._runner = self._compile(Path(weights))

    def _compile(self, path: Path) -> Runner:
        if self.device != "cpu":
            raise ModelLoadError(
                f"{self.variant}: backend {self.backend} runs on the CPU, the device here is {self.device}; "
                "use backend: torch"
            )
        batch = check_windows(3)
        with torch.inference_mode():
            expected = p_spoof(self.module(torch.from_numpy(batch)).numpy())

        def check(runner: Runner) -> float:
            return check_against_torch(self.variant, self.backend, expected, p_spoof(runner(batch)))

        name = f"{self.variant}-{sha256_file(path)[:16]}-torch{torch.__version__.split('+')[0]}"
        runner, self.backend_error = compile_module(self.module, self.backend, (WINDOW,), name, self.variant, check)
        return runner

    def logits(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack([tile(np.asarray(w, dtype=np.float32)) for w in windows]).astype(np.float32)
        if self._runner is not None:
            return np.asarray(self._runner(batch))
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def score(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return p_spoof(self.logits(windows))
