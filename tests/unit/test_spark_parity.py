"""The same feature expressions on DuckDB and on local PySpark give the same table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _features_frames import mismatched_columns, random_frames, write_clean

from features.build import build_feature_table
from features.config import FeatureParams
from features.tables import connect, load_clean_tables

pytestmark = pytest.mark.spark

CUTOFFS = [dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 9, 1), dt.date(2025, 1, 1)]
EXPORT = dt.date(2025, 1, 1)


def _build(con: Any, clean: Path) -> pd.DataFrame:
    params = FeatureParams(cutoffs=CUTOFFS)
    expr = build_feature_table(con, load_clean_tables(con, clean), CUTOFFS, params, export_date=EXPORT)
    return expr.to_pandas().sort_values(["cutoff_at", "client_id"]).reset_index(drop=True)


def test_duckdb_and_pyspark_agree(spark: Any, tmp_path: Path) -> None:
    write_clean(random_frames(300, seed=11), tmp_path)
    duck = _build(connect("duckdb", threads=1, memory_limit="512MB"), tmp_path)
    sp = _build(connect("pyspark", spark_session=spark), tmp_path)

    assert len(duck) > 300 and list(sp.columns) == list(duck.columns)
    assert list(sp.client_id) == list(duck.client_id)
    assert duck.state.nunique() >= 5 and duck.churn_label.notna().any() and duck.winback_label.notna().any()
    mismatched = mismatched_columns(duck, sp)
    assert not mismatched, f"columns differ between DuckDB and PySpark: {mismatched}"
