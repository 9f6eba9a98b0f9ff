"""Retention contacts known at a cutoff (``contacted_at < D``); the contacts table may be empty."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, YEAR_DAYS


def prepare_contacts(contacts: ir.Table) -> ir.Table:
    """A per-client sequence number of contacts by (contacted_at, contact_id)."""
    c = contacts.mutate(contacted_s=contacts.contacted_at_s)
    w = ibis.window(group_by=c.client_id, order_by=[c.contacted_s, c.contact_id])
    return c.mutate(seq=ibis.row_number().over(w))


def contact_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Contacts per campaign in the last year and the time of the last contact, per (client, cutoff)."""
    in_year = j.contacted_at >= j[f"start_{YEAR_DAYS}"]
    return {
        "prevention_contacts_365d": j.count(where=in_year & (j.campaign == "prevention")),
        "winback_contacts_365d": j.count(where=in_year & (j.campaign == "winback")),
        "agg_last_contact_s": j.contacted_s.max(),
    }


def derive_contacts(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Final contact columns (counts 0 and days null when there were no contacts)."""
    return {
        "prevention_contacts_365d": t.prevention_contacts_365d.fill_null(0),
        "winback_contacts_365d": t.winback_contacts_365d.fill_null(0),
        "days_since_last_contact": (t.cutoff_s - t.agg_last_contact_s) / SECONDS_PER_DAY,
    }
