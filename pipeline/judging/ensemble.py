"""Many detectors, one answer: the ensemble face of the framework API."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from pydantic import Field, model_validator

from core.errors import DfstreamError, EnsembleError, InsufficientModelsError
from core.strict import StrictModel
from pipeline.judging.calibration import AnyCalibrator, fit_calibrator, load_calibrators, save_calibrators
from pipeline.judging.fusion import FusionMethod, disagreement, fuse, temper, uncertainty
from pipeline.models.config import DetectorConfig
from pipeline.models.detector import BaseDetector, DetectionResult
from pipeline.models.images import ImageLike

if TYPE_CHECKING:
    from pipeline.monitoring.monitor import PerformanceMonitor

log = logging.getLogger(__name__)


# the keys the ``ensemble`` section had before it became this model, and what they are now
_RENAMED = {"method": "fusion_method", "threshold": "confidence_threshold", "uncertainty": "enable_uncertainty"}


class EnsembleConfig(StrictModel):
    """How the ensemble fuses: the seed API's model and the ``ensemble`` section of a config file.
    Formulas: ``fuse`` and ``uncertainty`` in ``pipeline/judging/fusion.py``. In a file, each model's
    weight is its detector's ``weight``; ``default_weights`` is for the library face."""

    fusion_method: FusionMethod = FusionMethod.WEIGHTED_AVERAGE
    default_weights: dict[str, float] = Field(default_factory=dict)  # by model name; others weigh 1.0
    temperature: float = Field(1.0, gt=0.0)  # each model's logit is divided by it before fusion
    attention_temperature: float = Field(0.25, gt=0.0)  # τ of ATTENTION_FUSION's softmax
    min_models: int = Field(1, ge=1)
    max_models: int = Field(10, ge=1)
    confidence_threshold: float = Field(0.5, gt=0.0, lt=1.0)  # fused P(fake) at or above it is fake
    enable_uncertainty: bool = True
    enable_attention: bool = (
        True  # the seed's switch: off, ATTENTION_FUSION is refused (no other method uses attention)
    )
    calibration: str | None = None  # a JSON file written by EnsembleManager.save_calibration, loaded by build_ensemble

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict):
            for old, new in _RENAMED.items():
                if old in data:
                    raise ValueError(f"{old!r} is now called {new!r}")
        return data

    @model_validator(mode="after")
    def _verify(self) -> EnsembleConfig:
        if self.min_models > self.max_models:
            raise ValueError(f"min_models ({self.min_models}) is greater than max_models ({self.max_models})")
        if self.fusion_method is FusionMethod.ATTENTION_FUSION and not self.enable_attention:
            raise ValueError("fusion_method attention_fusion needs enable_attention: true")
        bad = {k: v for k, v in self.default_weights.items() if v < 0}
        if bad:
            raise ValueError(f"default_weights must be >= 0, got {bad}")
        return self


@dataclass
class EnsembleResult:
    """The fused judgement of one image.

    ``fake_probability`` is the fused P(fake) (the weighted share of fake votes for majority
    voting); ``ensemble_confidence`` is the probability of the chosen label; ``uncertainty`` is in
    [0, 1] (None when ``enable_uncertainty`` is off); ``model_scores`` are the calibrated, tempered
    P(fake) each model contributed and ``model_weights`` each model's share in the result.
    """

    is_deepfake: bool
    fake_probability: float
    ensemble_confidence: float
    uncertainty: float | None
    disagreement: float
    fusion_method: FusionMethod
    model_scores: dict[str, float]
    model_weights: dict[str, float]
    model_results: dict[str, DetectionResult] = field(default_factory=dict)
    failed_models: dict[str, str] = field(default_factory=dict)
    inference_time: float = 0.0

    @property
    def num_models(self) -> int:
        return len(self.model_scores)


