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
from features.rfm import SECONDS_PER_DAY, SHORT_DAYS, TREND_DAYS, YEAR_DAYS

#: The "buying right now" window of ``orders_14d``, days.
RECENT_DAYS = 14
#: The length of one period of ``active_months_share``, days.
PERIOD_DAYS = 30


def basket_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Per (client, cutoff) aggregates of the basket, return and regularity features.

    ``j`` is prepared orders (``features.rfm.prepare_orders``) joined to the cutoffs on
    ``ordered_at < cutoff_at``; it needs ``start_90`` and ``start_365`` (the contract windows).
    """
    done = j.is_completed
    returned = j.status == "returned"
    has_items = done & j.item_count.notnull()
    has_both = has_items & j.quantity.notnull()
    recent = j.ordered_at >= j[f"start_{TREND_DAYS}"]
    age_days = (j.cutoff_s - j.ordered_s) / SECONDS_PER_DAY
    period = (age_days / float(PERIOD_DAYS)).floor()
    return {
        "agg_bsk_items_mean": j.item_count.mean(where=has_items),
        "agg_bsk_units_mean": j.quantity.mean(where=done & j.quantity.notnull()),
        "agg_bsk_units_sum": j.quantity.sum(where=has_both),
        "agg_bsk_items_sum": j.item_count.sum(where=has_both),
        "agg_bsk_items_recent": j.item_count.mean(where=has_items & recent),
        "agg_bsk_items_before": j.item_count.mean(where=has_items & ~recent),
        "agg_bsk_returned_short": j.amount.sum(where=returned & (j.ordered_at >= j[f"start_{SHORT_DAYS}"])),
        "agg_bsk_returned_year": j.amount.sum(where=returned & (j.ordered_at >= j[f"start_{YEAR_DAYS}"])),
        "agg_bsk_last_returned_s": j.ordered_s.max(where=returned),
        "agg_bsk_orders_recent": j.count(where=done & (age_days < float(RECENT_DAYS))),
        "agg_bsk_active_periods": period.nunique(where=done),
        "agg_bsk_first_period": period.max(where=done),
    }


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
    recent, before = t.agg_bsk_items_recent, t.agg_bsk_items_before
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
            t.agg_bsk_first_period.notnull(),
            t.agg_bsk_active_periods.cast("float64") / (t.agg_bsk_first_period + 1.0),
            null_f,
        ),
    }
