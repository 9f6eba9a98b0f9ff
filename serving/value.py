"""Lifetime value of a client: the margin we expect from them over the next few years.

The retention books' formula, lifetime value = yearly purchases x average price x years, with the
price counted as margin (documented in docs/serving.md, parameters in params.yaml `score:`)::

    active_span_days = max(days_since_first_order - recency_days, min_active_span_days)
    yearly_orders    = orders_total / (active_span_days / 365.25)
    average_margin   = margin_total / orders_total                              (basis "margin")
                     = amount_total * default_margin_rate / orders_total        (basis "revenue")
    years            = sum_{t=1..horizon_years} retention_rate^(t-1) / (1 + discount_rate)^t
    value            = yearly_orders * average_margin * years
                     = margin_total (or amount_total * default_margin_rate) / active_span_years * years

The order count cancels, so only the totals are read. The basis is chosen per client: ``margin``
where the client's ``margin_total`` is known; ``revenue`` where it is null (the export has no
margin, or none of the client's orders carries one) and ``score.default_margin_rate`` is set (a
business assumption of the gross margin share, not fitted); ``none`` (value 0) for a client without
a completed order, or without a known margin when the rate is null.

The active span runs from the first to the last completed order, so a lapsed client is valued at
the rate they bought while active (what winning them back restores), and the floor keeps a
one-order client from being valued as if that order recurred every day. Money is in the company
currency of the CRM export.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.config import ScoreParams

DAYS_PER_YEAR = 365.25
MARGIN = "margin"
REVENUE = "revenue"
NO_BASIS = "none"
#: What a client's value is computed from, in the order reported.
VALUE_BASES = (MARGIN, REVENUE, NO_BASIS)


@dataclass(frozen=True)
class ClientValue:
    """Value per client (company currency; 0 where the basis is "none") and its basis per client."""

    value: np.ndarray
    basis: np.ndarray


def value_multiplier(params: ScoreParams) -> float:
    """Years of yearly margin one client is worth: retained and discounted over the horizon."""
    years = np.arange(1, params.horizon_years + 1, dtype=np.float64)
    return float(np.sum(params.retention_rate ** (years - 1) / (1.0 + params.discount_rate) ** years))


def compute_value(
    margin_total: np.ndarray,
    amount_total: np.ndarray,
    days_since_first_order: np.ndarray,
    recency_days: np.ndarray,
    params: ScoreParams,
) -> ClientValue:
    """Lifetime value per client (company currency) from their own order history, and its basis.

    Arrays are aligned per client (``margin_total`` and ``amount_total`` are the totals of the
    completed orders; NaN where unknown). A missing first order (no completed order) gives 0 with
    basis "none"; a missing margin falls back to ``amount_total * params.default_margin_rate``
    (basis "revenue"), or to 0 with basis "none" when that rate is None.
    """
    margin = np.asarray(margin_total, dtype=np.float64)
    amount = np.asarray(amount_total, dtype=np.float64)
    first = np.asarray(days_since_first_order, dtype=np.float64)
    recency = np.asarray(recency_days, dtype=np.float64)
    rate = params.default_margin_rate
    has_order = np.isfinite(first)
    on_margin = has_order & np.isfinite(margin)
    on_revenue = has_order & ~on_margin & np.isfinite(amount) & (rate is not None)
    price_total = np.where(on_margin, margin, np.where(on_revenue, amount * (rate or 0.0), np.nan))
    span = np.fmax(first - np.nan_to_num(recency, nan=0.0), params.min_active_span_days)
    value = price_total / (span / DAYS_PER_YEAR) * value_multiplier(params)
    basis = np.where(on_margin, MARGIN, np.where(on_revenue, REVENUE, NO_BASIS)).astype(object)
    return ClientValue(value=np.where(np.isfinite(value), value, 0.0), basis=basis)


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