class EnsembleManager:
    def __init__(self, config: EnsembleConfig | None = None, monitor: PerformanceMonitor | None = None):
        self.config = config or EnsembleConfig()
        self.monitor = monitor
        self.models: dict[str, BaseDetector] = {}
        self.weights: dict[str, float] = {}
        self.calibrators: dict[str, AnyCalibrator] = {}

    # ---- membership ---------------------------------------------------------------------------
    def add_model(self, name: str, model: BaseDetector, weight: float | None = None) -> None:
        if name not in self.models and len(self.models) >= self.config.max_models:
            raise EnsembleError(f"cannot add {name!r}: the ensemble already has max_models={self.config.max_models}")
        w = self.config.default_weights.get(name, 1.0) if weight is None else float(weight)
        if w < 0:
            raise EnsembleError(f"{name}: weight {w} must be >= 0")
        self.models[name] = model
        self.weights[name] = w
        if self.monitor is not None:
            model.attach_monitor(self.monitor)

    def remove_model(self, name: str) -> None:
        self.models.pop(name, None)
        self.weights.pop(name, None)

    def set_weight(self, name: str, weight: float) -> None:
        if name not in self.models:
            raise EnsembleError(f"no model {name!r} in the ensemble (have {sorted(self.models)})")
        if weight < 0:
            raise EnsembleError(f"{name}: weight {weight} must be >= 0")
        self.weights[name] = float(weight)

    # ---- calibration ----------------------------------------------------------------------------
    def set_calibrator(self, name: str, calibrator: AnyCalibrator | None) -> None:
        if calibrator is None:
            self.calibrators.pop(name, None)
        else:
            self.calibrators[name] = calibrator

    def fit_calibration(
        self,
        name: str,
        scores: Sequence[float],
        labels: Sequence[int],
        method: Literal["temperature", "platt"] = "platt",
    ) -> AnyCalibrator:
        """Fit ``name``'s calibration from its raw P(fake) on labelled data (1 = fake) and use it."""
        calibrator = fit_calibrator(np.asarray(scores), np.asarray(labels), method)
        self.calibrators[name] = calibrator
        return calibrator

    def save_calibration(self, path: str | Path) -> None:
        save_calibrators(self.calibrators, path)

    def load_calibration(self, path: str | Path) -> None:
        self.calibrators.update(load_calibrators(path))

    # ---- prediction -------------------------------------------------------------------------------
    def predict_ensemble(self, image: ImageLike) -> EnsembleResult:
        return self.predict_ensemble_batch([image])[0]

    def predict_ensemble_batch(self, images: Sequence[ImageLike]) -> list[EnsembleResult]:
        """Each model judges the whole batch in one ``predict_batch`` call; a model that fails is
        left out (and named in ``failed_models``) as long as ``min_models`` still answer."""
        if not self.models:
            raise InsufficientModelsError("the ensemble has no models: call add_model() first")
        start = time.perf_counter()
        per_model: dict[str, list[DetectionResult]] = {}
        failed: dict[str, str] = {}
        for name, model in self.models.items():
            try:
                per_model[name] = model.predict_batch(list(images))
            except DfstreamError as exc:
                failed[name] = str(exc)
                log.warning("ensemble: %s", exc)
        elapsed = time.perf_counter() - start
        results = []
        for i in range(len(images)):
            result = self.fuse({name: outputs[i] for name, outputs in per_model.items()}, failed)
            result.inference_time = elapsed / len(images)
            results.append(result)
        return results

    def fuse(
        self, results: Mapping[str, DetectionResult | float], failed: Mapping[str, str] | None = None
    ) -> EnsembleResult:
        """Fuse answers already computed elsewhere (the streaming runtime's batchers): a
        DetectionResult or a raw P(fake) per model name."""
        failed = dict(failed or {})
        cfg = self.config
        if len(results) < cfg.min_models:
            raise InsufficientModelsError(
                f"{len(results)} model(s) answered but min_models is {cfg.min_models}"
                + (f"; failed: {'; '.join(f'{k}: {v}' for k, v in failed.items())}" if failed else "")
            )
        names = list(results)
        raw = np.array([_probability(results[n]) for n in names])
        calibrated = np.array([self._calibrate(n, p) for n, p in zip(names, raw)])
        p = temper(calibrated, cfg.temperature)
        w = np.array([self.weights.get(n, cfg.default_weights.get(n, 1.0)) for n in names])
        if w.sum() <= 0:
            raise EnsembleError(f"the weights of the answering models {names} are all 0")
        fused = fuse(cfg.fusion_method, p, w, cfg.confidence_threshold, cfg.attention_temperature)
        prob = fused.probability
        return EnsembleResult(
            is_deepfake=fused.is_deepfake,
            fake_probability=prob,
            ensemble_confidence=prob if fused.is_deepfake else 1.0 - prob,
            uncertainty=uncertainty(p, w, prob, cfg.confidence_threshold) if cfg.enable_uncertainty else None,
            disagreement=disagreement(p, w),
            fusion_method=cfg.fusion_method,
            model_scores={n: float(v) for n, v in zip(names, p)},
            model_weights={n: float(v) for n, v in zip(names, fused.weights)},
            model_results={n: r for n, r in results.items() if isinstance(r, DetectionResult)},
            failed_models=failed,
        )

    def _calibrate(self, name: str, p: float) -> float:
        calibrator = self.calibrators.get(name)
        return p if calibrator is None else float(calibrator(np.array([p]))[0])


def _probability(result: DetectionResult | float) -> float:
    if isinstance(result, DetectionResult):
        return cast(float, result.fake_probability)  # set in DetectionResult.__post_init__
    return float(result)


def build_ensemble(
    config: EnsembleConfig, configs: Sequence[DetectorConfig], detectors: Mapping[str, BaseDetector] | None
) -> EnsembleManager:
    """The ensemble a config describes, over loaded detectors: ``dfstream run`` and ``dfstream eval``
    both build it here, each model weighed by its detector's ``weight``. ``detectors`` None: the
    detectors run elsewhere (Ray Serve) and this ensemble only fuses their answers, with the
    configured weights and calibration."""
    weights = {d.name: d.weight for d in configs}
    ensemble = EnsembleManager(
        config.model_copy(update={"default_weights": weights, "max_models": max(config.max_models, len(configs))})
    )
    for dc in configs if detectors is not None else ():
        ensemble.add_model(dc.name, detectors[dc.name])
    if config.calibration:
        ensemble.load_calibration(config.calibration)
    return ensemble
