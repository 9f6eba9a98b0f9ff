"""Lifecycle states at each tier boundary, loss date and loss history (cutoff D = 2024-01-01)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from _features_frames import build, client, contact, order, row

D = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def ago(days: float) -> str:
    """The instant ``days`` days before the cutoff, as text."""
    return (D - dt.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


def on(days: int, clock: str) -> float:
    """``clock`` (HH:MM, UTC) on the calendar day ``days`` days before D, as days before D."""
    hours, minutes = (int(p) for p in clock.split(":"))
    return days - (hours * 60 + minutes) / 1440


# client -> days before D of its completed orders
HISTORY: dict[str, list[float]] = {
    "new": [50],
    "new_edge": [100, 10],  # first order exactly new_client_days before D: still new
    "active_edge": [101, 10],
    # the tiers count calendar days: any hour of the day 90 days before D is lapsed_90 ...
    "lapsed_90_0001": [on(90, "00:01")],
    "lapsed_90_2359": [on(90, "23:59")],
    # ... and any hour of the day 89 days before D is not
    "active_89_0001": [on(89, "00:01"), 200],
    "active_89_2359": [on(89, "23:59"), 200],
    "new_89_0001": [on(89, "00:01")],
    "lapsed_90": [90],
    "lapsed_90_b": [on(179, "00:00")],
    "lapsed_180": [on(180, "23:59")],
    "lapsed_360": [360],
    "lapsed_360_b": [on(729, "12:00")],
    "lost": [730],
    "twice": [500, 300, 200],  # gaps 200 and 100: two returns, lapsed again now
    "returned": [400, 100],  # one return 100 days ago, lapsed again now
    "gap_89": [150, 61],  # a gap of 89 days is no loss
    "gap_90_calendar": [on(150, "23:59"), on(60, "00:01")],  # 89.0 days apart, 90 calendar days: a loss
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    clients = [client(c, manager_id=f"mgr_{c}") for c in [*HISTORY, "none"]]
    orders = [order(c, ago(d)) for c, days in HISTORY.items() for d in days]
    contacts = [
        # lapsed_360: loss_at = D - 270; the last contact with a manager before it is mX
        contact("lapsed_360", ago(300), manager_id="mX"),
        contact("lapsed_360", ago(280), manager_id=None),
        contact("lapsed_360", ago(100), manager_id="mY"),
        contact("new", ago(10), manager_id="mZ"),
    ]
    return build(clients, orders, contacts=contacts)


@pytest.mark.parametrize(
    ("cid", "state"),
    [
        ("new", "new"),
        ("new_edge", "new"),
        ("active_edge", "active"),
        ("lapsed_90_0001", "lapsed_90"),
        ("lapsed_90_2359", "lapsed_90"),
        ("active_89_0001", "active"),
        ("active_89_2359", "active"),
        ("new_89_0001", "new"),
        ("lapsed_90", "lapsed_90"),
        ("lapsed_90_b", "lapsed_90"),
        ("lapsed_180", "lapsed_180"),
        ("lapsed_360", "lapsed_360"),
        ("lapsed_360_b", "lapsed_360"),
        ("lost", "lost"),
        ("none", "no_order"),
    ],
)
def test_state_at_tier_boundaries(table: pd.DataFrame, cid: str, state: str) -> None:
    r = row(table, cid)
    assert r.state == state
    assert r.is_new == (1 if state == "new" else 0)


def test_loss_date_and_days_since_loss(table: pd.DataFrame) -> None:
    r = row(table, "lapsed_90")
    assert r.loss_at == pd.Timestamp(D)  # last order + 90 days
    assert r.days_since_loss == pytest.approx(0.0)
    lost = row(table, "lost")
    assert lost.loss_at == pd.Timestamp(D - dt.timedelta(days=640))
    assert lost.days_since_loss == pytest.approx(640.0)
    active = row(table, "active_89_0001")
    assert pd.isna(active.loss_at) and pd.isna(active.days_since_loss)


@pytest.mark.parametrize("cid", ["lapsed_90_0001", "lapsed_90_2359"])
def test_loss_counts_calendar_days_whatever_the_hour(table: pd.DataFrame, cid: str) -> None:
    # lapsed at 00:00 UTC of the day 90 days after the last order's day: the cutoff itself
    r = row(table, cid)
    assert r.loss_at == pd.Timestamp(D)
    assert r.days_since_loss == 0.0
    assert (r.times_lost, r.times_returned) == (1, 0)
    # the fractional recency stays a feature: 89 days and some hours
    assert 89.0 < r.recency_days < 90.0


def test_loss_gap_counts_calendar_days(table: pd.DataFrame) -> None:
    r = row(table, "gap_90_calendar")
    assert r.state == "active"
    assert (r.times_returned, r.times_lost, r.returned_recently) == (1, 1, 1)
    assert r.days_since_return == pytest.approx(on(60, "00:01"))


def test_twice_lost_client(table: pd.DataFrame) -> None:
    r = row(table, "twice")
    assert r.state == "lapsed_180"
    assert (r.times_returned, r.times_lost, r.twice_lost) == (2, 3, 1)
    assert r.days_since_return == pytest.approx(200.0)
    assert r.returned_recently == 0  # 200 > returned_recently_days (180)


def test_returned_recently(table: pd.DataFrame) -> None:
    r = row(table, "returned")
    assert r.state == "lapsed_90"
    assert (r.times_returned, r.times_lost, r.twice_lost, r.returned_recently) == (1, 2, 1, 1)
    assert r.days_since_return == pytest.approx(100.0)


def test_gap_below_first_tier_is_no_loss(table: pd.DataFrame) -> None:
    r = row(table, "gap_89")
    assert r.state == "active"
    assert (r.times_lost, r.times_returned, r.twice_lost, r.returned_recently) == (0, 0, 0, 0)
    assert pd.isna(r.days_since_return)
    none = row(table, "none")
    assert (none.times_lost, none.times_returned, none.twice_lost) == (0, 0, 0)


def test_loss_manager(table: pd.DataFrame) -> None:
    assert row(table, "lapsed_360").loss_manager_id == "mX"  # last contact before the loss
    assert row(table, "lost").loss_manager_id == "mgr_lost"  # no contacts: current manager
    assert pd.isna(row(table, "new").loss_manager_id)  # not lapsed: no loss manager
    assert row(table, "new").manager_id == "mgr_new"


def test_tiers_come_from_params() -> None:
    clients = [client("a")]
    df = build(clients, [order("a", ago(60))], lapse_tiers_days=[50, 100, 200], lost_after_days=300)
    r = row(df, "a")
    assert r.state == "lapsed_90"  # the first tier (50 days) is passed
    assert r.days_since_loss == pytest.approx(10.0)
