"""Detectors declared in YAML, not written in Python: any ONNX or TorchScript image classifier.

    detectors:
      - name: mine
        type: onnx                      # or torchscript
        weights: models/mine.onnx
        input: {size: [224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
        output: {type: logit, fake_index: 1}

``input`` (``InputSpec``) says how a face crop becomes the model's input and ``output``
(``OutputSpec``) how its output becomes P(fake). Everything the file itself says is checked against
the declaration at load (one input, float, three channels where the layout puts them, the size,
the output named when there are several), then a fixed input goes through the model: its P(fake)
must be finite, one per face, a probability where the declaration says probability, and the index
that means fake must exist. A model whose batch is fixed at one is run a face at a time. With
``reference`` (the same model in the other format, e.g. the TorchScript it was exported from) both
must agree on the fixed input within ``TOLERANCE``, as the built-in backends do with PyTorch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from core.errors import ConfigError, InferenceError, ModelLoadError, WeightsError, one_line
from pipeline.models.config import InputSpec, OutputSpec
from pipeline.models.detector import BaseDetector, DetectionResult, ModelInfo
from pipeline.models.devices import BackendName
from pipeline.models.images import ImageLike
from pipeline.models.plugins import register
from pipeline.models.preprocessing import PreprocessingConfig, UnifiedPreprocessor
from pipeline.models.runners import TOLERANCE, Runner, onnx_runner
from pipeline.models.weights import resolve_weights

Shape = list[int | None]  # the model's input dimensions; None where the file leaves one open


class DeclaredDetector(BaseDetector):
    """The body both declared types share; each says how to open its file (``_open``)."""

    kind: ClassVar[str]
    backends: ClassVar[tuple[str, ...]]  # the ones it runs on; the first is ``auto``'s

    def __init__(
        self,
        model_name: str | None = None,
        device: str = "auto",
        threshold: float = 0.5,
        fp16: bool = False,
        backend: BackendName = "auto",
        input: InputSpec | None = None,  # noqa: A002  the config's word
        output: OutputSpec | None = None,
        reference: str | None = None,
    ):
        super().__init__(model_name or self.kind, device)
        self.threshold = threshold
        self.spec_in = input or InputSpec()
        self.spec_out = output or OutputSpec()
        self.reference = reference
        self.backend = self.backends[0] if backend == "auto" else backend
        if self.backend not in self.backends:
            raise ConfigError(f"backend {backend}: a {self.kind} model runs on {' or '.join(self.backends)}")
        self.fp16 = fp16 and self.device.startswith("cuda")
        self.preprocessing: PreprocessingConfig | None = None
        self.preprocessor: UnifiedPreprocessor | None = None
        self.weights_path: Path | None = None
        self.one_at_a_time = False  # the model's batch is fixed at one
        self.reference_error: float | None = None
        self._run: Runner | None = None

    # ---- what each type says ----------------------------------------------------------------------
    def _resolve(self, model_path: str) -> Path:
        try:
            return resolve_weights(model_path)
        except WeightsError as exc:
            raise ModelLoadError(f"weights: {exc}") from exc

    def _open(self, path: Path) -> tuple[Runner, Shape, bool | None]:
        """The runner, the input's dimensions as the file states them, and whether the batch is
        fixed at one (None: the file does not say)."""
        raise NotImplementedError

    # ---- loading ----------------------------------------------------------------------------------
    def load_model(self, model_path: str | None = None) -> bool:
        if model_path is None:
            raise ModelLoadError(
                f"{self.model_name}: weights: a declared detector (type {self.kind}) needs its model file"
            )
        path = self._resolve(model_path)
        run, shape, fixed_one = self._open(path)
        self.preprocessing = self._preprocessing(self._size(shape))
        self.preprocessor = UnifiedPreprocessor(self.preprocessing)
        batch = self._check_batch()
        self._run, self.one_at_a_time = run, bool(fixed_one)
        if fixed_one is None:  # try a batch; a model traced at batch one may refuse it
            try:
                run(batch)
            except Exception:  # noqa: BLE001  any failure here only means: not batched
                self.one_at_a_time = True
        expected = self._probabilities(batch, at_load=True)
        if self.reference is not None:
            self.reference_error = self._agrees_with_reference(batch, expected)
        self.weights_path, self.is_model_loaded = path, True
        return True

    def _size(self, shape: Shape) -> tuple[int, int]:
        spec = self.spec_in
        if len(shape) != 4:
            raise ModelLoadError(
                f"input: the model's input has {len(shape)} dimensions ({_shape(shape)}); "
                "a batch of images has 4 (layout NCHW or NHWC)"
            )
        nchw = spec.layout == "NCHW"
        channels, height, width = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
        if channels is not None and channels != 3:
            other = "NHWC" if spec.layout == "NCHW" else "NCHW"
            hint = f" (layout: {other}?)" if shape[3 if other == "NHWC" else 1] == 3 else ""
            raise ModelLoadError(
                f"input.layout {spec.layout}: the model's input {_shape(shape)} has {channels} channels "
                f"where {spec.layout} puts them, not 3{hint}"
            )
        if spec.size is None:
            if height is None or width is None:
                raise ModelLoadError(
                    f"input.size: the model's input {_shape(shape)} leaves its size open; say it (input.size: [H, W])"
                )
            return height, width
        if height is not None and width is not None and (height, width) != tuple(spec.size):
            raise ModelLoadError(
                f"input.size {spec.size[0]}x{spec.size[1]}: the model takes {height}x{width} ({_shape(shape)})"
            )
        return spec.size

    def _preprocessing(self, size: tuple[int, int]) -> PreprocessingConfig:
        """The declaration in the preprocessor's terms: it scales pixels to [0, 1], then (x − mean) / std
        per RGB channel, so ``(v x scale − m) / s`` becomes mean m / (255 scale), std s / (255 scale)."""
        spec = self.spec_in
        unit = 255.0 * spec.scale
        mean = tuple(m / unit for m in spec.mean)
        std = tuple(s / unit for s in spec.std)
        if spec.channels == "BGR":  # declared in the model's order; the preprocessor takes them in RGB
            mean, std = mean[::-1], std[::-1]
        return PreprocessingConfig(
            input_size=size,
            mean=mean,
            std=std,
            normalize=mean != (0.0, 0.0, 0.0) or std != (1.0, 1.0, 1.0),
            interpolation=spec.interpolation,
            resize_mode=spec.resize,
            channel_order=spec.channels,
            face_crop_margin=spec.crop_margin,
            face_crop_align=spec.crop_align,
        )

    def _check_batch(self) -> np.ndarray:
        """The fixed input: three of seeded noise and a gradient, through this detector's preprocessing."""
        assert self.preprocessing is not None
        rng = np.random.default_rng(0)
        h, w = self.preprocessing.input_size
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
        images.append(np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy())
        return self._layout(self._tensor(images))

    def _agrees_with_reference(self, batch: np.ndarray, expected: np.ndarray) -> float:
        other = _OTHER[self.kind](
            f"{self.model_name}.reference",
            "cpu" if self.device == "cpu" else self.device,
            input=self.spec_in,
            output=self.spec_out,
        )
        try:
            other.load_model(self.reference)
        except ModelLoadError as exc:
            raise ModelLoadError(f"reference: {exc}") from exc
        got = other._probabilities(batch, at_load=True)
        worst = float(np.max(np.abs(expected - got)))
        if not worst <= TOLERANCE:
            raise ModelLoadError(
                f"reference {self.reference}: P(fake) up to {worst:.2g} away from the {self.kind} model's on the "
                f"check input (limit {TOLERANCE:g}): they are not the same model, or the export changed it"
            )
        return worst

    # ---- scoring ----------------------------------------------------------------------------------
    def _tensor(self, images: Sequence[ImageLike]) -> np.ndarray:
        assert self.preprocessor is not None
        return self.preprocessor.preprocess_batch(images).numpy()

    def _layout(self, nchw: np.ndarray) -> np.ndarray:
        batch = nchw.transpose(0, 2, 3, 1) if self.spec_in.layout == "NHWC" else nchw
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _probabilities(self, batch: np.ndarray, at_load: bool = False) -> np.ndarray:
        assert self._run is not None
        return declared_probabilities(
            self._run, batch, self.one_at_a_time, self.spec_out, self.model_name, at_load, unit="face"
        )

    @property
    def crop_landmarks(self) -> bool:
        return self.spec_in.crop_align

    def score_crops(self, items: Sequence[tuple]) -> list[float]:
        """P(fake) for faces given as (full frame, box), cut with the declared margin (with
        ``crop_align``: (full frame, box, landmarks), aligned)."""
        self._require_loaded()
        assert self.preprocessor is not None
        crops = [self.preprocessor.crop(*item) for item in items]
        return self._probabilities(self._layout(self._tensor(crops))).tolist()

    def preprocess(self, image: ImageLike) -> np.ndarray:
        self._require_loaded()
        return self._layout(self._tensor([image]))[0]

    def predict(self, image: ImageLike) -> DetectionResult:
        return self._results([image])[0]

    def predict_batch(self, images: Sequence[ImageLike]) -> list[DetectionResult]:
        return self._results(images)

    def _results(self, images: Sequence[ImageLike]) -> list[DetectionResult]:
        scores = self._probabilities(self._layout(self._tensor(images)))
        return [DetectionResult.from_probability(float(p), self.model_name, self.threshold) for p in scores]

    def get_model_info(self) -> ModelInfo:
        size = self.preprocessing.input_size if self.preprocessing else (self.spec_in.size or (0, 0))
        metadata: dict[str, Any] = {
            "input": self.spec_in.model_dump(mode="json"),
            "output": self.spec_out.model_dump(mode="json"),
            "backend": self.backend,
            "one_at_a_time": self.one_at_a_time,
            "reference_error": self.reference_error,
            "threshold": self.threshold,
        }
        return ModelInfo(
            name=self.model_name,
            version=self.weights_path.name if self.weights_path else "",
            architecture=f"{self.kind} (declared)",
            input_size=size,
            device=self.device,
            description=f"a {self.kind} image classifier declared in the configuration",
            weights_path=str(self.weights_path) if self.weights_path else None,
            metadata=metadata,
        )


