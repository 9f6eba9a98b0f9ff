"""Lifetime value of a client: the margin we expect from them over the next few years.

Formula (documented in docs/serving.md, parameters in params.yaml `score:`)::

    active_span_days = max(days_since_first_order - recency_days, min_active_span_days)
    yearly_margin    = margin_total / (active_span_days / 365.25)
    value            = yearly_margin * sum_{t=1..horizon_years} retention_rate^(t-1) / (1 + discount_rate)^t

The active span runs from the first to the last completed order, so a lapsed client is valued at
the rate they bought while active (what winning them back restores), and the floor keeps a
one-order client from being valued as if that order recurred every day. A client without a
completed order has value 0. Money is in the company currency of the CRM export.
"""

from __future__ import annotations

import numpy as np

from serving.config import ScoreParams

DAYS_PER_YEAR = 365.25


def value_multiplier(params: ScoreParams) -> float:
    """Years of yearly margin one client is worth: retained and discounted over the horizon."""
    years = np.arange(1, params.horizon_years + 1, dtype=np.float64)
    return float(np.sum(params.retention_rate ** (years - 1) / (1.0 + params.discount_rate) ** years))


def compute_value(
    margin_total: np.ndarray,
    days_since_first_order: np.ndarray,
    recency_days: np.ndarray,
    params: ScoreParams,
) -> np.ndarray:
    """Lifetime value per client (company currency) from their own order history.

    Arrays are aligned per client; a missing margin or first order (no completed order) gives 0.
    """
    margin = np.asarray(margin_total, dtype=np.float64)
    first = np.asarray(days_since_first_order, dtype=np.float64)
    recency = np.asarray(recency_days, dtype=np.float64)
    span = np.fmax(first - np.nan_to_num(recency, nan=0.0), params.min_active_span_days)
    yearly = margin / (span / DAYS_PER_YEAR)
    value = yearly * value_multiplier(params)
    return np.where(np.isfinite(value), value, 0.0)


def classify_value(value: np.ndarray, client_ids: np.ndarray, params: ScoreParams) -> np.ndarray:
    """Value class per client: A, B or C by share of the total positive value (Pareto classes).

    Clients are sorted by value (descending, ties by client id so the answer is deterministic); a
    client is A while the value of the clients ranked above it is below ``class_a_value_share`` of
    the total, B while it is below ``class_a_value_share + class_b_value_share``, else C. Clients
    with no positive value are C.
    """
    v = np.asarray(value, dtype=np.float64)
    out = np.full(v.shape[0], "C", dtype=object)
    positive = np.flatnonzero(v > 0)
    if positive.size == 0:
        return out
    order = positive[np.lexsort((np.asarray(client_ids)[positive].astype(str), -v[positive]))]
    sorted_v = v[order]
    total = sorted_v.sum()
    before = (np.cumsum(sorted_v) - sorted_v) / total
    cls = np.where(
        before < params.class_a_value_share,
        "A",
        np.where(before < params.class_a_value_share + params.class_b_value_share, "B", "C"),
    )
    out[order] = cls
    return out
