"""Complaint features at a cutoff: volume, severity, what is still open, how fast it gets fixed.

Only complaints created before the cutoff D count. A complaint is *resolved at D* iff
``resolved_at`` is set and ``resolved_at < D``; today's status of the CRM is never used, so a
complaint resolved after D is open at D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.rfm import SECONDS_PER_DAY, SHORT_DAYS, YEAR_DAYS


def prepare_complaints(complaints: ir.Table) -> ir.Table:
    """Per-complaint columns computed once: a per-client sequence number.

    ``seq`` orders a client's complaints by (created_at, complaint_id) so "the last complaint"
    is well defined even when two complaints share a timestamp.
    """
    c = complaints.mutate(created_s=complaints.created_at_s, resolved_s=complaints.resolved_at_s)
    w = ibis.window(group_by=c.client_id, order_by=[c.created_s, c.complaint_id])
    return c.mutate(seq=ibis.row_number().over(w))


def complaint_aggregates(j: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Aggregates over complaints created before the cutoff, per (client, cutoff)."""
    resolved = j.resolved_at.notnull() & (j.resolved_at < j.cutoff_at)
    in_short = j.created_at >= j[f"start_{SHORT_DAYS}"]
    in_year = j.created_at >= j[f"start_{YEAR_DAYS}"]
    return {
        "complaints_total": j.count(),
        "complaints_90d": j.count(where=in_short),
        "complaints_365d": j.count(where=in_year),
        "complaint_severity_max": j.severity.max(),
        "complaint_severity_mean": j.severity.mean(),
        # summed as double: DuckDB sums BIGINT into HUGEINT, which Parquet stores as DOUBLE
        "complaint_severity_weighted_365d": j.severity.cast("float64").sum(where=in_year),
        "open_complaints": j.count(where=~resolved),
        "open_complaint_severity_max": j.severity.max(where=~resolved),
        "agg_resolved": j.count(where=resolved),
        "agg_resolve_mean_s": (j.resolved_s - j.created_s).mean(where=resolved),
        "agg_last_complaint_s": j.created_s.max(),
        "human_factor_complaints_365d": j.count(where=j.human_factor & in_year),
        "last_complaint_resolved": resolved.cast("int8").argmax(j.seq),
        "last_complaint_severity": j.severity.argmax(j.seq),
    }


def derive_complaints(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Final complaint columns: counts 0 and severities/shares/days null when there are none."""
    total = t.complaints_total.fill_null(0)
    return {
        "complaints_90d": t.complaints_90d.fill_null(0),
        "complaints_365d": t.complaints_365d.fill_null(0),
        "complaints_total": total,
        "complaint_severity_max": t.complaint_severity_max,
        "complaint_severity_mean": t.complaint_severity_mean,
        "complaint_severity_weighted_365d": t.complaint_severity_weighted_365d.fill_null(0),
        "open_complaints": t.open_complaints.fill_null(0),
        "open_complaint_severity_max": t.open_complaint_severity_max.fill_null(0),
        "resolved_complaint_share": ibis.ifelse(
            total > 0, t.agg_resolved.fill_null(0) / total, ibis.null("float64")
        ),
        "complaint_resolve_days_mean": t.agg_resolve_mean_s / SECONDS_PER_DAY,
        "days_since_last_complaint": (t.cutoff_s - t.agg_last_complaint_s) / SECONDS_PER_DAY,
        "human_factor_complaints_365d": t.human_factor_complaints_365d.fill_null(0),
        "last_complaint_resolved": t.last_complaint_resolved,
        "last_complaint_severity": t.last_complaint_severity,
    }
