"""Lifecycle state and loss history of a client at a cutoff.

From the completed orders before the cutoff D (tiers = ``lapse_tiers_days``, default 90/180/360):

* recency r = days since the last completed order; no completed order → ``no_order``;
* r < tiers[0] → ``new`` if the first completed order is at most ``new_client_days`` before D,
  else ``active``; tiers[0] ≤ r < tiers[1] → ``lapsed_90``; tiers[1] ≤ r < tiers[2] →
  ``lapsed_180``; tiers[2] ≤ r < ``lost_after_days`` → ``lapsed_360``; beyond → ``lost``.
* A *loss* is a gap ≥ tiers[0] days between consecutive completed orders (the client lapsed and
  came back: a *return*, dated by the order that ended the gap), or the current r ≥ tiers[0].
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, sum_counts

LAPSED_OR_LOST = ("lapsed_90", "lapsed_180", "lapsed_360", "lost")


def lifecycle_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """The loss date per (client, cutoff), from the last completed order of the RFM roll-up.

    Reads ``b_last_at`` and ``b_last_s`` of ``features.rfm.rfm_bucket_aggregates`` (the last
    completed order of a group of orders), so the last order is aggregated once. ``loss_at`` is
    computed here, on this narrow aggregate, so the loss manager is looked up without touching the
    wide feature table.
    """
    t0 = params.lapse_tiers_days[0]
    lapsed = (j.cutoff_s.max() - j.b_last_s.max()) / SECONDS_PER_DAY >= t0
    return {
        "loss_at": ibis.ifelse(
            lapsed, j.b_last_at.max() + ibis.interval(days=t0), ibis.null("timestamp('UTC')")
        ),
    }


def loss_gap_bucket_aggregates(g: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Loss gaps (≥ tiers[0] days) and the last return of a group of completed orders.

    ``g`` is completed orders with their gaps (``features.rfm.with_gaps``).
    """
    loss_gap = g.gap_days >= params.lapse_tiers_days[0]
    return {
        "b_loss_gaps": g.count(where=loss_gap),
        "b_last_return_s": g.ordered_s.max(where=loss_gap),
    }


def loss_gap_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Past losses and the last return (epoch seconds) per (client, cutoff): the roll-up of
    ``loss_gap_bucket_aggregates``."""
    return {
        "agg_loss_gaps": sum_counts(j.b_loss_gaps),
        "agg_last_return_s": j.b_last_return_s.max(),
    }


def state_of(
    recency_days: ir.FloatingValue, days_since_first: ir.FloatingValue, params: FeatureParams
) -> ir.StringValue:
    """The lifecycle state (one of contract STATES) from recency and days since the first order."""
    t0, t1, t2 = params.lapse_tiers_days
    return ibis.cases(
        (recency_days.isnull(), "no_order"),
        ((recency_days < t0) & (days_since_first <= params.new_client_days), "new"),
        (recency_days < t0, "active"),
        (recency_days < t1, "lapsed_90"),
        (recency_days < t2, "lapsed_180"),
        (recency_days < params.lost_after_days, "lapsed_360"),
        else_="lost",
    )


def derive_lifecycle(
    t: ir.Table, recency_days: ir.FloatingValue, days_since_first: ir.FloatingValue, params: FeatureParams
) -> dict[str, ir.Value]:
    """State, loss date and loss-history features on the (client, cutoff) rows.

    ``loss_at`` = last completed order + tiers[0] days when r ≥ tiers[0] (the day the client
    became lapsed), else null. ``times_lost`` counts past losses plus the current one;
    ``times_returned`` counts past losses only; ``returned_recently`` is 1 when the last return is
    at most ``returned_recently_days`` before D.
    """
    t0 = params.lapse_tiers_days[0]
    state = state_of(recency_days, days_since_first, params)
    lapsed = recency_days.notnull() & (recency_days >= t0)
    gaps = t.agg_loss_gaps.fill_null(0)
    times_lost = gaps + ibis.ifelse(lapsed, 1, 0)
    since_return = (t.cutoff_s - t.agg_last_return_s) / SECONDS_PER_DAY
    return {
        "state": state,
        "loss_at": t.loss_at,
        "is_new": (state == "new").cast("int8"),
        "days_since_loss": ibis.ifelse(lapsed, recency_days - t0, ibis.null("float64")),
        "times_lost": times_lost,
        "times_returned": gaps,
        "twice_lost": (times_lost >= 2).cast("int8"),
        "returned_recently": (since_return.notnull() & (since_return <= params.returned_recently_days)).cast(
            "int8"
        ),
        "days_since_return": since_return,
    }


def last_contact_managers(rows: ir.Table, contacts: ir.Table) -> ir.Table:
    """Manager of the last contact (with a manager) before ``loss_at``, per (client_id, cutoff_id).

    ``rows`` (the order aggregates) has client_id, cutoff_id and loss_at (null when not lapsed);
    ``contacts`` is the
    prepared contacts table (with ``seq``). Clients never contacted before their loss get no row.
    """
    lapsed = rows.filter(rows.loss_at.notnull()).select("client_id", "cutoff_id", "loss_at")
    c = contacts.filter(contacts.manager_id.notnull()).select(
        k_client_id="client_id", contacted_at="contacted_at", contact_manager_id="manager_id", seq="seq"
    )
    j = lapsed.join(c, [lapsed.client_id == c.k_client_id, c.contacted_at < lapsed.loss_at])
    return j.group_by(["client_id", "cutoff_id"]).aggregate(
        agg_loss_contact_manager_id=j.contact_manager_id.argmax(j.seq)
    )
