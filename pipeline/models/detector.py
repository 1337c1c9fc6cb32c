"""The detector contract: what every deepfake detector in dfstream is and returns."""

from __future__ import annotations

import enum
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, cast

import numpy as np

from core.errors import DfstreamError, InferenceError, InputError, ModelNotLoadedError
from pipeline.models.detections import Box
from pipeline.models.devices import resolve_device
from pipeline.models.images import ImageLike, check_image
from pipeline.models.preprocessing import crop_with_margin

if TYPE_CHECKING:
    from pipeline.monitoring.monitor import PerformanceMonitor


class ModelStatus(str, enum.Enum):
    """Where a model is in its life inside a ``ModelRegistry``."""

    REGISTERED = "registered"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


@dataclass
class ModelInfo:
    """What a detector is: shown by ``dfstream models`` and carried in reports."""

    name: str
    version: str = "1.0.0"
    architecture: str = ""
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    device: str = "cpu"
    description: str = ""
    weights_path: str | None = None
    num_parameters: int | None = None
    license: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectionResult:
    """One detector's judgement of one image.

    - ``fake_probability``: P(fake) in [0, 1], the number to fuse, smooth and threshold.
    - ``is_deepfake``: the detector's label, ``fake_probability >= threshold`` for built-in detectors.
    - ``confidence``: the probability the detector gives *its own label*: ``fake_probability`` when
      ``is_deepfake`` is true, ``1 - fake_probability`` otherwise. It is not P(fake).
    - ``inference_time``: seconds, measured by ``BaseDetector`` around the whole call (preprocessing
      included); for a batch, the batch time divided by its size.

    ``fake_probability`` may be left out (as the seed API does); it is then derived from the label
    and the confidence.
    """

    is_deepfake: bool
    confidence: float
    model_name: str
    inference_time: float = 0.0
    fake_probability: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.is_deepfake = bool(self.is_deepfake)
        self.confidence = float(self.confidence)
        if not 0.0 <= self.confidence <= 1.0:
            raise InputError(f"{self.model_name}: confidence {self.confidence} is outside [0, 1]")
        if self.fake_probability is None:
            self.fake_probability = self.confidence if self.is_deepfake else 1.0 - self.confidence
        self.fake_probability = float(self.fake_probability)
        if not 0.0 <= self.fake_probability <= 1.0:
            raise InputError(f"{self.model_name}: fake_probability {self.fake_probability} is outside [0, 1]")

    @classmethod
    def from_probability(
        cls, fake_probability: float, model_name: str, threshold: float = 0.5, inference_time: float = 0.0
    ) -> DetectionResult:
        p = float(fake_probability)
        fake = p >= threshold
        return cls(
            is_deepfake=fake,
            confidence=p if fake else 1.0 - p,
            model_name=model_name,
            inference_time=inference_time,
            fake_probability=p,
        )


