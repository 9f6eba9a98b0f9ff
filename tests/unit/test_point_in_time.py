"""Point in time: rows stamped on or after the cutoff never change a feature at that cutoff.

Hypothesis draws a small CRM history before the cutoff, then appends orders, complaints,
contacts and clients dated on/after it and moves open resolutions and missing payments to dates
on/after it. Features and info columns must be identical; only labels may change. The SQL is
compiled once and re-run on each example's data (Ibis compilation costs about a second).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pytest
from _features_frames import frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_feature_table
from features.config import FeatureParams
from features.contract import FEATURE_COLUMNS, FEATURE_INFO_COLUMNS, FEATURE_KEYS, RAW_TABLES
from features.tables import IBIS_TYPES, CleanTables, _cast_to_contract, connect

D = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CUTOFF = D.date()
CLIENTS = ["a", "b", "c"]
COMPARED = [*FEATURE_KEYS, *FEATURE_INFO_COLUMNS, *FEATURE_COLUMNS]


def at(hours: int) -> str:
    return (D + dt.timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


class Runner:
    """The feature query compiled once over named tables whose data is swapped per example."""

    def __init__(self) -> None:
        self.con = connect("duckdb", threads=1, memory_limit="512MB")
        self.raw: Any = self.con.con  # the duckdb connection under Ibis
        empty = {name: frame(name, []) for name in RAW_TABLES}
        self._register(empty)
        tables = CleanTables(
            **{
                name: _cast_to_contract(self.con.table(f"pit_{name}"), spec, "duckdb")
                for name, spec in RAW_TABLES.items()
            }
        )
        params = FeatureParams(cutoffs=[CUTOFF])
        expr = build_feature_table(self.con, tables, [CUTOFF], params, export_date=dt.date(2025, 1, 1))
        self.con.to_pyarrow(expr)  # registers the in-memory cutoffs table the SQL refers to
        self.expr = expr  # keep it alive: Ibis drops memtables of collected expressions
        self.sql = str(self.con.compile(expr))

    def _register(self, frames: dict[str, pd.DataFrame]) -> None:
        for name, spec in RAW_TABLES.items():
            schema = ibis.schema({c.name: IBIS_TYPES[c.kind] for c in spec.columns}).to_pyarrow()
            self.raw.register(
                f"pit_{name}", pa.Table.from_pandas(frames[name], schema=schema, preserve_index=False)
            )

    def run(self, rows: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
        self._register({name: frame(name, rows.get(name, [])) for name in RAW_TABLES})
        out = self.raw.sql(self.sql).arrow().read_all().to_pandas()
        return out[COMPARED].sort_values(["client_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


before = st.integers(min_value=-800 * 24, max_value=-1)
after = st.integers(min_value=0, max_value=200 * 24)
cid = st.sampled_from(CLIENTS)
maybe = st.one_of(st.none(), st.integers(min_value=-60 * 24, max_value=60 * 24))


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """(history before the cutoff, the same history plus what happened on/after it)."""
    n = iter(range(10_000))
    orders = []
    for _ in range(draw(st.integers(0, 12))):
        o_at = draw(before)
        due = draw(maybe)
        paid = draw(maybe)
        orders.append(
            {
                "order_id": f"o{next(n)}",
                "client_id": draw(cid),
                "ordered_at": at(o_at),
                "amount": float(draw(st.integers(1, 500))),
                "margin": draw(st.one_of(st.none(), st.floats(-50, 50, allow_nan=False))),
                "status": draw(st.sampled_from(["completed", "completed", "cancelled", "returned"])),
                "due_at": None if due is None else at(o_at + abs(due)),
                "paid_at": None if paid is None else at(o_at + abs(paid)),
            }
        )
    complaints = []
    for _ in range(draw(st.integers(0, 6))):
        c_at = draw(before)
        res = draw(maybe)
        complaints.append(
            {
                "complaint_id": f"k{next(n)}",
                "client_id": draw(cid),
                "created_at": at(c_at),
                "severity": draw(st.integers(1, 5)),
                "category": "service",
                "human_factor": draw(st.booleans()),
                "resolved_at": None if res is None else at(c_at + abs(res)),
            }
        )
    contacts = [
        {
            "contact_id": f"c{next(n)}",
            "client_id": draw(cid),
            "contacted_at": at(draw(before)),
            "campaign": draw(st.sampled_from(["prevention", "winback"])),
            "manager_id": draw(st.sampled_from([None, "m1", "m2"])),
        }
        for _ in range(draw(st.integers(0, 4)))
    ]
    clients = [{"client_id": c, "created_at": at(-900 * 24), "manager_id": "m0"} for c in CLIENTS]
    past = {"clients": clients, "orders": orders, "complaints": complaints, "contacts": contacts}

    # the future: new rows on/after D, and resolutions/payments that happen on/after D
    def later(stamp: str | None) -> str | None:
        if stamp is None or stamp >= at(0):
            return at(draw(after)) if draw(st.booleans()) else stamp
        return stamp

    new_orders = [
        {
            **o,
            "paid_at": later(o["paid_at"]),
            "due_at": later(o["due_at"]) if o["due_at"] is None else o["due_at"],
        }
        for o in orders
    ]
    for _ in range(draw(st.integers(0, 6))):
        o_at = draw(after)
        new_orders.append(
            {
                "order_id": f"o{next(n)}",
                "client_id": draw(cid),
                "ordered_at": at(o_at),
                "amount": 10.0,
                "margin": 1.0,
                "status": draw(st.sampled_from(["completed", "cancelled"])),
                "due_at": at(o_at - draw(st.integers(0, 48))),  # due on/just before the order
                "paid_at": None,
            }
        )
    new_complaints = [{**c, "resolved_at": later(c["resolved_at"])} for c in complaints]
    new_complaints += [
        {
            "complaint_id": f"k{next(n)}",
            "client_id": draw(cid),
            "created_at": at(draw(after)),
            "severity": 5,
            "category": "staff",
            "human_factor": True,
            "resolved_at": None,
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    new_contacts = contacts + [
        {
            "contact_id": f"c{next(n)}",
            "client_id": draw(cid),
            "contacted_at": at(draw(after)),
            "campaign": "winback",
            "manager_id": "m9",
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    new_clients = [*clients, {"client_id": "z", "created_at": at(draw(after)), "manager_id": "m0"}]
    future = {
        "clients": new_clients,
        "orders": new_orders,
        "complaints": new_complaints,
        "contacts": new_contacts,
    }
    return past, future


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_rows_on_or_after_the_cutoff_change_nothing(
    runner: Runner, data: tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]
) -> None:
    past, future = data
    expected = runner.run(past)
    got = runner.run(future)
    assert list(got.client_id) == CLIENTS  # a client created on/after the cutoff has no row
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


def test_the_fitted_rhythm_constants_are_point_in_time() -> None:
    """Appending rows on/after the cutoff changes neither the fitted rhythm constants nor a feature.

    The hypothesis test above runs on three clients, where the constants fall back to their
    documented defaults; here 200 clients are enough for the real fit.
    """
    from _features_frames import random_frames

    from features.build import fit_rhythm_constants
    from features.tables import tables_from_frames

    future = random_frames(200, seed=21)
    at = pd.Timestamp(D)
    orders = future["orders"][future["orders"].ordered_at < at].copy()
    orders["paid_at"] = orders["paid_at"].where(orders["paid_at"] < at)
    complaints = future["complaints"][future["complaints"].created_at < at].copy()
    complaints["resolved_at"] = complaints["resolved_at"].where(complaints["resolved_at"] < at)
    past = {
        "clients": future["clients"][future["clients"].created_at < at],
        "orders": orders,
        "complaints": complaints,
        "contacts": future["contacts"][future["contacts"].contacted_at < at],
    }
    assert len(past["orders"]) < len(future["orders"]) and len(past["clients"]) < len(future["clients"])
    params = FeatureParams(cutoffs=[CUTOFF])
    con = connect("duckdb", threads=1, memory_limit="512MB")
    fits = [fit_rhythm_constants(tables_from_frames(f), [CUTOFF], params)[CUTOFF] for f in (past, future)]
    assert fits[0].method == "fit" and fits[0].clients > 150
    assert fits[0] == fits[1]
    tables = [
        con.to_pandas(
            build_feature_table(con, tables_from_frames(f), [CUTOFF], params, export_date=dt.date(2025, 1, 1))
        )[COMPARED]
        for f in (past, future)
    ]
    pd.testing.assert_frame_equal(tables[1], tables[0], check_exact=False, rtol=1e-12)
