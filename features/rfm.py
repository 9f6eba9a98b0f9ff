"""Recency, frequency and monetary features of completed orders before a cutoff.

All aggregates are conditional aggregates over ``orders ⋈ cutoffs`` (rows with
``ordered_at < cutoff_at``), grouped once by (client, cutoff) together with the payment and
lifecycle aggregates (see ``features.build``). Gaps between consecutive completed orders are
computed once on the order table with ``lag()``; a gap belongs to the later order, so the
``ordered_at < cutoff_at`` filter keeps exactly the gaps known at the cutoff.
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
    """Per-order columns computed once for every cutoff: completion flag and epoch seconds."""
    return orders.mutate(
        is_completed=orders.status == "completed",
        ordered_s=orders.ordered_at_s,
        due_s=orders.due_at_s,
        paid_s=orders.paid_at_s,
    )


def prepare_gaps(orders: ir.Table) -> ir.Table:
    """Completed orders with ``gap_days``, the time since the client's previous completed order.

    Days (double), null for a client's first completed order. A narrow table (client, time, gap)
    so the window sort stays small; the gap belongs to the later order, so filtering it by
    ``ordered_at < cutoff_at`` keeps exactly the gaps known at the cutoff.
    """
    done = orders.filter(orders.status == "completed").select(
        "client_id", "ordered_at", ordered_s=orders.ordered_at_s
    )
    # ties in ordered_at need no tie-break: the gaps between tied orders are 0 whichever comes first
    w = ibis.window(group_by=done.client_id, order_by=done.ordered_s)
    return done.mutate(gap_days=(done.ordered_s - done.ordered_s.lag().over(w)) / SECONDS_PER_DAY)


def gap_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Mean and spread of the gaps between completed orders before the cutoff (``j``: gaps ⋈ cutoffs)."""
    return {
        "gap_mean_days": j.gap_days.mean(),
        "agg_gap_std": j.gap_days.std(how="sample"),
        "agg_gaps": j.gap_days.count(),
    }


def rfm_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Aggregates over completed (and all) orders before the cutoff, per (client, cutoff).

    ``j`` is prepared orders joined to the cutoffs table on ``ordered_at < cutoff_at``.
    """
    done = j.is_completed
    aggs: dict[str, ir.Value] = {
        "orders_total": j.count(where=done),
        "amount_total": j.amount.sum(where=done),
        "margin_total": j.margin.sum(where=done),
        "first_order_at": j.ordered_at.min(where=done),
        "last_order_at": j.ordered_at.max(where=done),
        "agg_first_s": j.ordered_s.min(where=done),
        "agg_last_s": j.ordered_s.max(where=done),
        "agg_orders_all": j.count(),
        "cancelled_orders_total": j.count(where=j.status == "cancelled"),
        "returned_orders_total": j.count(where=j.status == "returned"),
    }
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
