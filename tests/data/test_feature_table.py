"""`comeback features` on a generated and ingested sample: the table honours its contract."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from features.config import step_for_history
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
    horizon = pd.Timedelta(days=features["horizon_days"])
    got = sorted(table.cutoff_at.unique())
    resolved = json.loads((out / "features_summary.json").read_text())["cutoff_schedule"]
    # every_days null: a week per year of history (features.config.step_for_history)
    step = schedule["every_days"] or step_for_history(
        dt.date.fromisoformat(params["generate"]["start"]),  # type: ignore[index]
        dt.date.fromisoformat(resolved["end"]),
    )
    assert resolved["every_days"] == step and (
        schedule["every_days"] or "a week per year" in resolved["every_days_rule"]
    )
    # the default end (null) is the last cutoff whose label window ends by the export
    assert schedule["end"] is None
    assert got[-2] == export - horizon == pd.Timestamp(resolved["end"], tz="UTC")
    assert got[-1] == export
    assert [d.date().isoformat() for d in got[:-1]] == resolved["dates"]
    assert {(b - a).days for a, b in itertools.pairwise(got[:-1])} == {step}


def test_generate_wrote_the_truth_at_the_features_cutoffs(stage: tuple[Path, dict[str, object]]) -> None:
    # the generate stage resolves the same schedule before any clean table exists: the features
    # stage (which counts from the first completed order) builds the truth's dates or a tail of them
    out, _ = stage
    manifest = json.loads((out.parent / "raw" / "generate_manifest.json").read_text())
    resolved = json.loads((out / "features_summary.json").read_text())["cutoff_schedule"]
    truth = manifest["truth"]["cutoffs"]
    assert truth[-1] == resolved["end"] and truth[-len(resolved["dates"]) :] == resolved["dates"]


def test_summary_carries_the_fitted_rhythm_constants(stage: tuple[Path, dict[str, object]]) -> None:
    out, _ = stage
    summary = json.loads((out / "features_summary.json").read_text())
    late = summary["cutoffs"][-2]["rhythm"]  # the test cutoff: 400 clients, enough to fit
    assert late["method"] == "fit" and late["converged"] and late["clients"] >= 100
    assert 0 < late["dormancy_hazard_per_day"] < late["onboarding_hazard_per_day"] < 1
    assert 1 / 100 < late["rate_prior_mean_per_day"] < 1 / 10
    table = pq.read_table(out / "features.parquet", columns=["alive_probability", "order_rate_per_day"])
    values = table.to_pandas().dropna()
    assert len(values) > 0 and values.alive_probability.between(0, 1).all()


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
