"""RFM features on a hand-made client history (numbers worked out by hand, cutoff 2024-01-01)."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from _features_frames import build, client, order, row

SEC = 1 / 86_400  # one second in days


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    clients = [
        client("r1"),
        client("r2"),
        client("r3", created="2024-01-01"),  # created at the cutoff: no row
        client("r4", created="2023-12-31"),
        client("r5"),
        client("r6"),
        client("r7"),
        client("r8"),
    ]
    orders = [
        # r1: five completed orders before D, one at D (ignored), one cancelled, one returned
        order("r1", "2023-12-31 23:59:59", 5.0, margin=None),  # 1 second before D
        order("r1", "2023-12-15", 100.0, margin=10.0),  # 17 days before D
        order("r1", "2023-11-01", 50.0, margin=None),  # 61 days
        order("r1", "2023-08-01", 30.0, margin=3.0),  # 153 days
        order("r1", "2022-12-01", 20.0, margin=2.0),  # 396 days
        order("r1", "2024-01-01", 1000.0, margin=100.0),  # at D: not known yet
        order("r1", "2023-12-20", 999.0, status="cancelled"),
        order("r1", "2023-06-01", 40.0, status="returned"),
        order("r5", "2023-12-20", 8.0, margin=None),
        order("r6", "2023-10-02", 10.0),
        order("r6", "2023-12-01", 10.0),
        order("r7", "2023-09-01", 10.0),
        order("r7", "2023-10-01", 10.0),
        order("r7", "2023-12-01", 10.0),
        order("r8", "2023-12-01", 10.0, status="cancelled"),
    ]
    return build(clients, orders)


def test_one_row_per_client_created_before_the_cutoff(table: pd.DataFrame) -> None:
    assert sorted(table.client_id) == ["r1", "r2", "r4", "r5", "r6", "r7", "r8"]
    assert row(table, "r4").tenure_days == pytest.approx(1.0)


def test_windows_count_sum_and_null_safe_margin(table: pd.DataFrame) -> None:
    r = row(table, "r1")
    assert [r.orders_30d, r.orders_90d, r.orders_180d, r.orders_365d, r.orders_total] == [2, 3, 4, 4, 5]
    assert [r.amount_30d, r.amount_90d, r.amount_180d, r.amount_365d, r.amount_total] == [
        105,
        155,
        185,
        185,
        205,
    ]
    assert [r.margin_30d, r.margin_90d, r.margin_180d, r.margin_365d, r.margin_total] == [10, 10, 13, 13, 15]
    assert r.avg_order_amount == pytest.approx(41.0)


def test_recency_tenure_first_order(table: pd.DataFrame) -> None:
    r = row(table, "r1")
    assert r.recency_days == pytest.approx(SEC)
    assert r.tenure_days == pytest.approx(1461.0)
    assert r.days_since_first_order == pytest.approx(396.0)
    assert r.last_order_at == pd.Timestamp("2023-12-31 23:59:59", tz="UTC")
    assert r.first_order_at == pd.Timestamp("2022-12-01", tz="UTC")


def test_gaps_overdue_trend_and_shares(table: pd.DataFrame) -> None:
    r = row(table, "r1")
    gaps = [243.0, 92.0, 44.0, 17.0 - SEC]
    assert r.gap_mean_days == pytest.approx(statistics.mean(gaps))
    assert r.gap_std_days == pytest.approx(statistics.stdev(gaps))
    assert r.overdue_ratio == pytest.approx(SEC / statistics.mean(gaps))
    assert r.orders_trend_90d == 3 - 1
    assert r.amount_trend_90d == pytest.approx(math.log((155 + 1) / (30 + 1)))
    assert (r.cancelled_orders_total, r.returned_orders_total) == (1, 1)
    assert r.cancelled_share == pytest.approx(1 / 7)
    assert r.returned_share == pytest.approx(1 / 7)


def test_client_without_orders(table: pd.DataFrame) -> None:
    r = row(table, "r2")
    assert r.state == "no_order"
    assert (r.orders_total, r.orders_30d, r.amount_total, r.margin_total, r.orders_trend_90d) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert r.amount_trend_90d == 0.0
    assert r.cancelled_share == 0.0
    for col in (
        "recency_days",
        "days_since_first_order",
        "avg_order_amount",
        "gap_mean_days",
        "overdue_ratio",
    ):
        assert pd.isna(r[col]), col
    assert pd.isna(r.first_order_at) and pd.isna(r.last_order_at)


def test_all_margins_null_gives_null_margin(table: pd.DataFrame) -> None:
    r = row(table, "r5")
    assert r.orders_30d == 1
    assert pd.isna(r.margin_30d) and pd.isna(r.margin_total)
    assert pd.isna(r.gap_mean_days) and pd.isna(r.gap_std_days)


def test_gap_std_needs_three_orders(table: pd.DataFrame) -> None:
    r6, r7 = row(table, "r6"), row(table, "r7")
    assert r6.gap_mean_days == pytest.approx(60.0)
    assert pd.isna(r6.gap_std_days)
    assert r6.overdue_ratio == pytest.approx(31 / 60)
    assert r7.gap_mean_days == pytest.approx((30 + 61) / 2)
    assert r7.gap_std_days == pytest.approx(abs(61 - 30) / math.sqrt(2))


def test_only_cancelled_orders(table: pd.DataFrame) -> None:
    r = row(table, "r8")
    assert r.state == "no_order"
    assert r.cancelled_share == 1.0
    assert r.orders_total == 0
