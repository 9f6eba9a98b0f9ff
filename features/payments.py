"""Payment behaviour at a cutoff, from orders (any status) with a due date before it.

An order is *due* at cutoff D when ``due_at < D`` and *paid* at D when ``paid_at < D`` (a later
payment is not known yet, so the order counts as unpaid). The delay of a due order is
``max(0, min(paid_at, D) - due_at)`` in days: an order unpaid at D is treated as paid at D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, sum_counts


def payment_bucket_aggregates(o: ir.Table, params: FeatureParams, anchor_s: float) -> dict[str, ir.Value]:
    """Per (client, due bucket, paid bucket, due+365d bucket) sums of the orders with a due date.

    ``o`` is prepared orders with a due date and those buckets (``features.build``); the due
    bucket is that of ``max(ordered_at, due_at)``, the first cutoff at which the order is known
    and due. Whether an order is late does not depend on the cutoff once it is due: paid on or
    before ``due_at`` means paid before any cutoff after ``due_at``. Due times are stored relative
    to ``anchor_s`` (epoch seconds) so the roll-up's ``n * cutoff - sum(due)`` keeps its precision.
    """
    late = o.paid_at.isnull() | (o.paid_at > o.due_at)
    return {
        "b_due": o.count(),
        "b_late": o.count(where=late),
        "b_due_rel_s": (o.due_s - anchor_s).sum(),
        "b_paid_delay_s": ibis.greatest(o.paid_s - o.due_s, 0.0).sum(),
        "b_due_amount": o.amount.sum(),
    }


def payment_aggregates(j: ir.Table, params: FeatureParams, anchor_s: float) -> dict[str, ir.Value]:
    """Payment aggregates per (client, cutoff) from the buckets before it (``j``: buckets ⋈ cutoffs).

    Every joined row is due at the cutoff (its due bucket is ``<= cutoff_id``); paid:
    ``b_paid_bucket <= cutoff_id``; due within the last 365 days: ``b_due_exit_bucket > cutoff_id``.
    An order due and unpaid at the cutoff has delay ``cutoff - due_at`` (> 0); a paid one
    ``max(0, paid_at - due_at)``.
    """
    paid = j.b_paid_bucket <= j.cutoff_id
    unpaid = ~paid
    n_due = sum_counts(j.b_due)
    delay_s = j.b_paid_delay_s.sum(where=paid).fill_null(0.0) + (
        j.b_due * (j.cutoff_s - anchor_s) - j.b_due_rel_s
    ).sum(where=unpaid).fill_null(0.0)
    return {
        "agg_due": n_due,
        "agg_late": sum_counts(j.b_late),
        "agg_delay_mean_s": ibis.ifelse(n_due > 0, delay_s / n_due, ibis.null("float64")),
        "late_payments_365d": sum_counts(ibis.ifelse(j.b_due_exit_bucket > j.cutoff_id, j.b_late, 0)),
        "overdue_unpaid_amount": j.b_due_amount.sum(where=unpaid),
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
