"""Recency, frequency and monetary features of completed orders before a cutoff.

All-time aggregates are defined at two levels: what a group of orders adds up to
(``rfm_bucket_aggregates``) and how those sums roll up to the value at a cutoff
(``rfm_aggregates``); ``features.build`` feeds the roll-up one order at a time. Windowed aggregates
are conditional aggregates over the orders before the cutoff. Gaps between consecutive completed
orders are computed once on the order table with ``lag()`` (``with_gaps``); a gap belongs to the
later order, so keeping orders before the cutoff keeps exactly the gaps known at it.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.contract import WINDOWS, ContractError

SECONDS_PER_DAY = 86_400.0
#: The window of the trend features (``orders_trend_90d``): last 90 days vs the 90 days before.
TREND_DAYS = 90
#: The short and yearly windows used by complaint, payment and contact counts (contract names).
SHORT_DAYS = 90
YEAR_DAYS = 365


def check_windows(params: FeatureParams) -> None:
    """The feature names carry the windows; refuse windows the contract has no columns for."""
    if list(params.windows_days) != list(WINDOWS):
        raise ContractError(
            f"features.windows_days must be {list(WINDOWS)} (the feature table's column names, "
            f"e.g. orders_30d, are fixed by features/contract.py); got {params.windows_days}"
        )


def prepare_orders(orders: ir.Table) -> ir.Table:
    """Per-order columns computed once for every cutoff: completion flag and epoch seconds.

    ``orders`` may be narrowed to the columns a consumer needs; due and paid seconds are added
    when their timestamps are there.
    """
    extra = {f"{c}_s": orders[f"{c}_at_s"] for c in ("due", "paid") if f"{c}_at_s" in orders.columns}
    return orders.mutate(is_completed=orders.status == "completed", ordered_s=orders.ordered_at_s, **extra)


def with_gaps(done: ir.Table) -> ir.Table:
    """Completed orders with ``prev_s`` and ``gap_days``: the time since the client's previous one.

    ``done`` is a narrow projection of the client's completed orders with ``ordered_s`` (the
    window sorts every column it carries, so it should carry only what the gap aggregates read).
    ``gap_days`` is days (double; null for the client's first completed order), ``prev_s`` that
    previous order's epoch seconds. Ties in ``ordered_at`` need no tie-break: the gaps between
    tied orders are 0 whichever comes first.
    """
    w = ibis.window(group_by=done.client_id, order_by=done.ordered_s)
    # the lag gets its own projection, so the backend computes the window once, not per use
    o = done.mutate(prev_s=done.ordered_s.lag().over(w))
    return o.mutate(gap_days=(o.ordered_s - o.prev_s) / SECONDS_PER_DAY)


def sum_counts(counts: ir.IntegerValue) -> ir.IntegerValue:
    """The int64 sum of counts (per group of orders) on every backend.

    DuckDB sums BIGINT into HUGEINT, which Ibis still types as int64 (so a later cast to int64
    is dropped) and Parquet stores as DOUBLE; summing as double (exact below 2**53) and casting
    back gives a real BIGINT.
    """
    return counts.cast("float64").sum().cast("int64")


def gap_bucket_aggregates(g: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Sums of the gaps of a group of completed orders (``g``: orders with ``gap_days``)."""
    return {
        "b_gaps": g.gap_days.count(),
        "b_gap_sum": g.gap_days.sum(),
        "b_gap_sq": (g.gap_days * g.gap_days).sum(),
    }


def gap_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Mean and sample spread of the gaps before the cutoff from the sums of ``gap_bucket_aggregates``.

    The spread is ``sqrt((Σg² - (Σg)²/n) / (n - 1))`` (clamped at 0 against rounding): sums only,
    so the roll-up adds up groups of gaps in any order.
    """
    n = sum_counts(j.b_gaps)
    s = j.b_gap_sum.sum()
    var = (j.b_gap_sq.sum() - s * s / n) / (n - 1)
    return {
        "gap_mean_days": ibis.ifelse(n > 0, s / n, ibis.null("float64")),
        "agg_gap_std": ibis.ifelse(n >= 2, ibis.greatest(var, 0.0).sqrt(), ibis.null("float64")),
        "agg_gaps": n,
    }


def rfm_bucket_aggregates(o: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """All-time sums, counts and extremes of a group of orders (``o``: prepared orders).

    The all-time value at a cutoff is the roll-up (``rfm_aggregates``) of these over the groups
    of orders before it; ``features.build`` rolls up single orders. Sums of sums keep SQL's null
    rule: a margin sum is null only when every margin in it is null.
    """
    done = o.is_completed
    return {
        "b_orders": o.count(where=done),
        "b_amount": o.amount.sum(where=done),
        "b_margin": o.margin.sum(where=done),
        "b_first_at": o.ordered_at.min(where=done),
        "b_last_at": o.ordered_at.max(where=done),
        "b_first_s": o.ordered_s.min(where=done),
        "b_last_s": o.ordered_s.max(where=done),
        "b_orders_all": o.count(),
        "b_cancelled": o.count(where=o.status == "cancelled"),
        "b_returned": o.count(where=o.status == "returned"),
    }


def rfm_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """All-time RFM aggregates per (client, cutoff), the roll-up of ``rfm_bucket_aggregates`` before it."""
    return {
        "orders_total": sum_counts(j.b_orders),
        "amount_total": j.b_amount.sum(),
        "margin_total": j.b_margin.sum(),
        "first_order_at": j.b_first_at.min(),
        "last_order_at": j.b_last_at.max(),
        "agg_first_s": j.b_first_s.min(),
        "agg_last_s": j.b_last_s.max(),
        "agg_orders_all": sum_counts(j.b_orders_all),
        "cancelled_orders_total": sum_counts(j.b_cancelled),
        "returned_orders_total": sum_counts(j.b_returned),
    }


def rfm_window_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Windowed aggregates over completed orders in [cutoff - 365 days, cutoff), per (client, cutoff).

    ``j`` is prepared orders joined to the cutoffs they precede (``ordered_at < cutoff_at``); each
    window is a condition on ``start_{w}``, so older orders count in no window.
    """
    done = j.is_completed
    aggs: dict[str, ir.Value] = {}
    for w in params.windows_days:
        in_w = done & (j.ordered_at >= j[f"start_{w}"])
        aggs[f"orders_{w}d"] = j.count(where=in_w)
        aggs[f"amount_{w}d"] = j.amount.sum(where=in_w)
        aggs[f"margin_{w}d"] = j.margin.sum(where=in_w)
    prev = done & (j.ordered_at >= j[f"start_{2 * TREND_DAYS}"]) & (j.ordered_at < j[f"start_{TREND_DAYS}"])
    aggs["agg_orders_prev_trend"] = j.count(where=prev)
    aggs["agg_amount_prev_trend"] = j.amount.sum(where=prev)
    return aggs


def derive_rfm(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Final RFM columns from the aggregates on the (client, cutoff) rows (after the left join).

    Counts and amount sums are 0 when the client has no such orders; a margin sum is 0 with no
    orders in the window and null when every order in it has a null margin.
    """
    zero_f = ibis.literal(0.0)
    n_total = t.orders_total.fill_null(0)
    out: dict[str, ir.Value] = {
        "recency_days": (t.cutoff_s - t.agg_last_s) / SECONDS_PER_DAY,
        "tenure_days": (t.cutoff_s - t.created_at_s) / SECONDS_PER_DAY,
        "days_since_first_order": (t.cutoff_s - t.agg_first_s) / SECONDS_PER_DAY,
    }
    for w in params.windows_days:
        n_w = t[f"orders_{w}d"].fill_null(0)
        out[f"orders_{w}d"] = n_w
    out["orders_total"] = n_total
    for w in params.windows_days:
        out[f"amount_{w}d"] = t[f"amount_{w}d"].fill_null(zero_f)
    out["amount_total"] = t.amount_total.fill_null(zero_f)
    for w in params.windows_days:
        n_w = t[f"orders_{w}d"].fill_null(0)
        out[f"margin_{w}d"] = ibis.ifelse(n_w == 0, zero_f, t[f"margin_{w}d"])
    out["margin_total"] = ibis.ifelse(n_total == 0, zero_f, t.margin_total)
    out["avg_order_amount"] = ibis.ifelse(n_total > 0, t.amount_total / n_total, ibis.null("float64"))
    out["gap_mean_days"] = t.gap_mean_days
    out["gap_std_days"] = ibis.ifelse(t.agg_gaps.fill_null(0) >= 2, t.agg_gap_std, ibis.null("float64"))
    recency = out["recency_days"]
    out["overdue_ratio"] = ibis.ifelse(
        t.gap_mean_days.notnull() & (t.gap_mean_days != 0), recency / t.gap_mean_days, ibis.null("float64")
    )
    n_trend = t[f"orders_{TREND_DAYS}d"].fill_null(0)
    a_trend = t[f"amount_{TREND_DAYS}d"].fill_null(zero_f)
    out["orders_trend_90d"] = n_trend - t.agg_orders_prev_trend.fill_null(0)
    out["amount_trend_90d"] = ((a_trend + 1.0) / (t.agg_amount_prev_trend.fill_null(zero_f) + 1.0)).ln()
    n_all = t.agg_orders_all.fill_null(0)
    cancelled = t.cancelled_orders_total.fill_null(0)
    returned = t.returned_orders_total.fill_null(0)
    out["cancelled_orders_total"] = cancelled
    out["returned_orders_total"] = returned
    out["cancelled_share"] = ibis.ifelse(n_all > 0, cancelled / n_all, zero_f)
    out["returned_share"] = ibis.ifelse(n_all > 0, returned / n_all, zero_f)
    return out