class BaseDetector(ABC):
    """Base of every detector.

    Subclasses implement ``load_model``, ``preprocess``, ``predict`` and ``get_model_info``; real
    detectors also override ``predict_batch`` with one forward pass. ``BaseDetector`` wraps the
    ``predict`` and ``predict_batch`` a subclass defines so that every call, whoever wrote the
    detector, is checked and timed the same way:

    - the model must be loaded (``ModelNotLoadedError``);
    - every image is validated and converted to RGB (``InputError`` naming the problem);
    - the call is timed and the measured seconds replace ``inference_time``;
    - an unexpected exception becomes ``InferenceError`` naming the model;
    - when a ``PerformanceMonitor`` is attached (``attach_monitor``), it receives the timing and
      the outcome: one set of numbers for reports, alerts and Prometheus.
    """

    threshold: float = 0.5

    def __init__(self, model_name: str, device: str = "auto"):
        self.model_name = model_name
        self.device = resolve_device(device)
        self.is_model_loaded = False
        self.monitor: PerformanceMonitor | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "predict" in cls.__dict__:
            cls.predict = _checked_single(cls.__dict__["predict"])  # type: ignore[method-assign]
        if "predict_batch" in cls.__dict__:
            cls.predict_batch = _checked_batch(cls.__dict__["predict_batch"])  # type: ignore[method-assign]

    @abstractmethod
    def load_model(self, model_path: str | None = None) -> bool:
        """Load weights; return True on success (or raise ``ModelLoadError``)."""

    @abstractmethod
    def preprocess(self, image: ImageLike) -> Any:
        """Turn one RGB image into the model's input."""

    @abstractmethod
    def predict(self, image: ImageLike) -> DetectionResult:
        """Judge one image."""

    @abstractmethod
    def get_model_info(self) -> ModelInfo:
        """Describe the model."""

    def predict_batch(self, images: Sequence[ImageLike]) -> list[DetectionResult]:
        """Judge many images. This default calls ``predict`` per image; real detectors override it
        with one forward pass."""
        return [self.predict(image) for image in images]

    @property
    def crop_landmarks(self) -> bool:
        """Whether ``score_crops`` takes each face's landmarks as a third item (its crop is aligned)."""
        return False

    def score_found(self, items: Sequence[tuple[np.ndarray, Box, np.ndarray | None]]) -> list[float]:
        """P(fake) for faces as a finder found them: (full RGB frame, box, landmarks (4, 2) or None).
        The runtime's, the Ray deployments' and ``dfstream eval``'s entry: a detector whose crop is
        aligned (``crop_landmarks``) gets the landmarks, any other ``score_crops`` (frame, box)."""
        if self.crop_landmarks:
            return self.score_crops(items)
        return self.score_crops([(image, box) for image, box, _ in items])

    def score_crops(self, items: Sequence[tuple[np.ndarray, Box]]) -> list[float]:
        """P(fake) for faces given as (full RGB frame, box x1 y1 x2 y2): the runtime batcher's entry.
        This default cuts each box as it is and judges the crops with ``predict_batch``; detectors
        that declare their own crop margin and preprocessing (``TorchDetector``) override it."""
        crops = [crop_with_margin(image, box, 0.0) for image, box in items]
        return [cast(float, result.fake_probability) for result in self.predict_batch(crops)]

    def attach_monitor(self, monitor: PerformanceMonitor | None) -> None:
        self.monitor = monitor

    def _require_loaded(self) -> None:
        if not self.is_model_loaded:
            raise ModelNotLoadedError(f"{self.model_name}: model is not loaded; call load_model() first")

    def _report(self, seconds: float, images: int, ok: bool) -> None:
        if self.monitor is not None:
            self.monitor.record_inference(self.model_name, seconds, images=images, success=ok)


def _checked_single(predict: Callable[..., DetectionResult]) -> Callable[..., DetectionResult]:
    @functools.wraps(predict)
    def wrapper(self: BaseDetector, image: ImageLike, *args: Any, **kwargs: Any) -> DetectionResult:
        self._require_loaded()
        image = check_image(image)
        start = time.perf_counter()
        try:
            result = predict(self, image, *args, **kwargs)
        except Exception as exc:
            self._report(time.perf_counter() - start, 1, ok=False)
            _raise_as_inference_error(self, exc)
        elapsed = time.perf_counter() - start
        result.inference_time = elapsed
        self._report(elapsed, 1, ok=True)
        return result

    return wrapper


def _checked_batch(predict_batch: Callable[..., list[DetectionResult]]) -> Callable[..., list[DetectionResult]]:
    @functools.wraps(predict_batch)
    def wrapper(self: BaseDetector, images: Sequence[ImageLike], *args: Any, **kwargs: Any) -> list[DetectionResult]:
        self._require_loaded()
        checked = [check_image(image) for image in images]
        if not checked:
            return []
        start = time.perf_counter()
        try:
            results = predict_batch(self, checked, *args, **kwargs)
        except Exception as exc:
            self._report(time.perf_counter() - start, len(checked), ok=False)
            _raise_as_inference_error(self, exc)
        elapsed = time.perf_counter() - start
        if len(results) != len(checked):
            raise InferenceError(
                f"{self.model_name}: predict_batch returned {len(results)} results for {len(checked)} images"
            )
        for result in results:
            result.inference_time = elapsed / len(checked)
        self._report(elapsed, len(checked), ok=True)
        return results

    return wrapper


def _raise_as_inference_error(detector: BaseDetector, exc: Exception) -> NoReturn:
    if isinstance(exc, DfstreamError):
        raise exc
    raise InferenceError(f"{detector.model_name}: inference failed: {type(exc).__name__}: {exc}") from exc
