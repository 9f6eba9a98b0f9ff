"""A batch of one cutoff aggregates its orders in one pass; it must equal the bucketed build."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _features_frames import mismatched_columns, random_frames, write_clean

from features.build import bucket_orders, build_feature_table
from features.config import FeatureParams
from features.tables import connect, load_clean_tables

EXPORT = dt.date(2025, 1, 1)


@pytest.mark.parametrize(
    ("seed", "cutoff"),
    [(3, dt.date(2023, 6, 1)), (4, dt.date(2024, 1, 1)), (5, dt.date(2024, 7, 15)), (6, EXPORT)],
)
def test_one_cutoff_single_pass_equals_the_bucketed_build(tmp_path: Path, seed: int, cutoff: dt.date) -> None:
    write_clean(random_frames(80, seed=seed), tmp_path)
    con = connect("duckdb", threads=1, memory_limit="512MB")
    tables = load_clean_tables(con, tmp_path)
    params = FeatureParams(cutoffs=[cutoff])
    single = con.to_pandas(build_feature_table(con, tables, [cutoff], params, export_date=EXPORT))
    buckets = bucket_orders(tables, [cutoff], params)
    bucketed = con.to_pandas(
        build_feature_table(con, tables, [cutoff], params, export_date=EXPORT, buckets=buckets)
    )
    assert len(single) > 0
    # the same rows in the same order, every non-float cell and null equal; float sums may add
    # their terms in another order (as two runs of either build may), so they agree to rounding
    pd.testing.assert_frame_equal(single, bucketed, check_exact=False, rtol=1e-12, atol=1e-9)
    for col in single.columns:
        pd.testing.assert_series_equal(single[col].isna(), bucketed[col].isna(), obj=col)
        if single[col].dtype.kind != "f":
            pd.testing.assert_series_equal(single[col], bucketed[col], check_exact=True, obj=col)


@pytest.mark.spark
def test_one_cutoff_single_pass_duckdb_and_pyspark_agree(spark: Any, tmp_path: Path) -> None:
    write_clean(random_frames(300, seed=12), tmp_path)
    cutoff = [dt.date(2024, 7, 1)]
    params = FeatureParams(cutoffs=cutoff)
    tables: dict[str, pd.DataFrame] = {}
    for name, con in (
        ("duckdb", connect("duckdb", threads=1, memory_limit="512MB")),
        ("pyspark", connect("pyspark", spark_session=spark)),
    ):
        expr = build_feature_table(con, load_clean_tables(con, tmp_path), cutoff, params, export_date=EXPORT)
        tables[name] = expr.to_pandas().sort_values("client_id").reset_index(drop=True)
    duck, sp = tables["duckdb"], tables["pyspark"]
    assert len(duck) > 200 and list(sp.columns) == list(duck.columns)
    assert list(sp.client_id) == list(duck.client_id)
    mismatched = mismatched_columns(duck, sp)
    assert not mismatched, f"columns differ between DuckDB and PySpark: {mismatched}"
