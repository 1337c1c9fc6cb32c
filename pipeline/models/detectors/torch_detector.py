"""The shared body of detectors that are PyTorch modules with published weights."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from core.errors import InferenceError, ModelLoadError, WeightsError
from pipeline.models.detector import BaseDetector, DetectionResult, ModelInfo
from pipeline.models.devices import BackendName, resolve_backend
from pipeline.models.images import ImageLike
from pipeline.models.preprocessing import PreprocessingConfig, UnifiedPreprocessor
from pipeline.models.runners import Runner, check_against_torch, compile_module
from pipeline.models.weights import resolve_weights, sha256_file

log = logging.getLogger(__name__)


class TorchDetector(BaseDetector):
    """A detector whose model is an ``nn.Module``; subclasses say how to build it, load weights
    into it and read P(fake) from its output, and declare their preprocessing.

    ``weights`` is a manifest name (resolved in the weights cache) or a file path. ``backend``
    other than ``torch`` runs the loaded module through ONNX Runtime or OpenVINO on the CPU, after
    checking it agrees with PyTorch (``backends.py``).
    """

    architecture: ClassVar[str]
    default_weights: ClassVar[str]
    preprocessing: ClassVar[PreprocessingConfig]
    license: ClassVar[str | None] = None

    def __init__(
        self,
        model_name: str | None = None,
        device: str = "auto",
        weights: str | None = None,
        threshold: float = 0.5,
        channels_last: bool = True,
        fp16: bool = False,
        backend: BackendName = "torch",
    ):
        super().__init__(model_name or self.architecture, device)
        self.weights = weights or self.default_weights
        self.threshold = threshold
        self.channels_last = channels_last
        self.fp16 = fp16 and self.device.startswith("cuda")  # half precision only pays (and is exact enough) on a GPU
        self.backend = resolve_backend(backend, self.device)
        self.module: nn.Module | None = None
        self._runner: Runner | None = None
        self.backend_error: float | None = None  # the largest |ΔP(fake)| against PyTorch at the load check
        self.weights_path: Path | None = None
        self.preprocessor = UnifiedPreprocessor(self.preprocessing)

    @abstractmethod
    def build(self) -> nn.Module:
        """The architecture with random weights."""

    def build_for(self, path: Path) -> nn.Module:
        """The architecture for the checkpoint at ``path`` (by default ``build()``: one size fits every file)."""
        return self.build()

    @abstractmethod
    def load_weights(self, module: nn.Module, path: Path) -> None:
        """Fill ``module`` from ``path`` strictly, or raise ``ModelLoadError`` naming the mismatch."""

    @abstractmethod
    def fake_probability(self, output: torch.Tensor) -> torch.Tensor:
        """P(fake), shape (N,), from the module's output."""

    def load_model(self, model_path: str | None = None) -> bool:
        try:
            path = resolve_weights(model_path or self.weights)
        except WeightsError as exc:
            raise ModelLoadError(f"{self.model_name}: {exc}") from exc
        module = self.build_for(path)
        self.load_weights(module, path)
        module.eval().requires_grad_(False).to(self.device)
        if self.backend != "torch":
            self._runner = self._compile(module, path)
        if self.channels_last:
            # measured here: MesoNet-4 at batch 1 runs ~2x faster on the CPU in channels_last
            module = module.to(memory_format=torch.channels_last)
        if self.fp16:
            module = module.half()
        self.module, self.weights_path, self.is_model_loaded = module, path, True
        return True

    def preprocess(self, image: ImageLike) -> torch.Tensor:
        return self.preprocessor.preprocess(image)

    def predict(self, image: ImageLike) -> DetectionResult:
        return self._results(self.score_tensor(self.preprocessor.preprocess_batch([image])))[0]

    def predict_batch(self, images: Sequence[ImageLike]) -> list[DetectionResult]:
        return self._results(self.score_tensor(self.preprocessor.preprocess_batch(images)))

    def _compile(self, module: nn.Module, path: Path) -> Runner:
        if self.device != "cpu":
            raise ModelLoadError(
                f"{self.model_name}: backend {self.backend} runs on the CPU, the device here is {self.device}; "
                "use backend: torch"
            )
        name = f"{self.architecture}-{sha256_file(path)[:16]}-torch{torch.__version__.split('+')[0]}"
        # a fixed input: seeded noise and a gradient, through this detector's own preprocessing
        rng = np.random.default_rng(0)
        h, w = self.preprocessing.input_size
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
        images.append(np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy())
        batch = self.preprocessor.preprocess_batch(images)
        with torch.inference_mode():
            expected = self.fake_probability(module(batch)).float().numpy()

        def check(runner: Runner) -> float:
            got = self.fake_probability(torch.from_numpy(runner(batch.numpy()))).float().numpy()
            return check_against_torch(self.model_name, self.backend, expected, got)

        runner, self.backend_error = compile_module(
            module, self.backend, (3, *self.preprocessing.input_size), name, self.model_name, check
        )
        return runner

    @torch.inference_mode()
    def score_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """P(fake) for a preprocessed NCHW batch: one forward pass (the runtime batcher's entry)."""
        self._require_loaded()
        assert self.module is not None
        if self._runner is not None:
            scores = (
                self.fake_probability(
                    torch.from_numpy(self._runner(np.ascontiguousarray(batch.numpy(), dtype=np.float32)))
                )
                .float()
                .numpy()
            )
            return self._finite(scores)
        if self.device != "cpu":
            batch = batch.pin_memory().to(self.device, non_blocking=True)  # pinned: the copy overlaps compute
        if self.fp16:
            batch = batch.half()
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self._finite(self.fake_probability(self.module(batch)).float().cpu().numpy())

    def _finite(self, scores: np.ndarray) -> np.ndarray:
        if not np.isfinite(scores).all():
            # NaN/inf (fp16 overflow, a checkpoint holding NaN) would poison fusion and every payload:
            # the batch fails, counted as this model's error, and the other models still judge
            raise InferenceError(
                f"{self.model_name}: the model produced non-finite scores for "
                f"{int((~np.isfinite(scores)).sum())} of {len(scores)} crops"
            )
        return scores

    def get_model_info(self) -> ModelInfo:
        params = sum(p.numel() for p in self.module.parameters()) if self.module is not None else None
        return ModelInfo(
            name=self.model_name,
            version=Path(self.weights_path).name if self.weights_path else str(self.weights),
            architecture=self.architecture,
            input_size=self.preprocessing.input_size,
            device=self.device,
            description=(self.__doc__ or "").strip().splitlines()[0],
            weights_path=str(self.weights_path) if self.weights_path else None,
            num_parameters=params,
            license=self.license,
            metadata={
                "preprocessing": self.preprocessing.model_dump(mode="json"),
                "threshold": self.threshold,
                "backend": self.backend,
                "backend_error": self.backend_error,
            },
        )

    @property
    def crop_landmarks(self) -> bool:
        return self.preprocessing.face_crop_align

    def score_crops(self, items: Sequence[tuple]) -> list[float]:
        """P(fake) for faces given as (full frame, box) or, for an aligned crop, (full frame, box,
        landmarks): each crop is cut as this detector declares (its margin, aligned or not),
        resized and normalised, then scored in one forward pass."""
        crops = [self.preprocessor.crop(*item) for item in items]
        return self.score_tensor(self.preprocessor.preprocess_batch(crops)).tolist()

    def _results(self, probabilities: np.ndarray) -> list[DetectionResult]:
        return [DetectionResult.from_probability(float(p), self.model_name, self.threshold) for p in probabilities]
