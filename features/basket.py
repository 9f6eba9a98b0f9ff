"""Basket, return and regularity features of the orders before a cutoff.

Simple RFM already says how recently, how often and how much a client buys. What it misses, and
what these add:

* the basket: how many distinct products (``orders.item_count``) and units (``orders.quantity``)
  a completed order holds, and whether recent baskets shrink. A client who narrows its baskets
  is often moving its purchases elsewhere before it stops. These need the optional basket
  columns of the orders contract and are null (not 0) when a CRM does not export them;
* returns: the value sent back recently and the time since the last return. Returns are the
  closest thing to dissatisfaction that a transaction-only export holds;
* regularity: completed orders in the last 14 days (is the client buying right now) and the
  share of the 30-day periods since its first order in which it ordered at all. Both are
  measured from the client's own first order, so they mean the same at every cutoff even when
  the history is short (one year of data; calendar seasonality cannot be learnt from that).

All aggregates are conditional aggregates over ``orders ⋈ cutoffs`` (``ordered_at < cutoff_at``),
computed in the same grouped aggregate as the RFM features (see ``features.build``), so they are
point in time by construction and run unchanged on DuckDB and PySpark.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, SHORT_DAYS, TREND_DAYS, YEAR_DAYS, sum_counts

#: The "buying right now" window of ``orders_14d``, days.
RECENT_DAYS = 14
#: The length of one period of ``active_months_share``, days.
PERIOD_DAYS = 30


def basket_bucket_aggregates(o: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Per (client, bucket) all-time sums and counts of baskets and the last return (``o``: orders).

    ``o`` is prepared orders (``features.rfm.prepare_orders``) with their bucket; the roll-up over
    the buckets before a cutoff is :func:`basket_aggregates`.
    """
    done = o.is_completed
    has_items = done & o.item_count.notnull()
    has_units = done & o.quantity.notnull()
    has_both = has_items & o.quantity.notnull()
    return {
        "b_items_n": o.count(where=has_items),
        "b_items_s": o.item_count.sum(where=has_items),
        "b_units_n": o.count(where=has_units),
        "b_units_s": o.quantity.sum(where=has_units),
        "b_both_units": o.quantity.sum(where=has_both),
        "b_both_items": o.item_count.sum(where=has_both),
        "b_last_returned_s": o.ordered_s.max(where=o.status == "returned"),
    }


def basket_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """All-time basket aggregates per (client, cutoff) from earlier buckets (``j``: buckets ⋈ cutoffs)."""
    items_n = sum_counts(j.b_items_n)
    units_n = sum_counts(j.b_units_n)
    null_f = ibis.null("float64")
    return {
        "agg_bsk_items_mean": ibis.ifelse(items_n > 0, j.b_items_s.sum().cast("float64") / items_n, null_f),
        "agg_bsk_units_mean": ibis.ifelse(units_n > 0, j.b_units_s.sum() / units_n, null_f),
        "agg_bsk_units_sum": j.b_both_units.sum(),
        "agg_bsk_items_sum": sum_counts(j.b_both_items),
        "agg_bsk_items_n": items_n,
        "agg_bsk_items_s": sum_counts(j.b_items_s),
        "agg_bsk_last_returned_s": j.b_last_returned_s.max(),
    }


