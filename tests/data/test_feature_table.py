"""`comeback features` on a generated and ingested sample: the table honours its contract."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from features.contract import (
    CHURN_STATES,
    FEATURE_COLUMNS,
    FEATURE_INFO_COLUMNS,
    FEATURE_KEYS,
    LABEL_COLUMNS,
    STATES,
    WINBACK_STATES,
    check_feature_table,
)
from pipeline.cli import app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("features_stage")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generate"]["format"] = "parquet"
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    runner = CliRunner()
    steps = [
        [
            "generate",
            "--clients",
            "400",
            "--seed",
            "3",
            "--out",
            str(tmp / "raw"),
            "--params",
            str(params_path),
        ],
        ["ingest", "--raw", str(tmp / "raw"), "--out", str(tmp / "clean"), "--params", str(params_path)],
        [
            "features",
            "--clean",
            str(tmp / "clean"),
            "--out",
            str(tmp / "features"),
            "--params",
            str(params_path),
        ],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"comeback {args[0]} failed: {result.output}\n{result.exception!r}"
    return tmp / "features", params


def test_table_passes_the_contract(stage: tuple[Path, dict[str, object]]) -> None:
    out, _ = stage
    table = pq.read_table(out / "features.parquet").to_pandas()
    check_feature_table(table.columns, source=str(out / "features.parquet"))
    assert list(table.columns) == [*FEATURE_KEYS, *FEATURE_INFO_COLUMNS, *FEATURE_COLUMNS, *LABEL_COLUMNS]
    assert not table.duplicated(["client_id", "cutoff_at"]).any()
    assert set(table.state) <= set(STATES)
    assert len(table) > 400


def test_cutoffs_are_params_plus_scoring_cutoff(stage: tuple[Path, dict[str, object]]) -> None:
    out, params = stage
    features = params["features"]
    assert isinstance(features, dict)
    schedule = features["cutoffs"]
    table = pq.read_table(out / "features.parquet", columns=["cutoff_at"]).to_pandas()
    export = pd.Timestamp(params["ingest"]["export_date"], tz="UTC")  # type: ignore[index]
    got = sorted(table.cutoff_at.unique())
    assert got[0] == pd.Timestamp(schedule["start"], tz="UTC")
    assert got[-1] == export


def test_no_labels_past_the_export_date(stage: tuple[Path, dict[str, object]]) -> None:
    out, params = stage
    table = pq.read_table(out / "features.parquet").to_pandas()
    horizon = dt.timedelta(days=params["features"]["horizon_days"])  # type: ignore[index]
    export = pd.Timestamp(params["ingest"]["export_date"], tz="UTC")  # type: ignore[index]
    unobserved = table[table.cutoff_at + horizon > export]
    assert len(unobserved) > 0
    assert unobserved.churn_label.isna().all() and unobserved.winback_label.isna().all()
    observed = table[table.cutoff_at + horizon <= export]
    assert observed.churn_label.notna().any() and observed.winback_label.notna().any()
    assert observed[~observed.state.isin(CHURN_STATES)].churn_label.isna().all()
    assert observed[~observed.state.isin(WINBACK_STATES)].winback_label.isna().all()
    assert set(observed.churn_label.dropna().unique()) <= {0, 1}


def test_summary_matches_table(stage: tuple[Path, dict[str, object]]) -> None:
    out, _ = stage
    table = pq.read_table(out / "features.parquet", columns=["cutoff_at", "state"]).to_pandas()
    summary = json.loads((out / "features_summary.json").read_text())
    assert summary["rows"] == len(table)
    assert len(summary["cutoffs"]) == table.cutoff_at.nunique()
