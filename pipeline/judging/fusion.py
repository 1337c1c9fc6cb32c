"""Fusion of per-model P(fake) into one probability, and the uncertainty of that fusion.

Pure numpy on arrays of calibrated probabilities ``p`` (one per model) and non-negative weights
``w``; no detectors, no I/O, so every formula is tested against hand-computed numbers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError, InputError

EPS = 1e-6


class FusionMethod(str, enum.Enum):
    WEIGHTED_AVERAGE = "weighted_average"
    MAJORITY_VOTING = "majority_voting"
    SOFT_VOTING = "soft_voting"
    ATTENTION_FUSION = "attention_fusion"
    MAX_CONFIDENCE = "max_confidence"
    MIN_CONFIDENCE = "min_confidence"


@dataclass(frozen=True)
class Fused:
    probability: float  # fused P(fake) (vote share for majority voting)
    is_deepfake: bool
    weights: np.ndarray  # each model's share in the result, summing to 1


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def temper(p: np.ndarray, temperature: float) -> np.ndarray:
    """p ← σ(logit(p) / T): T > 1 softens over-confident models, T < 1 sharpens; T = 1 is identity."""
    if temperature == 1.0:
        return np.asarray(p, dtype=np.float64)
    return sigmoid(logit(p) / temperature)


def confidence(p: np.ndarray) -> np.ndarray:
    """How far from a coin toss a model is: c = |2p - 1| in [0, 1]."""
    return np.abs(2.0 * np.asarray(p, dtype=np.float64) - 1.0)


def fuse(
    method: FusionMethod, p: np.ndarray, w: np.ndarray, threshold: float = 0.5, attention_temperature: float = 0.25
) -> Fused:
    """Fuse probabilities ``p`` with weights ``w`` (same length, w >= 0, sum(w) > 0).

    - WEIGHTED_AVERAGE: P = Σ wᵢ pᵢ / Σ wᵢ.
    - SOFT_VOTING: P = mean(pᵢ); every model has one equal voice, weights are ignored.
    - MAJORITY_VOTING: vᵢ = [pᵢ >= threshold]; P = Σ wᵢ vᵢ / Σ wᵢ (the weighted share of fake votes);
      fake when P > 1/2; an exact tie goes to the weighted average against the threshold.
    - ATTENTION_FUSION: aᵢ = wᵢ exp(cᵢ / τ) / Σⱼ wⱼ exp(cⱼ / τ) with cᵢ = |2pᵢ - 1| and
      τ = ``attention_temperature``; P = Σ aᵢ pᵢ. Confident models get more say, smoothly.
    - MAX_CONFIDENCE: P = pₖ with k = argmax cᵢ (the most decided model; aggressive).
    - MIN_CONFIDENCE: P = pₖ with k = argmin cᵢ (the least decided model; conservative).
    Except for majority voting, fake when P >= threshold.
    """
    p = np.asarray(p, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if p.ndim != 1 or p.shape != w.shape or len(p) == 0:
        raise InputError(f"fuse needs equal-length 1-D probabilities and weights, got {p.shape} and {w.shape}")
    if np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"weights must be >= 0 with a positive sum, got {w.tolist()}")
    share = w / w.sum()

    if method is FusionMethod.WEIGHTED_AVERAGE:
        prob = float(share @ p)
        return Fused(prob, prob >= threshold, share)
    if method is FusionMethod.SOFT_VOTING:
        equal = np.full_like(p, 1.0 / len(p))
        prob = float(p.mean())
        return Fused(prob, prob >= threshold, equal)
    if method is FusionMethod.MAJORITY_VOTING:
        votes = (p >= threshold).astype(np.float64)
        prob = float(share @ votes)
        fake = prob > 0.5 if not np.isclose(prob, 0.5) else float(share @ p) >= threshold
        return Fused(prob, bool(fake), share)
    if method is FusionMethod.ATTENTION_FUSION:
        scores = np.log(np.maximum(w, 1e-300)) + confidence(p) / attention_temperature
        scores = np.where(w > 0, scores, -np.inf)
        attention = np.exp(scores - scores.max())
        attention /= attention.sum()
        prob = float(attention @ p)
        return Fused(prob, prob >= threshold, attention)
    if method in (FusionMethod.MAX_CONFIDENCE, FusionMethod.MIN_CONFIDENCE):
        c = np.where(w > 0, confidence(p), np.nan)
        k = int(np.nanargmax(c) if method is FusionMethod.MAX_CONFIDENCE else np.nanargmin(c))
        onehot = np.zeros_like(p)
        onehot[k] = 1.0
        prob = float(p[k])
        return Fused(prob, prob >= threshold, onehot)
    raise ConfigError(f"unknown fusion method {method!r}")


def disagreement(p: np.ndarray, w: np.ndarray) -> float:
    """2 x the weighted standard deviation of the models' P(fake): 0 when they agree, 1 when half say
    0 and half say 1 (the largest spread probabilities can have)."""
    p = np.asarray(p, dtype=np.float64)
    share = np.asarray(w, dtype=np.float64) / np.sum(w)
    mean = share @ p
    return float(min(1.0, 2.0 * np.sqrt(share @ (p - mean) ** 2)))


def uncertainty(p: np.ndarray, w: np.ndarray, fused: float, threshold: float = 0.5) -> float:
    """U = 1 - (1 - D)(1 - M) in [0, 1]: uncertain when the models disagree (D = ``disagreement``)
    *or* the fused probability sits near the threshold (M = 1 - |P - t| / max(t, 1 - t))."""
    d = disagreement(p, w)
    m = 1.0 - abs(fused - threshold) / max(threshold, 1.0 - threshold)
    return float(np.clip(1.0 - (1.0 - d) * (1.0 - m), 0.0, 1.0))
