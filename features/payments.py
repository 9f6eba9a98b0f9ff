"""Payment behaviour at a cutoff, from orders (any status) with a due date before it.

An order is *due* at cutoff D when ``due_at < D`` and *paid* at D when ``paid_at < D`` (a later
payment is not known yet, so the order counts as unpaid). The delay of a due order is
``max(0, min(paid_at, D) - due_at)`` in days: an order unpaid at D is treated as paid at D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, YEAR_DAYS


def payment_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Aggregates over orders before the cutoff whose payment was due before it."""
    due = j.due_at.notnull() & (j.due_at < j.cutoff_at)
    paid = j.paid_at.notnull() & (j.paid_at < j.cutoff_at)
    late = due & (~paid | (j.paid_at > j.due_at))
    delay_s = ibis.greatest(ibis.ifelse(paid, j.paid_s, j.cutoff_s) - j.due_s, 0.0)
    return {
        "agg_due": j.count(where=due),
        "agg_late": j.count(where=late),
        "agg_delay_mean_s": delay_s.mean(where=due),
        "late_payments_365d": j.count(where=late & (j.due_at >= j[f"start_{YEAR_DAYS}"])),
        "overdue_unpaid_amount": j.amount.sum(where=due & ~paid),
    }


def derive_payments(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Final payment columns: mean delay (days), late share (null when nothing was due), counts."""
    n_due = t.agg_due.fill_null(0)
    return {
        "payment_delay_mean_days": t.agg_delay_mean_s / SECONDS_PER_DAY,
        "late_payment_share": ibis.ifelse(n_due > 0, t.agg_late.fill_null(0) / n_due, ibis.null("float64")),
        "late_payments_365d": t.late_payments_365d.fill_null(0),
        "overdue_unpaid_amount": t.overdue_unpaid_amount.fill_null(0.0),
    }
