"""Basket, return and regularity features on a hand-made history (worked out by hand, cutoff 2024-01-01)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from _features_frames import build, client, order, row

from features.contract import BASKET_FEATURES


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    clients = [client("b1"), client("b2"), client("b3"), client("b4")]
    orders = [
        # b1: three completed orders with baskets, returns at 31, 306 and 426 days, one cancellation
        order("b1", "2023-12-25", 10.0, item_count=2, quantity=10.0),  # 7 days before D
        order("b1", "2023-11-01", 10.0, item_count=4, quantity=20.0),  # 61 days
        order("b1", "2023-06-01", 10.0, item_count=6, quantity=60.0),  # 214 days
        order("b1", "2024-01-05", 10.0, item_count=100, quantity=1000.0),  # after D: unknown
        order("b1", "2023-12-01", 30.0, status="returned", item_count=1, quantity=3.0),  # 31 days
        order("b1", "2023-03-01", 20.0, status="returned"),  # 306 days
        order("b1", "2022-11-01", 5.0, status="returned"),  # 426 days: outside 365
        order("b1", "2023-12-30", 50.0, status="cancelled"),  # cancelled, not returned
        # b2: a CRM without basket columns (nulls), one order 12 days before D
        order("b2", "2023-12-20", 10.0),
        # b4: baskets only in the last 90 days: no trend
        order("b4", "2023-12-10", 10.0, item_count=3, quantity=9.0),
        order("b4", "2023-11-10", 10.0, item_count=5, quantity=None),
    ]
    return build(clients, orders)


def test_basket_means_use_completed_orders_before_the_cutoff(table: pd.DataFrame) -> None:
    r = row(table, "b1")
    assert r.items_per_order_mean == pytest.approx(4.0)  # (2 + 4 + 6) / 3
    assert r.units_per_order_mean == pytest.approx(30.0)  # (10 + 20 + 60) / 3
    assert r.units_per_item_mean == pytest.approx(7.5)  # 90 units / 12 items


def test_items_trend_compares_the_last_90_days_with_before(table: pd.DataFrame) -> None:
    assert row(table, "b1").items_trend_90d == pytest.approx(math.log(3.0 / 6.0))
    assert pd.isna(row(table, "b4").items_trend_90d)  # nothing before D-90


def test_units_per_item_skips_orders_without_units(table: pd.DataFrame) -> None:
    r = row(table, "b4")
    assert r.items_per_order_mean == pytest.approx(4.0)
    assert r.units_per_order_mean == pytest.approx(9.0)
    assert r.units_per_item_mean == pytest.approx(3.0)  # only the order with both: 9 / 3


def test_returned_amounts_and_days_since_last_return(table: pd.DataFrame) -> None:
    r = row(table, "b1")
    assert r.returned_amount_90d == pytest.approx(30.0)
    assert r.returned_amount_365d == pytest.approx(50.0)
    assert r.days_since_last_return == pytest.approx(31.0)


def test_recent_orders_and_active_periods(table: pd.DataFrame) -> None:
    r = row(table, "b1")
    assert r.orders_14d == 1
    # 30-day periods back from D: ages 7, 61, 214 days -> periods 0, 2, 7; 8 periods since the first
    assert r.active_months_share == pytest.approx(3 / 8)
    r2 = row(table, "b2")
    assert r2.orders_14d == 1
    assert r2.active_months_share == pytest.approx(1.0)


def test_basket_features_are_null_without_basket_columns(table: pd.DataFrame) -> None:
    r = row(table, "b2")
    for name in ("items_per_order_mean", "units_per_order_mean", "units_per_item_mean", "items_trend_90d"):
        assert pd.isna(r[name]), name
    assert r.returned_amount_90d == 0.0
    assert pd.isna(r.days_since_last_return)


def test_client_without_orders(table: pd.DataFrame) -> None:
    r = row(table, "b3")
    assert r.orders_14d == 0
    assert r.returned_amount_365d == 0.0
    assert pd.isna(r.active_months_share)
    assert pd.isna(r.items_per_order_mean)


def test_every_basket_feature_is_written(table: pd.DataFrame) -> None:
    assert set(BASKET_FEATURES) <= set(table.columns)
    assert str(table.orders_14d.dtype).lower().startswith("int")


def test_basket_aggregate_names_collide_with_no_other_family() -> None:
    """Families share grouped aggregates (per bucket, per cutoff, per window) and the wide join: a
    shared name would silently replace another family's aggregate (it once nulled days_since_return)."""
    import datetime as dt

    from _features_frames import frame

    from features.basket import (
        basket_aggregates,
        basket_bucket_aggregates,
        basket_window_aggregates,
        period_collisions,
    )
    from features.build import bucket_of
    from features.config import FeatureParams
    from features.lifecycle import (
        lifecycle_aggregates,
        loss_gap_aggregates,
        loss_gap_bucket_aggregates,
    )
    from features.payments import payment_aggregates, payment_bucket_aggregates
    from features.rfm import (
        gap_aggregates,
        gap_bucket_aggregates,
        prepare_orders,
        rfm_aggregates,
        rfm_bucket_aggregates,
        rfm_window_aggregates,
        with_gaps,
    )
    from features.rhythm import rhythm_aggregates, rhythm_bucket_aggregates
    from features.tables import cutoffs_frame, cutoffs_table, tables_from_frames

    day = dt.date(2024, 1, 1)
    params = FeatureParams(cutoffs=[day])
    tables = tables_from_frames(
        {
            "clients": frame("clients", [client("c")]),
            "orders": frame("orders", [order("c", "2023-12-01")]),
            "complaints": frame("complaints", []),
        }
    )
    cut = cutoffs_table(
        cutoffs_frame([day], windows_days=params.windows_days, horizon_days=100, export_date=day)
    )
    orders = prepare_orders(tables.orders)
    done = orders.filter(orders.is_completed)
    gaps = with_gaps(done.select("client_id", "ordered_at", "ordered_s"))
    orders = orders.mutate(
        bucket=bucket_of(orders.ordered_at, [day]),
        b_due_bucket=bucket_of(orders.due_at, [day]),
        b_paid_bucket=bucket_of(orders.paid_at, [day]),
        b_due_exit_bucket=bucket_of(orders.due_at, [day]),
    )
    gaps = gaps.mutate(bucket=bucket_of(gaps.ordered_at, [day]))
    per_bucket = {
        "rfm": rfm_bucket_aggregates(orders, params),
        "payments": payment_bucket_aggregates(orders, params, 0.0),
        "rhythm": rhythm_bucket_aggregates(orders, params, 0.0),
        "basket": basket_bucket_aggregates(orders, params),
    }
    ob = orders.group_by(
        ["client_id", "bucket", "b_due_bucket", "b_paid_bucket", "b_due_exit_bucket"]
    ).aggregate(**{k: v for aggs in per_bucket.values() for k, v in aggs.items()})
    gap_bucket = {
        "gaps": gap_bucket_aggregates(gaps, params),
        "loss_gaps": loss_gap_bucket_aggregates(gaps, params),
    }
    gb = gaps.group_by(["client_id", "bucket"]).aggregate(
        **{k: v for aggs in gap_bucket.values() for k, v in aggs.items()}
    )
    j = ob.join(cut, ob.bucket <= cut.cutoff_id)
    g = gb.join(cut, gb.bucket <= cut.cutoff_id)
    w = prepare_orders(tables.orders).join(cut, tables.orders.ordered_at < cut.cutoff_at)
    gj = gaps.join(cut, gaps.ordered_at < cut.cutoff_at)
    per_cutoff = {
        "rfm": rfm_aggregates(j, params),
        "payments": payment_aggregates(j, params, 0.0),
        "rhythm": rhythm_aggregates(j, params, 0.0),
        "basket": basket_aggregates(j, params),
        "gaps": gap_aggregates(g, params),
        "lifecycle": lifecycle_aggregates(j, params),
        "loss_gaps": loss_gap_aggregates(g, params),
        "rfm_window": rfm_window_aggregates(w, params),
        "basket_window": basket_window_aggregates(w, params),
        "basket_periods": period_collisions(gj),
    }
    for level in (per_bucket, gap_bucket, per_cutoff):
        names = [name for aggs in level.values() for name in aggs]
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert "agg_bsk_collisions" in per_cutoff["basket_periods"]  # the check sees every family
