"""Lifecycle state and loss history of a client at a cutoff.

From the completed orders before the cutoff D (tiers = ``lapse_tiers_days``, default 90/180/360):

* the tiers count whole UTC calendar days: L = D − the UTC date of the last completed order
  (:func:`calendar_days`), so a client whose last order was 90 days before D is ``lapsed_90``
  whatever the hour of that order (the fractional ``recency_days`` stays a feature of its own);
  no completed order → ``no_order``;
* L < tiers[0] → ``new`` if the first completed order is at most ``new_client_days`` before D,
  else ``active``; tiers[0] ≤ L < tiers[1] → ``lapsed_90``; tiers[1] ≤ L < tiers[2] →
  ``lapsed_180``; tiers[2] ≤ L < ``lost_after_days`` → ``lapsed_360``; beyond → ``lost``.
* A *loss* is a gap of ≥ tiers[0] calendar days between consecutive completed orders (the client
  lapsed and came back: a *return*, dated by the order that ended the gap), or the current
  L ≥ tiers[0]. A client lapses at 00:00 UTC of the day tiers[0] days after its last order's day:
  ``loss_at``, never after D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, sum_counts

LAPSED_OR_LOST = ("lapsed_90", "lapsed_180", "lapsed_360", "lost")


def utc_day(epoch_s: ir.FloatingValue) -> ir.FloatingValue:
    """The UTC day number (days since 1970-01-01, as a double) of an instant in epoch seconds."""
    return (epoch_s / SECONDS_PER_DAY).floor().cast("float64")


def calendar_days(later_s: ir.FloatingValue, earlier_s: ir.FloatingValue) -> ir.FloatingValue:
    """Whole UTC calendar days from the day of ``earlier_s`` to the day of ``later_s`` (epoch seconds).

    For a cutoff (00:00 UTC of D) and an order before it this is D minus the order's UTC date,
    the count the lapse tiers are documented in.
    """
    return utc_day(later_s) - utc_day(earlier_s)


def lifecycle_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """The loss date per (client, cutoff), from the last completed order of the RFM roll-up.

    Reads ``b_last_at`` and ``b_last_s`` of ``features.rfm.rfm_bucket_aggregates`` (the last
    completed order of a group of orders), so the last order is aggregated once. ``loss_at`` is
    computed here, on this narrow aggregate, so the loss manager is looked up without touching the
    wide feature table.
    """
    t0 = params.lapse_tiers_days[0]
    lapsed = calendar_days(j.cutoff_s.max(), j.b_last_s.max()) >= t0
    return {
        "loss_at": ibis.ifelse(
            lapsed, j.b_last_at.max().truncate("D") + ibis.interval(days=t0), ibis.null("timestamp('UTC')")
        ),
    }


def loss_gap_bucket_aggregates(g: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Loss gaps (≥ tiers[0] calendar days) and the last return of a group of completed orders.

    ``g`` is completed orders with their gaps (``features.rfm.with_gaps``); a gap counts the
    calendar days between the two orders' UTC dates, as the tiers do.
    """
    loss_gap = calendar_days(g.ordered_s, g.prev_s) >= params.lapse_tiers_days[0]
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
    lapse_days: ir.FloatingValue, days_since_first: ir.FloatingValue, params: FeatureParams
) -> ir.StringValue:
    """The lifecycle state (one of contract STATES).

    ``lapse_days``: whole calendar days since the last completed order (:func:`calendar_days`;
    null without one); ``days_since_first``: days since the first completed order.
    """
    t0, t1, t2 = params.lapse_tiers_days
    return ibis.cases(
        (lapse_days.isnull(), "no_order"),
        ((lapse_days < t0) & (days_since_first <= params.new_client_days), "new"),
        (lapse_days < t0, "active"),
        (lapse_days < t1, "lapsed_90"),
        (lapse_days < t2, "lapsed_180"),
        (lapse_days < params.lost_after_days, "lapsed_360"),
        else_="lost",
    )


def derive_lifecycle(
    t: ir.Table, days_since_first: ir.FloatingValue, params: FeatureParams
) -> dict[str, ir.Value]:
    """State, loss date and loss-history features on the (client, cutoff) rows.

    The tiers count whole calendar days L since the last completed order (``agg_last_s``).
    ``loss_at`` = 00:00 UTC of the last completed order's day + tiers[0] days when L ≥ tiers[0]
    (the day the client became lapsed), else null; ``days_since_loss`` = L − tiers[0] (whole
    days since ``loss_at``). ``times_lost`` counts past losses plus the current one;
    ``times_returned`` counts past losses only; ``returned_recently`` is 1 when the last return is
    at most ``returned_recently_days`` before D.
    """
    t0 = params.lapse_tiers_days[0]
    lapse_days = calendar_days(t.cutoff_s, t.agg_last_s)
    state = state_of(lapse_days, days_since_first, params)
    lapsed = lapse_days.notnull() & (lapse_days >= t0)
    gaps = t.agg_loss_gaps.fill_null(0)
    times_lost = gaps + ibis.ifelse(lapsed, 1, 0)
    since_return = (t.cutoff_s - t.agg_last_return_s) / SECONDS_PER_DAY
    return {
        "state": state,
        "loss_at": t.loss_at,
        "is_new": (state == "new").cast("int8"),
        "days_since_loss": ibis.ifelse(lapsed, lapse_days - t0, ibis.null("float64")),
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
