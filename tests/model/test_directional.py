"""Directional checks on a churn model trained on generated sample data.

Feature rows of real clients at the test cutoff are perturbed coherently (every complaint column
tells the same story) and the model must move the probability the way the business expects.
Trees are not monotone per row, so the checks are on the mean over many clients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.dataset import cutoff_dates
from models.train import TrainedModel

pytestmark = pytest.mark.slow


def _test_rows(model: TrainedModel, features: pd.DataFrame) -> pd.DataFrame:
    rows = features[
        features["state"].isin(["new", "active"]) & (cutoff_dates(features) == model.split.test_cutoff)
    ]
    assert len(rows) > 500
    return rows.reset_index(drop=True)


def _last_order_moved_back(rows: pd.DataFrame, days: float, rhythm: dict[str, float]) -> pd.DataFrame:
    """The rows with each client's last order ``days`` further back, in every recency column.

    Recency, the 14- and 30-day windows (emptied), the overdue ratio, the last order's weight in
    the decayed counts and the rhythm probabilities (features/rhythm.py, with the constants fitted
    at the cutoff, ``rhythm``) tell the same story; the order rate and the gaps stay as they were.
    """
    out = rows.copy()
    r = rows["recency_days"] + days
    out["recency_days"] = r
    for col in ("orders_14d", "orders_30d", "amount_30d", "margin_30d"):
        out[col] = 0.0
    out["overdue_ratio"] = r / rows["gap_mean_days"]
    for d in (30, 90, 365):
        out[f"decayed_orders_{d}d"] = (
            rows[f"decayed_orders_{d}d"] - np.exp(-rows["recency_days"] / d) + np.exp(-r / d)
        )
    lam = rows["order_rate_per_day"]
    new = rows["days_since_first_order"] < 100
    mu = np.where(new, rhythm["onboarding_hazard_per_day"], rhythm["dormancy_hazard_per_day"])
    e = np.exp(-(lam + mu) * r)
    alive = e / (e + mu / (lam + mu) * (1 - e))
    out["silence_probability"] = np.exp(-lam * r)
    out["alive_probability"] = alive
    out["rhythm_no_order_probability"] = 1 - alive * lam / (lam + mu) * (1 - np.exp(-(lam + mu) * 100))
    out["expected_orders_horizon"] = alive * lam / mu * (1 - np.exp(-mu * 100))
    return out


def test_longer_since_the_last_order_raises_churn_probability(
    sample_churn_model: TrainedModel, sample_features: pd.DataFrame, sample_summary: dict[str, Any]
) -> None:
    model = sample_churn_model.model
    rows = _test_rows(sample_churn_model, sample_features)
    test_cutoff = str(sample_churn_model.split.test_cutoff)
    rhythm = next(c["rhythm"] for c in sample_summary["cutoffs"] if c["cutoff_at"].startswith(test_cutoff))
    # Recent buyers whose last order is moved 60 days back, coherently in every recency column.
    recent = rows[rows["recency_days"] < 20].copy()
    later = _last_order_moved_back(recent, 60.0, rhythm)
    before = model.predict_probability(recent)
    after = model.predict_probability(later)
    assert after.mean() > before.mean() + 0.05
    assert np.mean(after > before) > 0.8


def _with_complaint(rows: pd.DataFrame, *, severity: int, resolved: bool) -> pd.DataFrame:
    """One complaint 30 days before the client's last order, consistently in every complaint column.

    Placing it before the last order keeps the story coherent for a resolved complaint (the client
    ordered again after it) and compares both cases at the same timing.
    """
    out = rows.copy()
    days_ago = rows["recency_days"] + 30.0
    out["complaints_90d"] = (days_ago < 90).astype("float64")
    out["complaints_365d"] = (days_ago < 365).astype("float64")
    out["complaints_total"] = 1.0
    out["complaint_severity_max"] = float(severity)
    out["complaint_severity_mean"] = float(severity)
    out["complaint_severity_weighted_365d"] = float(severity) * out["complaints_365d"]
    out["open_complaints"] = 0.0 if resolved else 1.0
    out["open_complaint_severity_max"] = 0.0 if resolved else float(severity)
    out["resolved_complaint_share"] = 1.0 if resolved else 0.0
    out["complaint_resolve_days_mean"] = 3.0 if resolved else np.nan
    out["days_since_last_complaint"] = days_ago
    out["human_factor_complaints_365d"] = 0.0
    out["last_complaint_resolved"] = 1.0 if resolved else 0.0
    out["last_complaint_severity"] = float(severity)
    return out


def test_open_severe_complaint_raises_risk_and_resolved_trifle_does_not(
    sample_churn_model: TrainedModel, sample_features: pd.DataFrame
) -> None:
    model = sample_churn_model.model
    rows = _test_rows(sample_churn_model, sample_features)
    clean = rows[rows["complaints_total"] == 0]
    assert len(clean) > 300
    none = model.predict_probability(clean).mean()
    resolved_1 = model.predict_probability(_with_complaint(clean, severity=1, resolved=True)).mean()
    open_4 = model.predict_probability(_with_complaint(clean, severity=4, resolved=False)).mean()
    assert open_4 > resolved_1 + 0.03, (none, resolved_1, open_4)
    assert open_4 > none + 0.03, (none, resolved_1, open_4)
    # A resolved trifle does not make the client riskier than one who never complained. Tolerance
    # 0.02 on a mean near 0.17: measured +0.011 (8000 clients) and +0.007 (20000 clients), i.e. the
    # model learns "no harm" but not the generator's loyalty bonus of a resolution.
    assert resolved_1 <= none + 0.02, (none, resolved_1, open_4)
