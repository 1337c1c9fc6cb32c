"""A voice model declared in YAML: any ONNX model that reads 16 kHz waveforms.

    audio_detectors:
      - name: my_voice
        type: onnx
        weights: models/voice.onnx
        input: {samples: 64600, layout: NS}      # N x samples, or NCS: N x 1 x samples
        output: {type: logit, fake_index: 1}     # the value that means spoof (or real_index)

As a declared face detector is, it is held to its file at load (one float input of rank 2 or 3,
one channel, the length when the file fixes it, the output named when there are several) and a
fixed input (noise at speech level, a chirp, silence) must give a finite P(spoof) for each window,
as the declaration reads the output (``fake_probability_of``). A model whose batch is fixed at
one is run a window at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import ConfigError, ModelLoadError, one_line
from pipeline.models.audio.aasist import WINDOW
from pipeline.models.audio.config import WaveformSpec
from pipeline.models.config import OutputSpec
from pipeline.models.detectors.declared import declared_probabilities
from pipeline.models.devices import resolve_device
from pipeline.models.runners import onnx_runner

CHECK_SECONDS = 16_000  # samples of each check window before it is fitted to the model's length


class DeclaredVoiceScorer:
    """``score(windows)``: P(spoof) for each 16 kHz mono float32 waveform, fitted to ``samples``."""

    def __init__(
        self,
        name: str,
        weights: str | Path,
        input: WaveformSpec | None = None,  # noqa: A002  the config's word
        output: OutputSpec | None = None,
        backend: str = "auto",
        device: str = "auto",
    ):
        self.name = name
        self.spec_in, self.spec_out = input or WaveformSpec(), output or OutputSpec()
        self.device = resolve_device(device)
        if backend == "torch":
            raise ConfigError("backend torch: an onnx voice model runs on onnxruntime, openvino or tensorrt")
        self.backend = "onnxruntime" if backend == "auto" else backend
        path = Path(weights)
        self.samples, self.one_at_a_time = self._inspect(path)
        self._run = onnx_runner(path, self.backend, self.device, self.spec_out.name)
        self.check_scores = self._probabilities(self._fit(_check_windows()), at_load=True)

    def _inspect(self, path: Path) -> tuple[int, bool]:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"weights {path}: not a model ONNX Runtime can read: {one_line(exc)}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            kinds = ", ".join(f"{i.name} {i.type}" for i in inputs)
            raise ModelLoadError(
                f"weights {path.name}: the model takes {kinds}; a voice model here takes one float waveform"
            )
        names = [o.name for o in outputs]
        if self.spec_out.name is None and len(names) > 1:
            raise ModelLoadError(
                f"output.name: the model has {len(names)} outputs ({', '.join(names)}); name the one to read"
            )
        if self.spec_out.name is not None and self.spec_out.name not in names:
            raise ModelLoadError(f"output.name {self.spec_out.name!r}: the model's outputs are {', '.join(names)}")
        shape = [d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape]
        rank = 2 if self.spec_in.layout == "NS" else 3
        if len(shape) != rank:
            other = "NCS" if rank == 2 else "NS"
            raise ModelLoadError(
                f"input.layout {self.spec_in.layout}: the model's input has {len(shape)} dimensions "
                f"({'x'.join('?' if d is None else str(d) for d in shape)}); {other}?"
            )
        if rank == 3 and shape[1] not in (None, 1):
            raise ModelLoadError(f"input.layout NCS: the model's input has {shape[1]} channels; the voice is mono")
        fixed = shape[-1]
        if self.spec_in.samples is not None and fixed is not None and fixed != self.spec_in.samples:
            raise ModelLoadError(f"input.samples {self.spec_in.samples}: the model takes {fixed}")
        return self.spec_in.samples or fixed or WINDOW, shape[0] == 1

    def _fit(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Each window tiled (a short one repeated, as AASIST's authors do) or cut to ``samples``."""
        fitted = []
        for window in windows:
            samples = np.asarray(window, dtype=np.float32).ravel()
            if not len(samples):
                samples = np.zeros(1, np.float32)
            reps = -(-self.samples // len(samples))
            fitted.append(np.tile(samples, reps)[: self.samples])
        batch = np.stack(fitted)
        return batch[:, None, :] if self.spec_in.layout == "NCS" else batch

    def _probabilities(self, batch: np.ndarray, at_load: bool = False) -> np.ndarray:
        return declared_probabilities(
            self._run, batch, self.one_at_a_time, self.spec_out, self.name, at_load, unit="window"
        )

    def score(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return self._probabilities(self._fit(windows))


def _check_windows() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(CHECK_SECONDS) / 16_000
    return [
        (0.05 * rng.standard_normal(CHECK_SECONDS)).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * (100 + 900 * t) * t)).astype(np.float32),
        np.zeros(CHECK_SECONDS, np.float32),
    ]
