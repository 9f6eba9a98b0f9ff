"""The features stage: cutoff resolution, outputs, summary and errors at the boundary."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from _features_frames import random_frames, write_clean

from features.config import CutoffError, CutoffSchedule, FeatureParams, resolve_cutoff_schedule
from features.contract import (
    FEATURE_COLUMNS,
    FEATURE_INFO_COLUMNS,
    FEATURE_KEYS,
    LABEL_COLUMNS,
    ContractError,
)
from pipeline.build_features import resolve_cutoffs, run_features

EXPORT = dt.date(2025, 1, 1)


def test_default_cutoffs_add_the_scoring_cutoff() -> None:
    params = FeatureParams(
        cutoffs=CutoffSchedule(start=dt.date(2024, 1, 1), end=dt.date(2024, 3, 1), every_days=30)
    )
    # counted back from end: 2024-03-01, 2024-01-31, 2024-01-01 (the end is always a cutoff)
    assert resolve_cutoffs(params, EXPORT).days == [
        dt.date(2024, 1, 1),
        dt.date(2024, 1, 31),
        dt.date(2024, 3, 1),
        EXPORT,
    ]
    explicit = resolve_cutoffs(params, EXPORT, [dt.date(2024, 6, 1)])
    assert explicit.days == [dt.date(2024, 6, 1)]  # explicit cutoffs only: no scoring cutoff
    assert explicit.schedule is None and explicit.to_json()["explicit"] is True
    scoring = FeatureParams(cutoffs=[dt.date(2024, 1, 1)], scoring_cutoff=dt.date(2024, 12, 1))
    assert resolve_cutoffs(scoring, EXPORT).days == [dt.date(2024, 1, 1), dt.date(2024, 12, 1)]


def test_schedule_counts_back_from_its_end() -> None:
    schedule = CutoffSchedule(start=dt.date(2024, 1, 1), end=dt.date(2024, 3, 10), every_days=30)
    resolved = resolve_cutoff_schedule(schedule, export_date=EXPORT, horizon_days=100, first_order=None)
    # 2024-01-01 itself is not a step back from 2024-03-10: the first cutoff is the first one after it
    assert resolved.dates == (dt.date(2024, 1, 10), dt.date(2024, 2, 9), dt.date(2024, 3, 10))
    assert (resolved.start_rule, resolved.end_rule) == ("features.cutoffs.start", "features.cutoffs.end")


def test_null_end_is_the_last_fully_labelled_cutoff_and_null_start_the_first_order() -> None:
    schedule = CutoffSchedule(every_days=14)
    first = dt.date(2024, 3, 5)
    plan = resolve_cutoffs(FeatureParams(cutoffs=schedule), EXPORT, first_order=first)
    assert plan.schedule is not None
    end = EXPORT - dt.timedelta(days=100)  # 2024-09-23: its label window ends on the export date
    assert plan.schedule.end == end == plan.schedule.dates[-1]
    assert plan.schedule.start == first + dt.timedelta(days=14)
    assert plan.schedule.dates[0] >= plan.schedule.start > plan.schedule.dates[0] - dt.timedelta(days=14)
    assert all((b - a).days == 14 for a, b in zip(plan.schedule.dates, plan.schedule.dates[1:], strict=False))
    assert plan.days == [*plan.schedule.dates, EXPORT]
    written = plan.to_json()
    assert (
        written["every_days"] == 14
        and written["end"] == "2024-09-23"
        and written["scoring_cutoff"] == "2025-01-01"
    )
    assert written["end_rule"] == "ingest.export_date 2025-01-01 - horizon_days 100"
    assert "first completed order 2024-03-05" in written["start_rule"]
    # a pinned test cutoff T is hit exactly
    pinned = FeatureParams(cutoffs=CutoffSchedule(every_days=14, end=dt.date(2024, 8, 1)))
    assert resolve_cutoffs(pinned, EXPORT, first_order=first).days[-2] == dt.date(2024, 8, 1)


@pytest.mark.parametrize(
    ("schedule", "first", "message"),
    [
        (
            {"every_days": 14, "end": "2025-02-01"},
            dt.date(2024, 1, 1),
            r"end 2025-02-01 is after the export date",
        ),
        (
            {"every_days": 14},
            None,
            r"start: null counts from the first completed order, and the data has none",
        ),
        (
            {"every_days": 14},
            dt.date(2024, 9, 20),
            r"no cutoff: end 2024-09-23 .* is before start 2024-10-04",
        ),
        (
            {"every_days": 14, "start": "2024-03-01", "end": "2024-02-01"},
            None,
            r"end 2024-02-01 is before start",
        ),
    ],
)
def test_schedule_errors_name_the_dates(
    schedule: dict[str, object], first: dt.date | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_cutoffs(FeatureParams.model_validate({"cutoffs": schedule}), EXPORT, first_order=first)


def test_cutoff_after_export_is_an_error() -> None:
    with pytest.raises(CutoffError, match=r"2025-02-01 after the export date 2025-01-01"):
        resolve_cutoffs(FeatureParams(cutoffs=[dt.date(2025, 2, 1)]), EXPORT)


def test_stage_resolves_the_schedule_from_the_clean_orders(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    frames = random_frames(150, seed=6, start="2023-06-01")
    write_clean(frames, clean)
    params = FeatureParams(cutoffs=CutoffSchedule(every_days=60))
    summary = run_features(clean, tmp_path / "out", None, params, export_date=EXPORT)
    done = frames["orders"][frames["orders"].status == "completed"]
    first = done.ordered_at.min().date()
    schedule = summary["cutoff_schedule"]
    assert schedule["start"] == (first + dt.timedelta(days=60)).isoformat()
    assert schedule["end"] == "2024-09-23" and schedule["dates"][-1] == "2024-09-23"
    built = [c["cutoff_at"][:10] for c in summary["cutoffs"]]
    assert built == [*schedule["dates"], "2025-01-01"]
    for entry in summary["cutoffs"]:
        rhythm = entry["rhythm"]
        assert rhythm["method"] in ("fit", "fallback")
        for key in (
            "rate_prior_orders",
            "rate_prior_days",
            "dormancy_hazard_per_day",
            "onboarding_hazard_per_day",
        ):
            assert rhythm[key] > 0
    assert summary["cutoffs"][-1]["rhythm"]["method"] == "fit"


def test_cli_reports_a_bad_schedule_without_a_traceback(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from pipeline.cli import app

    clean = tmp_path / "clean"
    clean.mkdir()
    write_clean(random_frames(20, seed=3), clean)
    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params["features"]["cutoffs"] = {"every_days": 14, "end": "2026-01-01"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(
        app,
        [
            "features",
            "--clean",
            str(clean),
            "--out",
            str(tmp_path / "out"),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
    )
    assert result.exit_code == 1
    assert "features.cutoffs.end 2026-01-01 is after the export date 2025-01-01" in result.output
    assert "Traceback" not in result.output


def test_windows_other_than_the_contract_are_refused(tmp_path: Path) -> None:
    write_clean(random_frames(20, seed=3), tmp_path)
    params = FeatureParams(cutoffs=[dt.date(2024, 1, 1)], windows_days=[7, 30, 90, 365])
    with pytest.raises(ContractError, match=r"features.windows_days must be \[30, 90, 180, 365\]"):
        run_features(tmp_path, tmp_path / "out", [dt.date(2024, 1, 1)], params, export_date=EXPORT)


def test_stage_writes_table_and_summary(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    frames = random_frames(150, seed=5)
    del frames["contacts"]  # contacts are optional
    write_clean(frames, clean)
    cutoffs = [dt.date(2024, 1, 1), dt.date(2024, 6, 1), EXPORT]
    out = tmp_path / "features"
    summary = run_features(clean, out, cutoffs, FeatureParams(cutoffs=cutoffs), export_date=EXPORT)

    arrow = pq.read_table(out / "features.parquet")
    types = {f.name: str(f.type) for f in arrow.schema}
    assert types["cutoff_at"] == "timestamp[us, tz=UTC]" and types["state"] in ("string", "large_string")
    assert {types[c] for c in FEATURE_COLUMNS} == {"int64", "int8", "double"}
    assert types["complaint_severity_weighted_365d"] == "int64" and types["is_new"] == "int8"
    assert types["churn_label"] == types["winback_label"] == "int8"
    table = arrow.to_pandas()
    assert list(table.columns) == [*FEATURE_KEYS, *FEATURE_INFO_COLUMNS, *FEATURE_COLUMNS, *LABEL_COLUMNS]
    assert not table.duplicated(["client_id", "cutoff_at"]).any()
    keys = list(zip(table.cutoff_at, table.client_id, strict=True))
    assert keys == sorted(keys)
    at_export = table[table.cutoff_at == pd.Timestamp(EXPORT, tz="UTC")]
    assert at_export.churn_label.isna().all() and at_export.winback_label.isna().all()
    assert sorted(p.name for p in out.iterdir()) == ["features.parquet", "features_summary.json"]

    written = json.loads((out / "features_summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["rows"] == len(table)
    per_cutoff = {c["cutoff_at"][:10]: c for c in written["cutoffs"]}
    assert sum(per_cutoff["2024-01-01"]["states"].values()) == per_cutoff["2024-01-01"]["rows"]
    first = table[table.cutoff_at == pd.Timestamp("2024-01-01", tz="UTC")]
    churn = per_cutoff["2024-01-01"]["churn_label"]
    assert churn["labelled"] == first.churn_label.notna().sum()
    assert churn["base_rate"] == pytest.approx(first.churn_label.mean())
    assert per_cutoff[EXPORT.isoformat()]["churn_label"] == {"labelled": 0, "base_rate": None}


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    frames = random_frames(10, seed=1)
    write_clean(frames, tmp_path)
    table = pq.read_table(tmp_path / "orders.parquet").drop(["amount"])
    pq.write_table(table, tmp_path / "orders.parquet")
    with pytest.raises(
        ContractError, match=r"table 'orders' in .*orders.parquet: missing required column\(s\) 'amount'"
    ):
        run_features(
            tmp_path,
            tmp_path / "out",
            [dt.date(2024, 1, 1)],
            FeatureParams(cutoffs=[dt.date(2024, 1, 1)]),
            export_date=EXPORT,
        )
    assert not (tmp_path / "out" / "features.parquet").exists()


def test_missing_table_is_named(tmp_path: Path) -> None:
    write_clean(random_frames(10, seed=1), tmp_path)
    (tmp_path / "complaints.parquet").unlink()
    with pytest.raises(ContractError, match=r"table 'complaints': clean file not found"):
        run_features(
            tmp_path,
            tmp_path / "out",
            [dt.date(2024, 1, 1)],
            FeatureParams(cutoffs=[dt.date(2024, 1, 1)]),
            export_date=EXPORT,
        )


def test_batches_of_cutoffs_give_the_same_table(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    write_clean(random_frames(60, seed=8), clean)
    cutoffs = [dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 6, 1)]
    params = FeatureParams(cutoffs=cutoffs)
    run_features(clean, tmp_path / "one", cutoffs, params, export_date=EXPORT)
    run_features(clean, tmp_path / "three", cutoffs, params, export_date=EXPORT, max_rows_per_query=60)
    one = pq.read_table(tmp_path / "one" / "features.parquet").to_pandas()
    three = pq.read_table(tmp_path / "three" / "features.parquet").to_pandas()
    assert one.cutoff_at.nunique() == 3
    pd.testing.assert_frame_equal(one, three)


def test_batch_cutoffs_splits_by_client_rows() -> None:
    from pipeline.build_features import batch_cutoffs

    days = [dt.date(2024, m, 1) for m in range(1, 8)]
    assert batch_cutoffs(days, 1_000_000, 2_000_000) == [days[0:2], days[2:4], days[4:6], days[6:7]]
    assert batch_cutoffs(days, 10, 2_000_000) == [days]
    assert batch_cutoffs(days, 5_000_000, 2_000_000) == [[d] for d in days]
