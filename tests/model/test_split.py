"""Rolling-origin folds are leakage-free, adapt to the history and fail clearly when it is too short."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import ContractError
from models.dataset import (
    SplitError,
    client_half,
    cutoff_dates,
    fold_parts,
    plan_folds,
    pooled_rows,
    read_feature_table,
    split_frames,
)
from tests.model.conftest import HORIZON_DAYS


@pytest.mark.parametrize("kind", ["churn", "winback"])
def test_no_label_window_reaches_past_the_next_step(
    fabricated: tuple[pd.DataFrame, pd.DataFrame], kind: str
) -> None:
    frame = fabricated[0]
    plan = plan_folds(frame, kind, HORIZON_DAYS)  # type: ignore[arg-type]
    horizon = dt.timedelta(days=HORIZON_DAYS)
    # a long history: three strict folds, validation cutoffs at least a quarter horizon apart
    assert len(plan.folds) == 3 and all(f.mode == "strict" for f in plan.folds)
    valids = [f.valid_cutoff for f in plan.folds]
    assert valids == sorted(valids) and min(np.diff(valids)) >= dt.timedelta(days=HORIZON_DAYS // 4)
    for fold in plan.folds:
        assert fold.valid_cutoff + horizon <= plan.test_cutoff
        assert all(d + horizon <= fold.valid_cutoff for d in fold.train_cutoffs)
    # the test cutoff is the latest one whose labels are all known
    label = "churn_label" if kind == "churn" else "winback_label"
    pop = frame[
        frame["state"].isin(
            ["new", "active"] if kind == "churn" else ["lapsed_90", "lapsed_180", "lapsed_360"]
        )
    ]
    known = pop[label].notna().groupby(cutoff_dates(pop)).all()
    assert plan.test_cutoff == max(d for d, ok in known.items() if ok)


def _table(cutoffs: list[dt.date], clients: int, seed: int) -> pd.DataFrame:
    """A minimal feature-table-like frame: every client active at every cutoff, labels drawn."""
    rng = np.random.default_rng(seed)
    export = max(cutoffs) + dt.timedelta(days=1)
    rows = []
    for d in cutoffs:
        known = d + dt.timedelta(days=HORIZON_DAYS) <= export
        for c in range(clients):
            rows.append(
                {
                    "client_id": f"C{c:04d}",
                    "cutoff_at": pd.Timestamp(d, tz="UTC"),
                    "state": "active" if c % 3 else "lapsed_90",
                    "churn_label": float(rng.integers(0, 2)) if known else np.nan,
                    "winback_label": float(rng.integers(0, 2)) if known else np.nan,
                }
            )
    frame = pd.DataFrame(rows)
    frame.loc[frame["state"] == "active", "winback_label"] = np.nan
    frame.loc[frame["state"] != "active", "churn_label"] = np.nan
    return frame


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start_offset=st.integers(0, 40),
    every=st.integers(5, 30),
    extra=st.integers(0, 25),
    folds=st.integers(1, 5),
    split=st.sampled_from(["auto", "strict", "overlap"]),
    pin_back=st.integers(0, 3),
)
def test_rolling_folds_never_reach_past_the_test_cutoff(
    start_offset: int, every: int, extra: int, folds: int, split: str, pin_back: int
) -> None:
    n = -(-(2 * HORIZON_DAYS) // every) + 2 + extra  # two label windows of history, and more
    start = dt.date(2023, 1, 1) + dt.timedelta(days=start_offset)
    cutoffs = [start + dt.timedelta(days=every * i) for i in range(n)]
    frame = _table(cutoffs, 30, seed=n)
    horizon = dt.timedelta(days=HORIZON_DAYS)
    labelled = [d for d in cutoffs if d + horizon <= max(cutoffs) + dt.timedelta(days=1)]
    pinned = labelled[-1 - min(pin_back, len(labelled) - 1)] if labelled else None
    try:
        plan = plan_folds(
            frame,
            "churn",
            HORIZON_DAYS,
            split=split,
            folds=folds,
            test_cutoff=pinned,
            min_rows=10,
            min_positives=1,
        )  # type: ignore[arg-type]
    except SplitError as e:
        assert "churn" in str(e)
        return
    assert plan.test_cutoff == pinned
    assert 1 <= len(plan.folds) <= folds
    for fold in plan.folds:
        # no training or validation label window reaches past the test cutoff
        assert fold.valid_cutoff + horizon <= plan.test_cutoff
        assert fold.train_cutoffs and all(d + horizon <= plan.test_cutoff for d in fold.train_cutoffs)
        assert all(d < fold.valid_cutoff for d in fold.train_cutoffs)
        if fold.mode == "strict":
            assert all(d + horizon <= fold.valid_cutoff for d in fold.train_cutoffs)
        else:
            assert split != "strict"
            # client-disjoint: a validating client never trains in the same part
            for train, valid, pool in fold_parts(frame, "churn", fold, seed=1):
                assert not set(train["client_id"]) & set(valid["client_id"])
                assert not set(pool["client_id"]) & set(valid["client_id"])


def test_a_short_history_uses_client_disjoint_folds(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame = fabricated[0]
    late = frame[pd.to_datetime(frame["cutoff_at"]) >= pd.Timestamp("2024-01-01", tz="UTC")]
    plan = plan_folds(late, "churn", HORIZON_DAYS)
    assert plan.last.mode == "overlap"
    train, valid, _ = fold_parts(late, "churn", plan.last, seed=5)[0]
    halves = client_half(valid["client_id"], 5)
    assert set(halves) == {1} and set(client_half(train["client_id"], 5)) == {0}


def test_a_pinned_test_cutoff_is_used_or_named(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame = fabricated[0]
    latest = plan_folds(frame, "churn", HORIZON_DAYS).test_cutoff
    earlier = latest - dt.timedelta(days=60)
    assert plan_folds(frame, "churn", HORIZON_DAYS, test_cutoff=earlier).test_cutoff == earlier
    with pytest.raises(SplitError, match=r"test cutoff 2024-09-23 .* is not a cutoff"):
        plan_folds(frame, "churn", HORIZON_DAYS, test_cutoff=dt.date(2024, 9, 23))


def test_split_frames_hold_only_their_population_and_cutoffs(
    fabricated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frames = split_frames(fabricated[0], "winback", HORIZON_DAYS)
    for part in (frames.train, frames.valid, frames.test):
        assert set(part["state"]) <= {"lapsed_90", "lapsed_180", "lapsed_360"}
        assert set(part["label"].unique()) == {0, 1}
    assert set(cutoff_dates(frames.test)) == {frames.split.test_cutoff}
    assert set(cutoff_dates(frames.train)) == set(frames.split.train_cutoffs)
    assert frames.split.test_rows == len(frames.test)


def test_pooled_rows_carry_the_tasks_event(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame = fabricated[0]
    day = split_frames(frame, "winback", HORIZON_DAYS).split.train_cutoffs[0]
    rows = pooled_rows(frame, "winback", [day])
    assert set(rows["state"]) <= {"new", "active"}
    # win-back's event is an order within the horizon: an active client's "no churn"
    assert (rows["label"] == 1 - rows["churn_label"]).all()


def test_too_short_history_is_a_clear_error(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame = fabricated[0]
    late = frame[pd.to_datetime(frame["cutoff_at"]) >= pd.Timestamp("2024-06-01", tz="UTC")]
    with pytest.raises(SplitError, match=r"too short for an honest split.*days of history"):
        plan_folds(late, "churn", HORIZON_DAYS)


def test_a_tiny_population_stops_naming_it_the_cutoff_and_the_counts(
    fabricated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frame = fabricated[0]
    lapsed = frame["state"].isin(["lapsed_90", "lapsed_180", "lapsed_360"])
    keep = frame.loc[lapsed, "client_id"].drop_duplicates().head(5)
    small = frame[~lapsed | frame["client_id"].isin(keep)]
    assert len(small[small["state"].str.startswith("lapsed")]) < 60
    with pytest.raises(
        SplitError, match=r"winback population: too few rows.*validation cutoff \d{4}-\d\d-\d\d.*rows"
    ):
        plan_folds(small, "winback", HORIZON_DAYS)


def test_missing_feature_column_is_named(
    tmp_path: Path, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    path = tmp_path / "features.parquet"
    fabricated[0].head(50).drop(columns=["open_complaints"]).to_parquet(path)
    with pytest.raises(ContractError, match="open_complaints"):
        read_feature_table(path)
