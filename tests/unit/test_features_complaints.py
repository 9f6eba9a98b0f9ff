"""Complaint features at cutoff 2024-01-01: open/resolved is judged at the cutoff, not today."""

from __future__ import annotations

import pandas as pd
import pytest
from _features_frames import build, client, complaint, row


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    complaints = [
        # k1: resolved after D counts as open at D; the complaint at D is not known yet
        complaint("k1", "2023-12-20", 4, human_factor=True, resolved_at="2024-01-05"),  # 12 days before D
        complaint("k1", "2023-11-01", 2, resolved_at="2023-11-11"),  # 61 days, resolved in 10 days
        complaint("k1", "2023-03-01", 5, human_factor=True),  # 306 days, still open
        complaint("k1", "2022-06-01", 1, resolved_at="2022-06-21"),  # 579 days, resolved in 20 days
        complaint("k1", "2024-01-01", 5, human_factor=True),  # at D: ignored
        # k2: resolved exactly at D 00:00 -> still open at the snapshot
        complaint("k2", "2023-12-01", 3, resolved_at="2024-01-01"),
        # k4: two complaints at the same instant: the later complaint_id is "the last one"
        complaint("k4", "2023-12-01", 1, complaint_id="ka", resolved_at="2023-12-02"),
        complaint("k4", "2023-12-01", 5, complaint_id="kb"),
    ]
    return build([client("k1"), client("k2"), client("k3"), client("k4")], [], complaints)


def test_counts_and_severity(table: pd.DataFrame) -> None:
    r = row(table, "k1")
    assert (r.complaints_90d, r.complaints_365d, r.complaints_total) == (2, 3, 4)
    assert r.complaint_severity_max == 5
    assert r.complaint_severity_mean == pytest.approx((4 + 2 + 5 + 1) / 4)
    assert r.complaint_severity_weighted_365d == 4 + 2 + 5
    assert r.human_factor_complaints_365d == 2
    assert r.days_since_last_complaint == pytest.approx(12.0)


def test_open_and_resolved_at_the_cutoff(table: pd.DataFrame) -> None:
    r = row(table, "k1")
    assert r.open_complaints == 2
    assert r.open_complaint_severity_max == 5
    assert r.resolved_complaint_share == pytest.approx(0.5)
    assert r.complaint_resolve_days_mean == pytest.approx(15.0)
    assert r.last_complaint_resolved == 0  # resolved on 2024-01-05, after the cutoff
    assert r.last_complaint_severity == 4


def test_resolved_exactly_at_cutoff_is_open(table: pd.DataFrame) -> None:
    r = row(table, "k2")
    assert r.open_complaints == 1
    assert r.resolved_complaint_share == 0.0
    assert r.last_complaint_resolved == 0
    assert pd.isna(r.complaint_resolve_days_mean)


def test_no_complaints(table: pd.DataFrame) -> None:
    r = row(table, "k3")
    assert (r.complaints_total, r.complaints_365d, r.open_complaints, r.open_complaint_severity_max) == (
        0,
        0,
        0,
        0,
    )
    assert r.complaint_severity_weighted_365d == 0
    for col in (
        "complaint_severity_max",
        "complaint_severity_mean",
        "resolved_complaint_share",
        "complaint_resolve_days_mean",
        "days_since_last_complaint",
        "last_complaint_resolved",
        "last_complaint_severity",
    ):
        assert pd.isna(r[col]), col


def test_last_complaint_tie_broken_by_id(table: pd.DataFrame) -> None:
    r = row(table, "k4")
    assert r.last_complaint_severity == 5
    assert r.last_complaint_resolved == 0
    assert r.open_complaints == 1