@register("onnx")
class OnnxDetector(DeclaredDetector):
    """Any ONNX image classifier, run by ONNX Runtime (its CUDA or TensorRT provider on a GPU) or OpenVINO."""

    kind = "onnx"
    backends = ("onnxruntime", "openvino", "tensorrt")

    def _open(self, path: Path) -> tuple[Runner, Shape, bool | None]:
        import onnxruntime as ort

        if self.fp16 and self.backend != "tensorrt":
            raise ConfigError(
                "fp16: an onnx model runs as it was exported (export it in half precision, or let backend "
                "tensorrt build fp16 kernels)"
            )
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"weights {path}: not a model ONNX Runtime can read: {one_line(exc)}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ModelLoadError(
                f"weights {path.name}: the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                "a declared detector feeds it one batch of images"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelLoadError(f"input: the model takes {inputs[0].type}; a declared detector feeds float32")
        names = [o.name for o in outputs]
        name = self.spec_out.name
        if name is None and len(names) > 1:
            raise ModelLoadError(
                f"output.name: the model has {len(names)} outputs ({', '.join(names)}); name the one to read"
            )
        if name is not None and name not in names:
            raise ModelLoadError(f"output.name {name!r}: the model's outputs are {', '.join(names)}")
        shape: Shape = [d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape]
        if shape and shape[0] is not None and shape[0] != 1:
            raise ModelLoadError(
                f"input: the model's batch is fixed at {shape[0]} ({_shape(shape)}); export it with a batch of 1 "
                "or a dynamic one"
            )
        run = onnx_runner(path, self.backend, self.device, name, half=self.fp16)
        return run, shape, shape[0] == 1 if shape else None