def basket_window_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Windowed basket, return and recent-order aggregates per (client, cutoff).

    ``j`` is prepared orders joined to the cutoffs they precede (``ordered_at < cutoff_at``); it
    needs ``start_90`` and ``start_365`` (the contract windows).
    """
    done = j.is_completed
    returned = j.status == "returned"
    recent_items = done & j.item_count.notnull() & (j.ordered_at >= j[f"start_{TREND_DAYS}"])
    age_days = (j.cutoff_s - j.ordered_s) / SECONDS_PER_DAY
    return {
        "agg_bsk_items_recent": j.item_count.mean(where=recent_items),
        "agg_bsk_items_recent_n": j.count(where=recent_items),
        "agg_bsk_items_recent_s": j.item_count.sum(where=recent_items),
        "agg_bsk_returned_short": j.amount.sum(where=returned & (j.ordered_at >= j[f"start_{SHORT_DAYS}"])),
        "agg_bsk_returned_year": j.amount.sum(where=returned & (j.ordered_at >= j[f"start_{YEAR_DAYS}"])),
        "agg_bsk_orders_recent": j.count(where=done & (age_days < float(RECENT_DAYS))),
    }


def period_collisions(j: ir.Table) -> dict[str, ir.Value]:
    """Completed orders in the same 30-day period as the client's previous one, per (client, cutoff).

    ``j`` is completed orders with ``prev_s`` (``features.rfm.with_gaps``) joined to the cutoffs
    they precede; the caller keeps only those less than a period (plus a day) after the previous
    one (``features.build.aggregate_gaps``). Periods count back from the cutoff and are monotone in
    time, so the distinct periods holding an order are the completed orders minus these
    collisions: a count in the gaps' grouped pass instead of a distinct count.
    """
    same = _period(j.cutoff_s, j.prev_s) == _period(j.cutoff_s, j.ordered_s)
    return {"agg_bsk_collisions": j.count(where=same)}


def _period(cutoff_s: ir.FloatingValue, at_s: ir.FloatingValue) -> ir.IntegerValue:
    """The 30-day period, counted back from the cutoff (0 = the last 30 days), holding ``at_s``."""
    return ((cutoff_s - at_s) / SECONDS_PER_DAY / float(PERIOD_DAYS)).floor()


def derive_basket(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Final basket, return and regularity columns from :func:`basket_aggregates` (after the left join).

    Units: items and units per order are counts per completed order; ``units_per_item_mean`` is
    units per product line; ``items_trend_90d`` is ln(mean items per order in [D-90, D) / mean
    before D-90); returned amounts are company currency; ``days_since_last_return`` is days;
    ``orders_14d`` a count; ``active_months_share`` a share 0..1. Basket features are null
    without basket data, the trend also without orders on both sides of D-90; return amounts and
    ``orders_14d`` are 0 when there is nothing to count; ``days_since_last_return`` is null
    without a return and ``active_months_share`` null without a completed order.
    """
    zero_f = ibis.literal(0.0)
    null_f = ibis.null("float64")
    items_sum = t.agg_bsk_items_sum
    n_before = t.agg_bsk_items_n.fill_null(0) - t.agg_bsk_items_recent_n.fill_null(0)
    before = ibis.ifelse(
        n_before > 0,
        (t.agg_bsk_items_s - t.agg_bsk_items_recent_s.fill_null(0)).cast("float64") / n_before,
        null_f,
    )
    recent = t.agg_bsk_items_recent
    first_period = _period(t.cutoff_s, t.agg_first_s)
    active_periods = t.orders_total.fill_null(0) - t.agg_bsk_collisions.fill_null(0)
    return {
        "items_per_order_mean": t.agg_bsk_items_mean.cast("float64"),
        "units_per_order_mean": t.agg_bsk_units_mean.cast("float64"),
        "units_per_item_mean": ibis.ifelse(
            items_sum.notnull() & (items_sum > 0), t.agg_bsk_units_sum / items_sum, null_f
        ),
        "items_trend_90d": ibis.ifelse(
            recent.notnull() & before.notnull() & (recent > 0) & (before > 0), (recent / before).ln(), null_f
        ),
        "returned_amount_90d": t.agg_bsk_returned_short.fill_null(zero_f),
        "returned_amount_365d": t.agg_bsk_returned_year.fill_null(zero_f),
        "days_since_last_return": (t.cutoff_s - t.agg_bsk_last_returned_s) / SECONDS_PER_DAY,
        "orders_14d": t.agg_bsk_orders_recent.fill_null(0),
        "active_months_share": ibis.ifelse(
            first_period.notnull(), active_periods.cast("float64") / (first_period + 1.0), null_f
        ),
    }
