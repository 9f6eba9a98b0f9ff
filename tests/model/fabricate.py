"""A small fabricated feature table with planted effects, for model tests that must not wait for
the real generate -> ingest -> features pipeline (and for fast unit-level checks of the models).

Each (client, cutoff) row draws its features independently; the true event probability is a known
logistic function of a few features, returned as a ``truth`` frame shaped like the generator's
ground truth, so the oracle can be scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import FEATURE_COLUMNS, FEATURE_INFO_COLUMNS

STATE_WEIGHTS = {
    "new": 0.08,
    "active": 0.47,
    "lapsed_90": 0.12,
    "lapsed_180": 0.1,
    "lapsed_360": 0.1,
    "lost": 0.1,
    "no_order": 0.03,
}


def fabricate_features(
    clients: int = 1500, *, seed: int = 0, shuffled_effects: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature table, truth) over 24 monthly cutoffs 2023-01-01.. and a scoring cutoff 2025-01-01."""
    rng = np.random.default_rng(seed)
    cutoffs = [pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(days=30 * i) for i in range(24)]
    export = pd.Timestamp("2025-01-01", tz="UTC")
    cutoffs.append(export)
    n = clients * len(cutoffs)
    frame = pd.DataFrame(
        {
            "client_id": np.tile([f"C{i:06d}" for i in range(clients)], len(cutoffs)),
            "cutoff_at": pd.DatetimeIndex(cutoffs).repeat(clients),
        }
    )
    states = np.array(list(STATE_WEIGHTS))
    frame["state"] = rng.choice(states, size=n, p=np.array(list(STATE_WEIGHTS.values())))
    for col in FEATURE_COLUMNS:
        frame[col] = rng.gamma(2.0, 5.0, size=n)
    lapsed_days = {"lapsed_90": 120.0, "lapsed_180": 250.0, "lapsed_360": 450.0}
    base = np.where(frame["state"].isin(["new", "active"]), rng.uniform(0, 90, n), 0.0)
    for s, d in lapsed_days.items():
        base = np.where(frame["state"] == s, d + rng.uniform(-30, 60, n), base)
    frame["recency_days"] = base
    frame["orders_365d"] = rng.poisson(4, n).astype("float64")
    frame["orders_total"] = frame["orders_365d"] + rng.poisson(3, n)
    frame["amount_365d"] = frame["orders_365d"] * rng.gamma(3.0, 50.0, n)
    frame["amount_total"] = frame["amount_365d"] + rng.gamma(2.0, 100.0, n)
    frame["is_new"] = (frame["state"] == "new").astype("float64")
    open_c = rng.binomial(1, 0.15, n)
    frame["open_complaints"] = open_c.astype("float64")
    frame["open_complaint_severity_max"] = np.where(open_c == 1, rng.integers(1, 6, n), 0).astype("float64")
    frame["complaints_365d"] = frame["open_complaints"] + rng.poisson(0.3, n)
    frame["complaints_total"] = frame["complaints_365d"] + rng.poisson(0.3, n)
    frame["complaint_severity_max"] = np.maximum(frame["open_complaint_severity_max"], rng.integers(0, 3, n))
    frame["days_since_last_complaint"] = np.where(
        frame["complaints_total"] > 0, rng.uniform(0, 300, n), np.nan
    )
    frame["last_complaint_resolved"] = np.where(open_c == 1, 0.0, 1.0)
    for col in FEATURE_INFO_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    frame["do_not_contact"] = False

    churn_logit = (
        -1.2
        + 0.03 * (frame["recency_days"] - 45)
        - 0.25 * (frame["orders_365d"] - 4)
        + 0.5 * frame["open_complaint_severity_max"]
        + 0.6 * frame["is_new"]
    )
    win_logit = -0.8 - 0.008 * (frame["recency_days"] - 250) + 0.2 * (frame["orders_total"] - 7)
    if shuffled_effects:
        churn_logit = rng.permutation(churn_logit.to_numpy())
        win_logit = rng.permutation(win_logit.to_numpy())
    churn_p = 1 / (1 + np.exp(-np.asarray(churn_logit, dtype="float64")))
    win_p = 1 / (1 + np.exp(-np.asarray(win_logit, dtype="float64")))
    complete = (frame["cutoff_at"] + pd.Timedelta(days=100)) <= export
    is_churn = frame["state"].isin(["new", "active"])
    is_win = frame["state"].isin(["lapsed_90", "lapsed_180", "lapsed_360"])
    churn_y = rng.binomial(1, churn_p)
    win_y = rng.binomial(1, win_p)
    frame["churn_label"] = pd.array(np.where(is_churn & complete, churn_y, 0), dtype="Int8")
    frame.loc[~(is_churn & complete), "churn_label"] = pd.NA
    frame["winback_label"] = pd.array(np.where(is_win & complete, win_y, 0), dtype="Int8")
    frame.loc[~(is_win & complete), "winback_label"] = pd.NA
    truth = pd.DataFrame(
        {
            "client_id": frame["client_id"],
            "cutoff_at": frame["cutoff_at"],
            "state": np.where(is_churn, "active", np.where(is_win, "lapsed", "other")),
            "churn_probability": np.where(is_churn, churn_p, np.nan),
            "winback_probability": np.where(is_win, win_p, np.nan),
            "label_complete": complete,
        }
    )
    # here the features show everything that drives the event: the observable oracle is the clairvoyant one
    truth["churn_probability_observable"] = truth["churn_probability"]
    truth["winback_probability_observable"] = truth["winback_probability"]
    truth = truth.loc[truth["state"] != "other"].reset_index(drop=True)
    return frame, truth
