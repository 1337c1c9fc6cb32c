"""Per-model calibration: map a detector's raw P(fake) to a probability that means what it says.

Two classic fits on labelled scores (label 1 = fake):
- temperature scaling (Guo et al., 2017): p' = σ(logit(p) / T), one parameter, keeps the ranking;
- Platt scaling (Platt, 1999): p' = σ(a · logit(p) + b), with Platt's smoothed targets.
Both are fitted by Newton's method on the negative log-likelihood (convex in these parameters).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Union

import numpy as np

from core.errors import ConfigError, InputError
from pipeline.judging.fusion import logit, sigmoid


class Calibrator(Protocol):
    def __call__(self, p: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, float | str]: ...


@dataclass
class TemperatureScaling:
    temperature: float = 1.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return sigmoid(logit(p) / self.temperature)

    def to_dict(self) -> dict[str, float | str]:
        return {"method": "temperature", "temperature": self.temperature}

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> TemperatureScaling:
        z, y = _checked(scores, labels)
        s = 1.0  # s = 1 / T: the NLL is convex in s
        for _ in range(iterations):
            q = sigmoid(s * z)
            grad = np.sum((q - y) * z)
            hess = np.sum(q * (1 - q) * z * z) + 1e-12
            step = grad / hess
            s = float(np.clip(s - step, 1e-3, 1e3))
            if abs(step) < 1e-10:
                break
        return cls(temperature=1.0 / s)


@dataclass
class PlattScaling:
    a: float = 1.0
    b: float = 0.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * logit(p) + self.b)

    def to_dict(self) -> dict[str, float | str]:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> PlattScaling:
        z, y = _checked(scores, labels)
        positives, negatives = y.sum(), len(y) - y.sum()
        # Platt's targets keep the fit finite when the classes separate perfectly
        t = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
        x = np.stack([z, np.ones_like(z)], axis=1)
        theta = np.array([1.0, 0.0])
        for _ in range(iterations):
            q = sigmoid(x @ theta)
            grad = x.T @ (q - t)
            hess = (x * (q * (1 - q))[:, None]).T @ x + 1e-9 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if np.max(np.abs(step)) < 1e-10:
                break
        return cls(a=float(theta[0]), b=float(theta[1]))


AnyCalibrator = Union[TemperatureScaling, PlattScaling]


def fit_calibrator(scores: np.ndarray, labels: np.ndarray, method: Literal["temperature", "platt"]) -> AnyCalibrator:
    if method == "temperature":
        return TemperatureScaling.fit(scores, labels)
    if method == "platt":
        return PlattScaling.fit(scores, labels)
    raise ConfigError(f"calibration method {method!r}: expected 'temperature' or 'platt'")


def calibrator_from_dict(data: Mapping[str, object]) -> AnyCalibrator:
    method = data.get("method")
    if method == "temperature":
        return TemperatureScaling(temperature=float(data["temperature"]))  # type: ignore[arg-type]
    if method == "platt":
        return PlattScaling(a=float(data["a"]), b=float(data["b"]))  # type: ignore[arg-type]
    raise ConfigError(f"calibration method {method!r}: expected 'temperature' or 'platt'")


def save_calibrators(calibrators: Mapping[str, AnyCalibrator], path: str | Path) -> None:
    Path(path).write_text(json.dumps({name: c.to_dict() for name, c in calibrators.items()}, indent=2))


def load_calibrators(path: str | Path) -> dict[str, AnyCalibrator]:
    data = json.loads(Path(path).read_text())
    return {name: calibrator_from_dict(entry) for name, entry in data.items()}


def _checked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or len(p) < 2:
        raise InputError(f"calibration needs equal numbers of scores and labels (>= 2), got {len(p)} and {len(y)}")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isin(y, (0.0, 1.0))):
        raise InputError("calibration needs scores in [0, 1] and labels 0 (real) or 1 (fake)")
    if y.min() == y.max():
        raise InputError("calibration needs both real (0) and fake (1) labels")
    return logit(p), y


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of P(fake) against labels (1 = fake); what calibration lowers."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
