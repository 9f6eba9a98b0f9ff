"""Metrics on hand-made forecasts whose right answer is computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import (
    bootstrap_indices,
    bootstrap_interval,
    brier,
    ece,
    paired_differences,
    roc_auc,
    score_all,
    top_share_stats,
)


def test_roc_auc_counts_ordered_pairs_and_half_ties() -> None:
    y = np.array([0, 0, 1, 1])
    # pairs (pos, neg): (0.8,0.1) ok, (0.8,0.4) ok, (0.4,0.1) ok, (0.4,0.4) tie -> 3.5 / 4
    p = np.array([0.1, 0.4, 0.4, 0.8])
    assert roc_auc(y, p) == pytest.approx(3.5 / 4)
    assert np.isnan(roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_brier_and_ece_by_hand() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.2, 0.4, 0.6, 0.8])
    assert brier(y, p) == pytest.approx((0.04 + 0.36 + 0.36 + 0.04) / 4)
    # two equal-frequency bins: {0.2, 0.4} mean p 0.3 vs rate 0.5; {0.6, 0.8} mean 0.7 vs 0.5
    assert ece(y, p, bins=2) == pytest.approx(0.5 * 0.2 + 0.5 * 0.2)
    assert ece(np.array([0, 1]), np.array([0.0, 1.0]), bins=2) == pytest.approx(0.0)


def test_lift_and_capture_of_the_top_share() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])  # base rate 0.2
    p = np.linspace(1.0, 0.1, 10)  # row 0 ranked first
    lift, capture = top_share_stats(y, p, 0.1)
    assert lift == pytest.approx(1.0 / 0.2)
    assert capture == pytest.approx(0.5)
    lift_20, capture_20 = top_share_stats(y, p, 0.2)
    assert (lift_20, capture_20) == pytest.approx((0.5 / 0.2, 0.5))


def test_bootstrap_interval_brackets_the_point_and_paired_difference_is_signed() -> None:
    rng = np.random.default_rng(0)
    y = rng.binomial(1, 0.3, 2000)
    good = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.15, 2000), 0.01, 0.99)
    noise = rng.uniform(0, 1, 2000)
    idx = bootstrap_indices(len(y), 100, seed=1)
    low, high = bootstrap_interval(y, good, roc_auc, idx)
    assert low < roc_auc(y, good) < high
    diff = paired_differences(y, good, noise, {"roc_auc": roc_auc}, idx)
    assert diff["roc_auc_diff_ci_low"] > 0
    assert diff["roc_auc_diff_ci_low"] < diff["roc_auc_diff"] < diff["roc_auc_diff_ci_high"]


def test_score_all_names_every_metric() -> None:
    y = np.array([0, 1, 0, 1, 1])
    out = score_all(y, np.array([0.1, 0.9, 0.3, 0.6, 0.7]), ece_bins=2)
    for key in ("roc_auc", "pr_auc", "brier", "ece", "lift_10", "capture_10", "lift_20", "capture_20"):
        assert np.isfinite(out[key]), key
    assert out["roc_auc"] == pytest.approx(1.0)
