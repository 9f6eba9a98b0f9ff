"""Metrics of a probability forecast against 0/1 outcomes, and bootstrap intervals.

Definitions (y = outcome, p = predicted probability, n rows):

* roc_auc: probability that a random positive gets a higher p than a random negative (ties 1/2);
* pr_auc: average precision (sklearn's step-wise area under precision-recall);
* brier: mean (p - y)^2;
* ece: expected calibration error over ``bins`` equal-frequency bins of p (rows sorted by p and cut
  into bins of equal count): sum over bins of (rows in bin / n) * |mean y - mean p|;
* lift_K: positive rate among the K% highest p divided by the overall positive rate;
* capture_K: share of all positives that fall into the K% highest p.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney rank formula (ties count 1/2); NaN with a single class."""
    y = np.asarray(y)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall step curve)."""
    if np.asarray(y).sum() == 0:
        return float("nan")
    return float(average_precision_score(y, p))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probability and outcome."""
    return float(np.mean((np.asarray(p, dtype="float64") - np.asarray(y, dtype="float64")) ** 2))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over ``bins`` equal-frequency bins of ``p``."""
    order = np.argsort(p, kind="stable")
    y_sorted = np.asarray(y, dtype="float64")[order]
    p_sorted = np.asarray(p, dtype="float64")[order]
    total = 0.0
    for idx in np.array_split(np.arange(len(p_sorted)), bins):
        if len(idx):
            total += len(idx) * abs(y_sorted[idx].mean() - p_sorted[idx].mean())
    return float(total / max(len(p_sorted), 1))


def top_share_stats(y: np.ndarray, p: np.ndarray, share: float) -> tuple[float, float]:
    """(lift, capture) of the ``share`` (0..1) of rows with the highest ``p``."""
    y = np.asarray(y, dtype="float64")
    n_top = max(1, round(share * len(y)))
    top = np.argsort(-np.asarray(p, dtype="float64"), kind="stable")[:n_top]
    positives = y.sum()
    if positives == 0:
        return float("nan"), float("nan")
    rate_top = y[top].mean()
    return float(rate_top / y.mean()), float(y[top].sum() / positives)


def score_all(y: np.ndarray, p: np.ndarray, *, ece_bins: int = 10) -> dict[str, float]:
    """Every point metric of the module for one forecast (rows and base rate included)."""
    lift_10, capture_10 = top_share_stats(y, p, 0.10)
    lift_20, capture_20 = top_share_stats(y, p, 0.20)
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": brier(y, p),
        "ece": ece(y, p, ece_bins),
        "lift_10": lift_10,
        "capture_10": capture_10,
        "lift_20": lift_20,
        "capture_20": capture_20,
        "rows": float(len(y)),
        "base_rate": float(np.mean(y)) if len(y) else float("nan"),
        "mean_probability": float(np.mean(p)) if len(p) else float("nan"),
    }


def bootstrap_indices(n: int, rounds: int, seed: int) -> np.ndarray:
    """``rounds`` x ``n`` row indices drawn with replacement (one resample per row of the array)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(rounds, n))


def bootstrap_interval(
    y: np.ndarray, p: np.ndarray, metric: MetricFn, idx: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over the resamples ``idx``."""
    values = np.array([metric(y[i], p[i]) for i in idx])
    values = values[np.isfinite(values)]
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def paired_differences(
    y: np.ndarray,
    p_model: np.ndarray,
    p_other: np.ndarray,
    metrics: Mapping[str, MetricFn],
    idx: np.ndarray,
    level: float = 0.95,
) -> dict[str, float]:
    """Model minus other for each metric, with a paired percentile bootstrap interval.

    Both forecasts are scored on the same resampled rows, so the interval reflects the difference
    itself and not the (much larger) sampling noise of each metric. Keys: ``<metric>_diff``,
    ``<metric>_diff_ci_low``, ``<metric>_diff_ci_high``.
    """
    out: dict[str, float] = {}
    alpha = (1 - level) / 2
    for name, fn in metrics.items():
        point = fn(y, p_model) - fn(y, p_other)
        diffs = np.array([fn(y[i], p_model[i]) - fn(y[i], p_other[i]) for i in idx])
        diffs = diffs[np.isfinite(diffs)]
        out[f"{name}_diff"] = float(point)
        out[f"{name}_diff_ci_low"] = float(np.quantile(diffs, alpha))
        out[f"{name}_diff_ci_high"] = float(np.quantile(diffs, 1 - alpha))
    return out
