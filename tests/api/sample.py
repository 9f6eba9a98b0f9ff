"""A fabricated feature table with the contract's columns, for serving tests and benchmarks.

Rows are drawn independently per cutoff with planted effects (long recency relative to the usual
gap and open severe complaints raise churn; short lapses raise win-back), so the real training code
(models.train) learns something, and labels are null at the last cutoff (its window is the
future). Used until the features stage output is available in tests; the contract check runs on it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import FEATURE_COLUMNS, check_feature_table

MANAGERS = ("m01", "m02", "m03", "m04", "m05", "m06")
SEGMENTS = ("retail", "wholesale")


def make_features(
    n_clients: int = 1500,
    *,
    cutoffs: int = 8,
    every_days: int = 50,
    seed: int = 0,
    last_cutoff: dt.date = dt.date(2025, 1, 1),
) -> pd.DataFrame:
    """Feature table of ``n_clients`` clients at ``cutoffs`` cutoffs ``every_days`` apart."""
    rng = np.random.default_rng(seed)
    frames = []
    ids = np.array([f"c{i:07d}" for i in range(n_clients)], dtype=object)
    segment = rng.choice(SEGMENTS, size=n_clients)
    for j in range(cutoffs):
        cut = last_cutoff - dt.timedelta(days=every_days * (cutoffs - 1 - j))
        n = n_clients
        f: dict[str, np.ndarray] = {}
        has_order = rng.random(n) > 0.04
        first = rng.uniform(10, 1500, n)
        gap = rng.gamma(2.0, 20.0, n) + 5
        recency = np.minimum(rng.exponential(gap * 1.6), first)
        recency = np.where(rng.random(n) < 0.35, rng.uniform(90, 900, n), recency)
        recency = np.minimum(recency, first)
        orders_total = np.maximum(1, np.round((first - recency) / gap) + 1)
        avg_amount = rng.lognormal(5, 0.6, n)
        f["recency_days"] = recency
        f["tenure_days"] = first + rng.uniform(0, 60, n)
        f["days_since_first_order"] = first
        for w in (30, 90, 180, 365):
            k = np.where(recency < w, rng.poisson(np.maximum(w / gap, 0.2)), 0).astype(float)
            f[f"orders_{w}d"] = k
            f[f"amount_{w}d"] = k * avg_amount
            f[f"margin_{w}d"] = k * avg_amount * 0.25
        f["orders_total"] = orders_total
        f["amount_total"] = orders_total * avg_amount
        margin_rate = np.where(rng.random(n) < 0.05, -0.1, 0.25)
        f["margin_total"] = orders_total * avg_amount * margin_rate
        f["avg_order_amount"] = avg_amount
        f["gap_mean_days"] = np.where(orders_total > 1, gap, np.nan)
        f["gap_std_days"] = np.where(orders_total > 2, gap * 0.4, np.nan)
        f["overdue_ratio"] = recency / gap
        f["orders_trend_90d"] = rng.normal(0, 1, n)
        f["amount_trend_90d"] = rng.normal(0, 1, n)
        f["cancelled_orders_total"] = rng.poisson(0.3, n).astype(float)
        f["returned_orders_total"] = rng.poisson(0.2, n).astype(float)
        f["cancelled_share"] = f["cancelled_orders_total"] / (orders_total + f["cancelled_orders_total"])
        f["returned_share"] = f["returned_orders_total"] / (orders_total + f["returned_orders_total"])
        complaints = rng.poisson(0.6, n).astype(float)
        f["complaints_90d"] = np.minimum(complaints, rng.poisson(0.2, n))
        f["complaints_365d"] = np.minimum(complaints, rng.poisson(0.5, n))
        f["complaints_total"] = complaints
        sev = np.where(complaints > 0, rng.integers(1, 6, n), np.nan).astype(float)
        f["complaint_severity_max"] = sev
        f["complaint_severity_mean"] = sev * 0.8
        f["complaint_severity_weighted_365d"] = f["complaints_365d"] * np.nan_to_num(sev)
        open_ = np.where(complaints > 0, rng.binomial(1, 0.3, n), 0).astype(float)
        f["open_complaints"] = open_
        f["open_complaint_severity_max"] = np.where(open_ > 0, sev, np.nan)
        f["resolved_complaint_share"] = np.where(
            complaints > 0, 1 - open_ / np.maximum(complaints, 1), np.nan
        )
        f["complaint_resolve_days_mean"] = np.where(complaints > 0, rng.uniform(1, 40, n), np.nan)
        f["days_since_last_complaint"] = np.where(complaints > 0, rng.uniform(1, 400, n), np.nan)
        f["human_factor_complaints_365d"] = np.minimum(f["complaints_365d"], rng.poisson(0.2, n))
        f["last_complaint_resolved"] = np.where(complaints > 0, 1 - open_, np.nan)
        f["last_complaint_severity"] = sev
        f["payment_delay_mean_days"] = rng.exponential(3, n)
        f["late_payment_share"] = rng.beta(1, 6, n)
        f["late_payments_365d"] = rng.poisson(0.8, n).astype(float)
        f["overdue_unpaid_amount"] = np.where(rng.random(n) < 0.05, rng.uniform(500, 3000, n), 0.0)
        f["is_new"] = (first < 100).astype(float)
        times_lost = rng.poisson(0.3, n).astype(float)
        f["days_since_loss"] = np.where(times_lost > 0, rng.uniform(30, 900, n), np.nan)
        f["times_lost"] = times_lost
        f["times_returned"] = np.minimum(times_lost, rng.poisson(0.2, n))
        f["twice_lost"] = (times_lost >= 2).astype(float)
        f["returned_recently"] = ((f["times_returned"] > 0) & (rng.random(n) < 0.4)).astype(float)
        f["days_since_return"] = np.where(f["times_returned"] > 0, rng.uniform(10, 600, n), np.nan)
        f["prevention_contacts_365d"] = rng.poisson(0.3, n).astype(float)
        f["winback_contacts_365d"] = rng.poisson(0.2, n).astype(float)
        f["days_since_last_contact"] = np.where(rng.random(n) < 0.4, rng.uniform(1, 365, n), np.nan)
        # families without a hand-made column here (rhythm, basket) are null: the API tests
        # exercise serving, not those features, and LightGBM handles all-null inputs
        for name in FEATURE_COLUMNS:
            f.setdefault(name, np.full(n, np.nan))
        for name in FEATURE_COLUMNS:
            if name not in ("recency_days", "days_since_first_order", "tenure_days"):
                f[name] = np.where(has_order | (name == "tenure_days"), f[name], np.nan)
        f["recency_days"] = np.where(has_order, recency, np.nan)
        f["days_since_first_order"] = np.where(has_order, first, np.nan)

        state = np.select(
            [~has_order, recency >= 730, recency >= 360, recency >= 180, recency >= 90, first < 100],
            ["no_order", "lost", "lapsed_360", "lapsed_180", "lapsed_90", "new"],
            "active",
        )
        severe_open = np.nan_to_num(f["open_complaint_severity_max"]) >= 4
        churn_logit = -1.2 + 1.1 * np.log1p(recency / gap) + 1.2 * severe_open - 0.002 * orders_total
        winback_logit = 0.3 - 0.006 * recency + 0.4 * np.log1p(orders_total) - 0.8 * severe_open
        churn_label = (rng.random(n) < 1 / (1 + np.exp(-churn_logit))).astype(float)
        winback_label = (rng.random(n) < 1 / (1 + np.exp(-winback_logit))).astype(float)
        if j == cutoffs - 1:
            churn_label[:] = np.nan
            winback_label[:] = np.nan
        manager = rng.choice(MANAGERS, size=n)
        loss_manager = np.where(
            np.isin(state, ["lapsed_90", "lapsed_180", "lapsed_360", "lost"]),
            rng.choice(MANAGERS, size=n),
            np.full(n, None, dtype=object),
        )
        frame = pd.DataFrame(
            {
                "client_id": ids,
                "cutoff_at": pd.Timestamp(cut, tz="UTC"),
                "state": state,
                "manager_id": manager,
                "segment": segment,
                "do_not_contact": rng.random(n) < 0.02,
                "first_order_at": pd.Timestamp(cut, tz="UTC")
                - pd.to_timedelta(np.nan_to_num(first), unit="D"),
                "last_order_at": pd.Timestamp(cut, tz="UTC")
                - pd.to_timedelta(np.nan_to_num(recency), unit="D"),
                "loss_at": pd.NaT,
                "loss_manager_id": loss_manager,
                **{name: f[name] for name in FEATURE_COLUMNS},
                "churn_label": np.where(np.isin(state, ["new", "active"]), churn_label, np.nan),
                "winback_label": np.where(
                    np.isin(state, ["lapsed_90", "lapsed_180", "lapsed_360"]), winback_label, np.nan
                ),
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["loss_at"] = pd.to_datetime(out["loss_at"], utc=True)
    check_feature_table(out.columns, source="tests/api/sample.py")
    return out


def write_features(path: Path, frame: pd.DataFrame) -> Path:
    """Write the table as Parquet (the features stage's format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path
