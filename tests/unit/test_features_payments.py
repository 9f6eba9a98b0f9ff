"""Payment features at cutoff 2024-01-01: a payment after the cutoff is unpaid at the cutoff."""

from __future__ import annotations

import pandas as pd
import pytest
from _features_frames import build, client, order, row


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    orders = [
        order("p1", "2023-10-01", due_at="2023-10-31", paid_at="2023-10-21"),  # early: delay 0
        order("p1", "2023-11-01", due_at="2023-11-30", paid_at="2023-12-10"),  # 10 days late
        order("p1", "2023-12-01", 70.0, due_at="2023-12-21"),  # unpaid: 11 days to D
        order("p1", "2023-12-15", 30.0, due_at="2023-12-25", paid_at="2024-01-10"),  # paid after D: 7 days
        order("p1", "2023-12-20", due_at="2024-01-05"),  # not due yet
        order("p1", "2022-06-01", due_at="2022-07-01", paid_at="2022-07-11"),  # late, but > 365 days ago
        order("p1", "2024-01-02", due_at="2023-12-01"),  # ordered after D: unknown
        order("p2", "2023-12-01"),  # no due date
        order("p3", "2023-11-01", due_at="2023-12-01", paid_at="2023-12-01"),  # paid exactly on time
    ]
    return build([client("p1"), client("p2"), client("p3")], orders)


def test_delay_late_share_and_unpaid(table: pd.DataFrame) -> None:
    r = row(table, "p1")
    assert r.payment_delay_mean_days == pytest.approx((0 + 10 + 11 + 7 + 10) / 5)
    assert r.late_payment_share == pytest.approx(4 / 5)
    assert r.late_payments_365d == 3
    assert r.overdue_unpaid_amount == pytest.approx(100.0)


def test_no_due_orders(table: pd.DataFrame) -> None:
    r = row(table, "p2")
    assert pd.isna(r.payment_delay_mean_days) and pd.isna(r.late_payment_share)
    assert (r.late_payments_365d, r.overdue_unpaid_amount) == (0, 0.0)


def test_paid_on_due_date_is_not_late(table: pd.DataFrame) -> None:
    r = row(table, "p3")
    assert r.payment_delay_mean_days == 0.0
    assert r.late_payment_share == 0.0
    assert r.late_payments_365d == 0
