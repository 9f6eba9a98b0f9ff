"""The time split is leakage-free and fails clearly when the table cannot support it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from features.contract import ContractError
from models.dataset import SplitError, choose_split, cutoff_dates, read_feature_table, split_frames
from tests.model.conftest import HORIZON_DAYS


@pytest.mark.parametrize("kind", ["churn", "winback"])
def test_no_label_window_reaches_past_the_next_step(
    fabricated: tuple[pd.DataFrame, pd.DataFrame], kind: str
) -> None:
    frame = fabricated[0]
    split = choose_split(frame, kind, HORIZON_DAYS)  # type: ignore[arg-type]
    horizon = dt.timedelta(days=HORIZON_DAYS)
    assert split.valid_cutoff + horizon <= split.test_cutoff
    assert all(d + horizon <= split.valid_cutoff for d in split.train_cutoffs)
    # the test cutoff is the latest one whose labels are all known
    label = "churn_label" if kind == "churn" else "winback_label"
    pop = frame[
        frame["state"].isin(
            ["new", "active"] if kind == "churn" else ["lapsed_90", "lapsed_180", "lapsed_360"]
        )
    ]
    known = pop[label].notna().groupby(cutoff_dates(pop)).all()
    assert split.test_cutoff == max(d for d, ok in known.items() if ok)


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


def test_overlap_mode_keeps_every_fitting_window_before_the_test_cutoff(
    fabricated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frame = fabricated[0]
    strict = choose_split(frame, "churn", HORIZON_DAYS)
    overlap = choose_split(frame, "churn", HORIZON_DAYS, "overlap")
    horizon = dt.timedelta(days=HORIZON_DAYS)
    assert (overlap.valid_cutoff, overlap.test_cutoff) == (strict.valid_cutoff, strict.test_cutoff)
    assert set(strict.train_cutoffs) < set(overlap.train_cutoffs)
    assert all(d < overlap.valid_cutoff and d + horizon <= overlap.test_cutoff for d in overlap.train_cutoffs)


def test_too_short_history_is_a_clear_error(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame = fabricated[0]
    late = frame[pd.to_datetime(frame["cutoff_at"]) >= pd.Timestamp("2024-06-01", tz="UTC")]
    with pytest.raises(SplitError, match="validation cutoff"):
        choose_split(late, "churn", HORIZON_DAYS)


def test_missing_feature_column_is_named(
    tmp_path: Path, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    path = tmp_path / "features.parquet"
    fabricated[0].head(50).drop(columns=["open_complaints"]).to_parquet(path)
    with pytest.raises(ContractError, match="open_complaints"):
        read_feature_table(path)
