"""Label windows [D, D + horizon) at their boundaries (D = 2024-01-01, horizon 100 days -> 2024-04-10)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from _features_frames import build, client, order, row


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    orders = [
        # new clients (a first completed order 10 days before D) with one more order each
        *(order(c, "2023-12-22") for c in ("at_d", "end_minus_1s", "at_end", "before_only", "cancelled")),
        order("at_d", "2024-01-01"),  # exactly at D: inside the window -> no churn
        order("end_minus_1s", "2024-04-09 23:59:59"),  # last second of the window
        order("at_end", "2024-04-10"),  # D + horizon: outside
        order("before_only", "2023-12-27"),  # before D: does not count
        order("cancelled", "2024-02-01", status="cancelled"),  # not completed: does not count
        # lapsed_90 clients (120 days since the last order)
        order("wb_yes", "2023-09-03"),
        order("wb_yes", "2024-03-01"),
        order("wb_no", "2023-09-03"),
        # lost client (800 days) ordering again: neither label applies
        order("lost", "2021-10-23"),
        order("lost", "2024-02-01"),
    ]
    cids = ["at_d", "end_minus_1s", "at_end", "before_only", "cancelled", "wb_yes", "wb_no", "lost", "none"]
    return build([client(c) for c in cids], orders)


@pytest.mark.parametrize(
    ("cid", "churn"),
    [("at_d", 0), ("end_minus_1s", 0), ("at_end", 1), ("before_only", 1), ("cancelled", 1)],
)
def test_churn_label_window(table: pd.DataFrame, cid: str, churn: int) -> None:
    r = row(table, cid)
    assert r.state == "new"  # first and last order 10 days before D
    assert r.churn_label == churn
    assert pd.isna(r.winback_label)


def test_winback_label(table: pd.DataFrame) -> None:
    yes, no = row(table, "wb_yes"), row(table, "wb_no")
    assert (yes.state, no.state) == ("lapsed_90", "lapsed_90")
    assert (yes.winback_label, no.winback_label) == (1, 0)
    assert pd.isna(yes.churn_label) and pd.isna(no.churn_label)


def test_no_label_for_other_states(table: pd.DataFrame) -> None:
    for cid, state in (("lost", "lost"), ("none", "no_order")):
        r = row(table, cid)
        assert r.state == state
        assert pd.isna(r.churn_label) and pd.isna(r.winback_label)


def test_label_null_when_window_passes_the_export_date() -> None:
    # 2024-09-23 + 100 days = 2025-01-01 = export date: observed; one day later it is not
    cutoffs = ["2024-09-23", "2024-09-24"]
    orders = [order("a", "2024-09-01"), order("b", "2024-05-01")]
    df = build([client("a"), client("b")], orders, cutoffs=cutoffs, export=dt.date(2025, 1, 1))
    assert row(df, "a", "2024-09-23").churn_label == 1
    assert pd.isna(row(df, "a", "2024-09-24").churn_label)
    assert row(df, "b", "2024-09-23").winback_label == 0
    assert pd.isna(row(df, "b", "2024-09-24").winback_label)
    assert row(df, "b", "2024-09-24").state == "lapsed_90"


def test_horizon_comes_from_params() -> None:
    orders = [order("a", "2023-12-22"), order("a", "2024-02-15")]  # 45 days after D
    short = row(build([client("a")], orders, horizon_days=30), "a")
    long = row(build([client("a")], orders, horizon_days=60), "a")
    assert (short.churn_label, long.churn_label) == (1, 0)