@register("torchscript")
class TorchScriptDetector(DeclaredDetector):
    """Any TorchScript image classifier (``torch.jit.script`` or ``torch.jit.trace``, then ``save``)."""

    kind = "torchscript"
    backends = ("torch",)

    def _open(self, path: Path) -> tuple[Runner, Shape, bool | None]:
        try:
            with warnings.catch_warnings():  # TorchScript's deprecation notice at every start: not the user's news
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as exc:
            raise ModelLoadError(f"weights {path}: not a TorchScript file: {one_line(exc)}") from exc
        if self.fp16:
            module = module.half()
        name, device, half = self.spec_out.name, self.device, self.fp16

        @torch.inference_mode()
        def run(batch: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(batch).to(device)
            out = module(tensor.half() if half else tensor)
            if isinstance(out, dict):
                if name not in out:
                    raise OutputMismatch(
                        f"output.name: the model returns a dict ({', '.join(out)}); name the entry to read"
                    )
                out = out[name]
            elif isinstance(out, (tuple, list)):
                if name is None or not name.isdigit() or int(name) >= len(out):
                    raise OutputMismatch(
                        f"output.name: the model returns {len(out)} outputs; name the one to read by its "
                        f"position (0–{len(out) - 1})"
                    )
                out = out[int(name)]
            return out.float().cpu().numpy()

        # a TorchScript file keeps no input shape: the size is the declaration's, channels as declared
        return run, [None, *([3, None, None] if self.spec_in.layout == "NCHW" else [None, None, 3])], None


_OTHER: dict[str, type[DeclaredDetector]] = {"onnx": TorchScriptDetector, "torchscript": OnnxDetector}


def declared_probabilities(
    run: Runner, batch: np.ndarray, one_at_a_time: bool, spec: OutputSpec, name: str, at_load: bool, unit: str
) -> np.ndarray:
    """P(fake) per row of a ready batch through ``run`` (row by row when the model's batch is fixed at
    one). At load every way the output can disagree with the declaration is a ``ModelLoadError``
    naming the field; afterwards a bad batch is an ``InferenceError``."""
    try:
        if one_at_a_time:
            raw = np.concatenate([np.asarray(run(batch[i : i + 1])) for i in range(len(batch))])
        else:
            raw = np.asarray(run(batch))
        return fake_probability_of(raw, len(batch), spec, unit)
    except OutputMismatch as exc:
        if at_load:
            raise ModelLoadError(str(exc)) from None
        raise InferenceError(f"{name}: {exc}") from None
    except Exception as exc:
        if at_load:
            raise ModelLoadError(f"the model fails on the check input: {one_line(exc, with_type=True)}") from exc
        raise


class OutputMismatch(InferenceError):
    """The model's output is not what the declaration says."""


def fake_probability_of(raw: np.ndarray, faces: int, spec: OutputSpec, unit: str = "face") -> np.ndarray:
    """P(fake) for each of ``faces`` rows of a classifier's output (``unit``: what a row is), as
    ``spec`` declares it; an ``OutputMismatch`` naming the field when the output is not what it says."""
    out = np.asarray(raw, dtype=np.float64)
    if out.ndim == 0 or out.shape[0] != faces:
        raise OutputMismatch(
            f"output: the model gives {tuple(out.shape)} for {faces} {unit}s; one row a {unit} was expected"
        )
    if out.ndim > 2 and all(d == 1 for d in out.shape[2:]):
        out = out.reshape(faces, -1)
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise OutputMismatch(
            f"output: the model gives {tuple(out.shape)}; a classifier gives one row of values a {unit}"
        )
    values = out.shape[1]
    index = spec.real_index if spec.real_index is not None else spec.fake_index
    field = "real_index" if spec.real_index is not None else "fake_index"
    if index is None:
        if values > 1:
            raise OutputMismatch(
                f"output.fake_index: the model gives {values} values a {unit}; say which means fake "
                "(fake_index) or real (real_index)"
            )
        index = 0
    if index >= values:
        plural = "s" if values > 1 else ""
        raise OutputMismatch(f"output.{field} {index}: the model gives {values} value{plural} a {unit}")
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(axis=1)).sum())
        raise OutputMismatch(f"output: the model gives non-finite values for {bad} of {faces} {unit}s")
    if spec.type == "probability":
        if out.min() < -1e-6 or out.max() > 1 + 1e-6:
            raise OutputMismatch(
                f"output.type probability: the model gives values from {out.min():.3g} to {out.max():.3g}; "
                "logits? (type: logit)"
            )
        p = np.clip(out[:, index], 0.0, 1.0)
    else:
        activation = spec.activation or ("sigmoid" if values == 1 else "softmax")
        if activation == "softmax":
            if values == 1:
                raise OutputMismatch("output.activation softmax: over one value it is always 1; sigmoid?")
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            p = shifted[:, index] / shifted.sum(axis=1)
        else:
            p = 0.5 * (1.0 + np.tanh(out[:, index] / 2.0))  # the logistic function, without overflow
    return 1.0 - p if spec.real_index is not None else p


def _shape(shape: Shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)
