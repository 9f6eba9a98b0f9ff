"""The scoring core's boundary: contract errors name the table, file and column; cutoff choice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import FEATURE_COLUMNS, ContractError, check_feature_table
from serving.config import ScoreParams
from serving.core import prepare_snapshot, read_feature_table

PARAMS = ScoreParams()


def make_table(
    n: int = 60, cutoffs: tuple[str, ...] = ("2024-09-23", "2024-11-12", "2025-01-01")
) -> pd.DataFrame:
    """A small contract-shaped feature table: n active clients at each cutoff."""
    rng = np.random.default_rng(4)
    frames = []
    for cut in cutoffs:
        frame = pd.DataFrame(
            {
                "client_id": [f"c{i:07d}" for i in range(n)],
                "cutoff_at": pd.Timestamp(cut, tz="UTC"),
                "state": "active",
                "manager_id": "m1",
                "segment": "retail",
                "do_not_contact": False,
                "first_order_at": pd.Timestamp("2023-01-01", tz="UTC"),
                "last_order_at": pd.Timestamp("2024-09-01", tz="UTC"),
                "loss_at": pd.NaT,
                "loss_manager_id": None,
                **{c: rng.random(n) * 100 for c in FEATURE_COLUMNS},
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    check_feature_table(out.columns)
    return out


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table()


def test_latest_cutoff_by_default_or_the_one_asked(table: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    table.to_parquet(path, index=False)
    latest = read_feature_table(path)
    assert len(latest) == 60
    assert (pd.to_datetime(latest["cutoff_at"], utc=True) == pd.Timestamp("2025-01-01", tz="UTC")).all()
    earlier = read_feature_table(path, dt.date(2024, 11, 12))
    assert len(earlier) == 60
    snapshot = prepare_snapshot(table, PARAMS, cutoff=dt.date(2024, 11, 12))
    assert snapshot.cutoff_at == pd.Timestamp("2024-11-12", tz="UTC")
    assert snapshot.n_clients == 60
    assert snapshot.row_of["c0000007"] == 7


def test_missing_cutoff_names_the_file_and_the_cutoffs(table: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    table.to_parquet(path, index=False)
    with pytest.raises(ContractError, match=r"features\.parquet.*no rows at cutoff 2020-01-01.*2025-01-01"):
        read_feature_table(path, dt.date(2020, 1, 1))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.parquet"):
        read_feature_table(tmp_path / "nope.parquet")


def test_missing_column_names_the_file_and_column(table: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    table.drop(columns=["overdue_unpaid_amount"]).to_parquet(path, index=False)
    with pytest.raises(ContractError, match=r"features\.parquet.*'overdue_unpaid_amount'"):
        read_feature_table(path)
    with pytest.raises(ContractError, match="'loss_manager_id'"):
        prepare_snapshot(table.drop(columns=["loss_manager_id"]), PARAMS)


def test_text_in_a_feature_column_is_named(table: pd.DataFrame) -> None:
    bad = table.assign(recency_days=table["recency_days"].astype(str))
    with pytest.raises(ContractError, match=r"'recency_days'.*not numeric"):
        prepare_snapshot(bad, PARAMS)


def test_duplicate_client_at_the_cutoff_is_named(table: pd.DataFrame) -> None:
    latest = table.loc[table["cutoff_at"] == table["cutoff_at"].max()]
    with pytest.raises(ContractError, match=r"client_id 'c0000003' appears twice"):
        prepare_snapshot(pd.concat([latest, latest.iloc[[3]]]), PARAMS)
