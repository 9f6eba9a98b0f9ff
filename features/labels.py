"""Churn and win-back labels: what happened in the label window [D, D + horizon_days).

* ``churn_label`` (states new/active): 1 if no completed order in the window, else 0.
* ``winback_label`` (states lapsed_90/180/360): 1 if a completed order in the window, else 0.
* Null (never 0) when the window runs past the export instant (D + horizon > export date 00:00 UTC,
  the outcome is not observed yet) or when the state does not apply.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.contract import CHURN_STATES, WINBACK_STATES


def future_orders(orders: ir.Table, cutoffs: ir.Table) -> ir.Table:
    """Completed orders in [cutoff_at, label_end_at), counted per (client_id, cutoff_id)."""
    done = orders.filter(orders.status == "completed").select("client_id", "ordered_at")
    j = done.join(cutoffs, [done.ordered_at >= cutoffs.cutoff_at, done.ordered_at < cutoffs.label_end_at])
    return j.group_by(["client_id", "cutoff_id"]).aggregate(agg_future_orders=j.count())


def derive_labels(t: ir.Table, state: ir.StringValue) -> dict[str, ir.Value]:
    """``churn_label`` and ``winback_label`` (Int8, nullable) from the future order count."""
    n = t.agg_future_orders.fill_null(0)
    null8 = ibis.null("int8")
    churn = ibis.ifelse(t.label_defined & state.isin(CHURN_STATES), (n == 0).cast("int8"), null8)
    winback = ibis.ifelse(t.label_defined & state.isin(WINBACK_STATES), (n > 0).cast("int8"), null8)
    return {"churn_label": churn, "winback_label": winback}
