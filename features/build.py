"""The feature table: one row per (client_id, cutoff_at), keys, info, features, labels.

Each source table is joined to the small cutoffs table on "stamped before the cutoff" and
aggregated once by (client, cutoff) with conditional aggregates. Per-row work that does not depend
on the cutoff is done once before the join: epoch seconds, sequence numbers and the gap from each
completed order to the client's previous one (one window over a narrow projection,
:func:`gap_rows`, aggregated by :func:`aggregate_gaps`). Every other order aggregate comes from one
grouped pass over the clean orders (:func:`aggregate_orders`): each row carries what it adds to
every per-bucket aggregate of the family modules (``_row_values``) and their roll-ups sum it. The
features stage builds its cutoffs in small batches over gap rows computed once for all of them
(``build_feature_table(..., gaps=...)``), so a further cutoff costs two scans and two grouped
aggregates, not another window. The same Ibis expression runs on DuckDB and on PySpark."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import numpy as np
from ibis.backends import BaseBackend

from features.basket import (
    PERIOD_DAYS,
    basket_aggregates,
    basket_bucket_aggregates,
    basket_window_aggregates,
    derive_basket,
    period_collisions,
)
from features.complaints import complaint_aggregates, derive_complaints, prepare_complaints
from features.config import FeatureParams
from features.contacts import contact_aggregates, derive_contacts, prepare_contacts
from features.contract import FEATURE_COLUMNS, LABEL_COLUMNS
from features.labels import derive_labels, future_orders
from features.lifecycle import (
    LAPSED_OR_LOST,
    derive_lifecycle,
    last_contact_managers,
    lifecycle_aggregates,
    loss_gap_aggregates,
    loss_gap_bucket_aggregates,
)
from features.payments import derive_payments, payment_aggregates, payment_bucket_aggregates
from features.rfm import (
    SECONDS_PER_DAY,
    YEAR_DAYS,
    check_windows,
    derive_rfm,
    gap_aggregates,
    gap_bucket_aggregates,
    prepare_orders,
    rfm_aggregates,
    rfm_bucket_aggregates,
    rfm_window_aggregates,
    with_gaps,
)
from features.rhythm import (
    constant_columns,
    derive_rhythm,
    rhythm_aggregates,
    rhythm_bucket_aggregates,
    rhythm_histories,
)
from features.rhythm_fit import RhythmConstants, RhythmHistory, fit_rhythm
from features.tables import CUTOFF_TIMESTAMP, CleanTables, cutoff_instant, cutoffs_frame, cutoffs_table

KEYS = ["client_id", "cutoff_id"]

#: Integer count/severity features (Int64, nullable where the definition says null).
INT_FEATURES = frozenset(
    {
        *(c for c in FEATURE_COLUMNS if c.startswith("orders_") and c != "orders_trend_90d"),
        "orders_trend_90d",
        "cancelled_orders_total",
        "returned_orders_total",
        "complaints_90d",
        "complaints_365d",
        "complaints_total",
        "complaint_severity_max",
        "complaint_severity_weighted_365d",
        "open_complaints",
        "open_complaint_severity_max",
        "human_factor_complaints_365d",
        "last_complaint_severity",
        "late_payments_365d",
        "times_lost",
        "times_returned",
        "prevention_contacts_365d",
        "winback_contacts_365d",
    }
)
#: 1/0 flags (Int8).
FLAG_FEATURES = frozenset({"is_new", "twice_lost", "returned_recently", "last_complaint_resolved"})


def feature_type(name: str) -> str:
    """Ibis type of a feature column in the written table (counts int64, flags int8, else float64)."""
    if name in FLAG_FEATURES:
        return "int8"
    return "int64" if name in INT_FEATURES else "float64"


def _attach(base: ir.Table, other: ir.Table) -> ir.Table:
    """Left-join ``other`` on (client_id, cutoff_id) and drop its copy of the keys."""
    joined = base.left_join(other, KEYS)
    return joined.drop(*(c for c in joined.columns if c in {f"{k}_right" for k in KEYS}))


def _per_cutoff(
    source: ir.Table, stamp: str, cutoffs: ir.Table, aggs: Callable[[ir.Table], dict[str, ir.Value]]
) -> ir.Table:
    """Join ``source`` to every cutoff it precedes (``stamp < cutoff_at``) and aggregate per key."""
    j = source.join(cutoffs, source[stamp] < cutoffs.cutoff_at)
    return j.group_by(KEYS).aggregate(**aggs(j))


def bucket_of(ts: ir.TimestampValue, cutoffs: Sequence[dt.date]) -> ir.IntegerValue:
    """The index of the first cutoff after ``ts`` (``ts < cutoff_at``); ``len(cutoffs)`` when none is or null.

    A row stamped ``ts`` is known at cutoff ``k`` (its ``cutoff_id``) exactly when
    ``bucket_of(ts) <= k``: the payment roll-up reads "paid" and "due within the year" this way.
    """
    days = sorted(set(cutoffs))
    return ibis.cases(
        *((ts < ibis.literal(cutoff_instant(d), type=CUTOFF_TIMESTAMP), i) for i, d in enumerate(days)),
        else_=len(days),
    )


def _columns(table: ir.Table, names: Sequence[str]) -> ir.Table:
    """``table`` narrowed to ``names``, as its own projection of the underlying table when it is one.

    Several consumers selecting from one shared projection make DuckDB materialise it as a CTE
    (10M orders in memory, spilling at 1M clients); each consumer projecting its own columns from
    the Parquet scan keeps every pipeline streaming.
    """
    op = table.op()
    if isinstance(op, ops.Project):
        return ops.Project(op.parent, {n: op.values[n] for n in names}).to_expr()
    return table.select(*names)


def _restrict(aggs: dict[str, ir.Value], cond: ir.BooleanValue) -> dict[str, ir.Value]:
    """The aggregates ``aggs`` (each a plain reduction) over only the rows where ``cond`` holds."""
    out: dict[str, ir.Value] = {}
    for name, expr in aggs.items():
        op = expr.op()
        if not isinstance(op, ops.Reduction) or not hasattr(op, "where"):
            raise TypeError(f"features: aggregate {name!r} is not a plain reduction: {type(op).__name__}")
        where = cond if op.where is None else op.where.to_expr() & cond
        out[name] = op.copy(where=where.op()).to_expr()
    return out


def _row_values(aggs: dict[str, ir.Value]) -> dict[str, ir.Value]:
    """What each row contributes to each per-bucket aggregate of ``aggs``, as a per-row column.

    A count becomes 1 or 0, a sum, min or max its argument or null where its filter excludes the
    row. Rolling these up over the rows before a cutoff (``rfm_aggregates`` and the other roll-ups)
    gives what rolling up the per-bucket aggregates over the buckets before it would give, so the
    orders are aggregated straight to (client, cutoff) by the family modules' own definitions.
    """
    out: dict[str, ir.Value] = {}
    for name, expr in aggs.items():
        op = expr.op()
        cond = None if getattr(op, "where", None) is None else op.where.to_expr()
        if isinstance(op, ops.CountStar | ops.Count):
            if isinstance(op, ops.Count):
                has = op.arg.to_expr().notnull()
                cond = has if cond is None else cond & has
            one = ibis.literal(1, type=expr.type())
            out[name] = one if cond is None else ibis.ifelse(cond, one, ibis.literal(0, type=expr.type()))
        elif isinstance(op, ops.Sum | ops.Min | ops.Max):
            value = op.arg.to_expr().cast(expr.type())
            out[name] = value if cond is None else ibis.ifelse(cond, value, ibis.null(expr.type()))
        else:
            raise TypeError(f"features: aggregate {name!r} has no per-row form: {type(op).__name__}")
    return out


#: The order columns the order aggregates read (:func:`aggregate_orders`).
ORDER_COLUMNS = (
    "client_id",
    "ordered_at",
    "amount",
    "margin",
    "status",
    "item_count",
    "quantity",
    "due_at",
    "paid_at",
    "ordered_at_s",
    "due_at_s",
    "paid_at_s",
)


@dataclass(frozen=True)
class GapRows:
    """The completed orders stamped before ``before`` with the gap to the client's previous one.

    Built by :func:`gap_rows`; a stage that builds several cutoffs computes it once (the window
    sorting every completed order by client is the costly part), writes it to a file and hands
    it to every cutoff's ``build_feature_table(..., gaps=...)``, which then only filters and
    aggregates it.
    """

    before: dt.date
    table: ir.Table

    def replace(self, table: ir.Table) -> GapRows:
        """The same rows as ``table`` (e.g. read back from a file)."""
        return dataclasses.replace(self, table=table)


def gap_rows(tables: CleanTables, before: dt.date) -> GapRows:
    """The completed orders before cutoff ``before``: client, stamp, ``prev_s`` and ``gap_days``.

    Only the columns the gap aggregates read go through the window. Orders on or after
    ``before`` never enter a feature at an earlier cutoff (labels read ``tables.orders``
    directly), and a gap belongs to the later order, so filtering these rows to an earlier
    cutoff keeps exactly the orders and gaps known at it.
    """
    done = completed_orders(tables)
    return GapRows(before, with_gaps(done.filter(done.ordered_at < cutoff_instant(before))))


def completed_orders(tables: CleanTables) -> ir.Table:
    """Completed orders: ``client_id``, ``ordered_at`` and ``ordered_s`` (epoch seconds)."""
    o = _columns(tables.orders, ("client_id", "ordered_at", "status", "ordered_at_s"))
    done = o.filter(o.status == "completed")
    return done.select("client_id", "ordered_at", ordered_s=done.ordered_at_s)


def first_completed_order_date(tables: CleanTables) -> dt.date | None:
    """The UTC date of the first completed order, or None without one (anchors ``start: null``)."""
    first = completed_orders(tables).ordered_at.min().to_pyarrow().as_py()
    return None if first is None else first.astimezone(dt.UTC).date()


def fit_rhythm_constants(
    tables: CleanTables, cutoffs: Sequence[dt.date], params: FeatureParams, *, gaps: GapRows | None = None
) -> dict[dt.date, RhythmConstants]:
    """The rhythm constants fitted at each cutoff on the completed orders before it.

    One grouped query gives every client's summary at every cutoff of ``cutoffs``
    (``features.rhythm.rhythm_histories``; over ``gaps``, the completed orders already narrowed
    to what the gaps read, when given); each cutoff's rows, in client-id order, go to
    ``features.rhythm_fit.fit_rhythm``. Executes that query now: the constants are data of the
    cutoffs table of the feature expression.
    """
    days = sorted(set(cutoffs))
    if gaps is not None and days[-1] > gaps.before:
        raise ValueError(
            f"features: cutoff {days[-1].isoformat()} after the gap rows (before {gaps.before.isoformat()})"
        )
    done = (
        completed_orders(tables)
        if gaps is None
        else gaps.table.select("client_id", "ordered_at", "ordered_s")
    )
    cut = cutoffs_table(
        cutoffs_frame(
            days, windows_days=params.windows_days, horizon_days=params.horizon_days, export_date=days[-1]
        )
    ).select("cutoff_id", "cutoff_at", "cutoff_s")
    frame = rhythm_histories(done, cut).to_pyarrow().to_pandas()
    frame = frame.sort_values(["cutoff_id", "client_id"], kind="stable")
    per_cutoff = dict(iter(frame.groupby("cutoff_id", sort=True)))
    out: dict[dt.date, RhythmConstants] = {}
    for i, day in enumerate(days):
        rows = per_cutoff.get(i)
        if rows is None:
            history = RhythmHistory(np.zeros(0, "int64"), np.zeros(0), np.zeros(0))
        else:
            first = rows["first_s"].to_numpy("float64")
            history = RhythmHistory(
                rows["orders"].to_numpy("int64") - 1,
                (rows["last_s"].to_numpy("float64") - first) / SECONDS_PER_DAY,
                (rows["cutoff_s"].to_numpy("float64") - first) / SECONDS_PER_DAY,
            )
        out[day] = fit_rhythm(
            history,
            new_client_days=params.new_client_days,
            horizon_days=params.horizon_days,
            lost_after_days=params.lost_after_days,
        )
    return out


def aggregate_orders(
    orders: ir.Table, cut: ir.Table, days: Sequence[dt.date], params: FeatureParams
) -> ir.Table:
    """Every order aggregate but the gaps' per (client, cutoff), in one grouped pass over ``orders``.

    Each order is joined to the cutoffs it precedes (for one cutoff the join is a filter) and
    carries what it adds to every per-bucket aggregate (``_row_values``); the roll-ups
    (``rfm_aggregates`` and the others) sum those per (client, cutoff) together with the windowed
    aggregates. ``days`` are the dates of ``cut`` in ``cutoff_id`` order.
    """
    anchor_s = cutoff_instant(days[-1]).timestamp()
    o = prepare_orders(_columns(orders, ORDER_COLUMNS))
    o = o.mutate(
        b_paid_bucket=bucket_of(o.paid_at, days),
        b_due_exit_bucket=bucket_of(o.due_at + ibis.interval(days=YEAR_DAYS), days),
    )
    j = o.join(cut, o.ordered_at < cut.cutoff_at)
    due = j.due_at.notnull() & (ibis.greatest(j.ordered_at, j.due_at) < j.cutoff_at)
    j = j.mutate(
        **_row_values(
            {
                **rfm_bucket_aggregates(j, params),
                **rhythm_bucket_aggregates(j, params, anchor_s),
                **basket_bucket_aggregates(j, params),
                **_restrict(payment_bucket_aggregates(j, params, anchor_s), due),
            }
        )
    )
    return j.group_by(KEYS).aggregate(
        **rfm_aggregates(j, params),
        **rhythm_aggregates(j, params, anchor_s),
        **basket_aggregates(j, params),
        **lifecycle_aggregates(j, params),
        **payment_aggregates(j, params, anchor_s),
        **rfm_window_aggregates(j, params),
        **basket_window_aggregates(j, params),
    )


def aggregate_gaps(gaps: ir.Table, cut: ir.Table, params: FeatureParams) -> ir.Table:
    """The aggregates of the gaps between completed orders per (client, cutoff), from ``gap_rows``.

    Gap mean and spread, loss gaps and the last return, and the orders in the same 30-day period
    as the previous one (``period_collisions``).
    """
    j = gaps.join(cut, gaps.ordered_at < cut.cutoff_at)
    j = j.mutate(**_row_values({**gap_bucket_aggregates(j, params), **loss_gap_bucket_aggregates(j, params)}))
    return j.group_by(KEYS).aggregate(
        **gap_aggregates(j, params),
        **loss_gap_aggregates(j, params),
        **_restrict(period_collisions(j), j.gap_days < float(PERIOD_DAYS + 1)),
    )


def build_feature_table(
    con: BaseBackend,
    tables: CleanTables,
    cutoffs: Sequence[dt.date],
    params: FeatureParams,
    *,
    export_date: dt.date,
    gaps: GapRows | None = None,
    rhythm: Mapping[dt.date, RhythmConstants] | None = None,
) -> ir.Table:
    """The point-in-time feature table for ``cutoffs`` as a lazy Ibis expression on ``con``.

    A cutoff date D is the snapshot at D 00:00 UTC: only rows stamped strictly before it are used,
    and clients created at or after it have no row. Labels use [D, D + horizon_days) and are null
    when that window ends after ``export_date`` 00:00 UTC. Columns: keys, info, features, labels
    (contract order); rows sorted by (cutoff_at, client_id). ``gaps`` (from :func:`gap_rows`
    before a cutoff at or after the last of ``cutoffs``) shares the gap window between queries;
    by default it is computed in this expression. ``rhythm``: the rhythm constants of each
    cutoff (:func:`fit_rhythm_constants`, which a stage calls once per batch to record them);
    when not given they are fitted here, which runs that fit's query now.
    """
    check_windows(params)
    days = sorted(set(cutoffs))
    if rhythm is None:
        rhythm = fit_rhythm_constants(tables, days, params, gaps=gaps)
    if gaps is None:
        gaps = gap_rows(tables, days[-1])
    elif days[-1] > gaps.before:
        raise ValueError(
            f"features: cutoff {days[-1].isoformat()} after the gap rows (before {gaps.before.isoformat()})"
        )
    missing = [d.isoformat() for d in days if d not in rhythm]
    if missing:
        raise ValueError(f"features: no rhythm constants for cutoff(s) {', '.join(missing)}")
    cut = cutoffs_table(
        cutoffs_frame(
            days,
            windows_days=params.windows_days,
            horizon_days=params.horizon_days,
            export_date=export_date,
            constants={d: constant_columns(rhythm[d]) for d in days},
        ),
    )
    clients = tables.clients
    base = clients.join(cut, clients.created_at < cut.cutoff_at)
    loss_rows = aggregate_orders(tables.orders, cut, days, params)

    complaints = prepare_complaints(tables.complaints)
    contacts = prepare_contacts(tables.contacts)
    agg_complaints = _per_cutoff(complaints, "created_at", cut, lambda j: complaint_aggregates(j, params))
    agg_contacts = _per_cutoff(contacts, "contacted_at", cut, lambda j: contact_aggregates(j, params))

    t = base
    future = future_orders(_columns(tables.orders, ("client_id", "ordered_at", "status")), cut)
    for other in (loss_rows, aggregate_gaps(gaps.table, cut, params), agg_complaints, agg_contacts, future):
        t = _attach(t, other)

    since_first = (t.cutoff_s - t.agg_first_s) / SECONDS_PER_DAY
    derived: dict[str, ir.Value] = {
        **derive_rfm(t, params),
        **derive_complaints(t, params),
        **derive_payments(t, params),
        **derive_lifecycle(t, since_first, params),
        **derive_contacts(t, params),
        **derive_basket(t, params),
    }
    t = t.mutate(**derived)
    t = t.mutate(**derive_rhythm(t, params))
    t = t.mutate(**derive_labels(t, t.state))
    t = _attach(t, last_contact_managers(loss_rows, contacts))
    t = t.mutate(
        loss_manager_id=ibis.ifelse(
            t.state.isin(LAPSED_OR_LOST),
            t.agg_loss_contact_manager_id.fill_null(t.manager_id),
            ibis.null("string"),
        )
    )
    columns: dict[str, ir.Value] = {
        "client_id": t.client_id,
        "cutoff_at": t.cutoff_at,
        "state": t.state,
        "manager_id": t.manager_id,
        "segment": t.segment,
        "do_not_contact": t.do_not_contact.fill_null(False),
        "first_order_at": t.first_order_at,
        "last_order_at": t.last_order_at,
        "loss_at": t.loss_at,
        "loss_manager_id": t.loss_manager_id,
    }
    for name in FEATURE_COLUMNS:
        columns[name] = t[name].cast(feature_type(name))
    for name in LABEL_COLUMNS:
        columns[name] = t[name].cast("int8")
    return t.select(**columns).order_by(["cutoff_at", "client_id"])


def summarize_feature_table(t: ir.Table) -> dict[str, object]:
    """Rows per cutoff and state, and label coverage and base rates per cutoff (JSON-ready).

    ``base_rate`` is the mean of a label over the rows where it is defined (null when none is).
    """
    per_state = t.group_by(["cutoff_at", "state"]).aggregate(rows=t.count()).to_pandas()
    per_cutoff = (
        t.group_by("cutoff_at")
        .aggregate(
            rows=t.count(),
            churn_labelled=t.churn_label.count(),
            churn_positive=t.churn_label.sum(),
            winback_labelled=t.winback_label.count(),
            winback_positive=t.winback_label.sum(),
        )
        .order_by("cutoff_at")
        .to_pandas()
    )
    cutoffs: list[dict[str, object]] = []
    total = 0
    for rec in per_cutoff.to_dict("records"):
        states = per_state[per_state.cutoff_at == rec["cutoff_at"]]
        entry: dict[str, object] = {
            "cutoff_at": rec["cutoff_at"].isoformat(),
            "rows": int(rec["rows"]),
            "states": {str(s): int(n) for s, n in sorted(zip(states.state, states.rows, strict=True))},
        }
        for label in ("churn", "winback"):
            labelled = int(rec[f"{label}_labelled"])
            positive = rec[f"{label}_positive"]
            entry[f"{label}_label"] = {
                "labelled": labelled,
                "base_rate": float(positive) / labelled if labelled else None,
            }
        cutoffs.append(entry)
        total += int(rec["rows"])
    return {"rows": total, "cutoffs": cutoffs}
