"""Detection metrics and per-video aggregation for ``dfstream eval``.

Labels: 1 = fake, 0 = real; scores are P(fake). AUC is the Mann-Whitney statistic (the probability
that a random fake scores above a random real, ties counting one half), which is what the area
under the ROC curve equals; it is None when one class is absent, since it is not defined then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    positives, negatives = int(y.sum()), int((1 - y).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(s)  # ties share their average rank
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_each_threshold = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    true_positives = np.cumsum(y)[last_of_each_threshold]
    false_positives = np.cumsum(1 - y)[last_of_each_threshold]
    positives, negatives = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return np.r_[0.0, false_positives / negatives], np.r_[0.0, true_positives / positives]


def equal_error_rate(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """The error rate where false acceptances (a fake scored under the threshold) equal false
    rejections (a real one scored at or over it), the anti-spoofing field's figure (ASVspoof):
    interpolated between the two ROC points that straddle it. None when one class is absent."""
    y = np.asarray(labels, dtype=int)
    if y.sum() == 0 or (1 - y).sum() == 0:
        return None
    fpr, tpr = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    i = int(np.flatnonzero(fnr <= fpr)[0])  # fnr falls from 1 and fpr rises from 0: they cross once
    if i == 0:
        return float(fpr[0])
    # the segment from point i-1 (fnr > fpr) to point i (fnr <= fpr): where the two lines meet
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def classification_report(
    labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5
) -> dict[str, float | int | None]:
    """AUC, and accuracy / precision / recall / F1 of "fake" at ``threshold``."""
    y = np.asarray(labels, dtype=int)
    predicted = (np.asarray(scores, dtype=float) >= threshold).astype(int)
    tp = int(((predicted == 1) & (y == 1)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(y),
        "fakes": int(y.sum()),
        "auc": roc_auc(y, scores),
        "eer": equal_error_rate(y, scores),
        "accuracy": float((predicted == y).mean()) if len(y) else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def aggregate_mean(scores: Sequence[float]) -> float:
    return float(np.mean(scores))


def aggregate_confident(scores: Sequence[float], t: float = 0.8) -> float:
    """The DFDC winner's rule: when enough frames are confidently fake (more than len/2.5 and more
    than 11), the mean of those; when over 90 % are confidently real (< 0.2), the mean of those;
    otherwise the plain mean."""
    p = np.asarray(scores, dtype=float)
    fakes = int((p > t).sum())
    if fakes > len(p) // 2.5 and fakes > 11:
        return float(p[p > t].mean())
    if int((p < 0.2).sum()) > 0.9 * len(p):
        return float(p[p < 0.2].mean())
    return float(p.mean())


def aggregate_majority(scores: Sequence[float], threshold: float = 0.5) -> float:
    """The share of frames judged fake: above 0.5 when most are."""
    return float((np.asarray(scores, dtype=float) >= threshold).mean())


AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": aggregate_mean,
    "confident": aggregate_confident,
    "majority": aggregate_majority,
}
