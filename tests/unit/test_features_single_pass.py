"""Every way the stage aggregates the orders gives the same table as each cutoff built alone.

A cutoff built alone windows and aggregates its own orders. The same cutoff must come out the
same from a query over several cutoffs (each order joined to every cutoff it precedes) and from
the gap rows the stage computes once for all its cutoffs and reads back from a file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from _features_frames import mismatched_columns, random_frames, write_clean

from features.build import build_feature_table, gap_rows
from features.config import FeatureParams
from features.tables import connect, load_clean_tables

EXPORT = dt.date(2025, 1, 1)
CUTOFFS = [dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 7, 15), EXPORT]


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same rows in the same order, every non-float cell and null equal, floats to rounding.

    Float sums may add their terms in another order (as two runs of one query may), and the
    decayed counts and payment delays are anchored at the last cutoff of their query.
    """
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=1e-9)
    for col in got.columns:
        pd.testing.assert_series_equal(got[col].isna(), want[col].isna(), obj=col)
        if got[col].dtype.kind != "f":
            pd.testing.assert_series_equal(got[col], want[col], check_exact=True, obj=col)


def _concat(con: Any, exprs: list[Any]) -> pd.DataFrame:
    """The tables of ``exprs`` one after another (as the stage writes its batches)."""
    return pa.concat_tables([con.to_pyarrow(e) for e in exprs]).to_pandas()


@pytest.mark.parametrize("seed", [3, 4])
def test_several_cutoffs_and_shared_rows_equal_each_cutoff_alone(tmp_path: Path, seed: int) -> None:
    write_clean(random_frames(80, seed=seed), tmp_path)
    con = connect("duckdb", threads=1, memory_limit="512MB")
    tables = load_clean_tables(con, tmp_path)
    params = FeatureParams(cutoffs=CUTOFFS)
    alone = _concat(con, [build_feature_table(con, tables, [d], params, export_date=EXPORT) for d in CUTOFFS])
    together = _concat(con, [build_feature_table(con, tables, CUTOFFS, params, export_date=EXPORT)])
    # as the stage shares them: computed once before the last cutoff, written and read back
    gaps = gap_rows(tables, CUTOFFS[-1])
    con.to_parquet(gaps.table, tmp_path / "gap_rows.parquet")
    gaps = gaps.replace(con.read_parquet(tmp_path / "gap_rows.parquet"))
    shared = _concat(
        con, [build_feature_table(con, tables, [d], params, export_date=EXPORT, gaps=gaps) for d in CUTOFFS]
    )
    assert alone.cutoff_at.nunique() == len(CUTOFFS) and len(alone) > 100
    assert alone.state.nunique() >= 5 and alone.loss_manager_id.notna().any()
    _assert_same(together, alone)
    _assert_same(shared, alone)


def test_shared_gap_rows_must_reach_the_last_cutoff(tmp_path: Path) -> None:
    write_clean(random_frames(10, seed=2), tmp_path)
    con = connect("duckdb", threads=1, memory_limit="512MB")
    tables = load_clean_tables(con, tmp_path)
    params = FeatureParams(cutoffs=[dt.date(2024, 6, 1)])
    gaps = gap_rows(tables, dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match=r"cutoff 2024-06-01 after the gap rows \(before 2024-01-01\)"):
        build_feature_table(con, tables, [dt.date(2024, 6, 1)], params, export_date=EXPORT, gaps=gaps)


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
