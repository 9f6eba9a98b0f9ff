"""The same feature expressions on DuckDB and on local PySpark give the same table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _features_frames import mismatched_columns, random_frames, write_clean

from features.build import build_feature_table, fit_rhythm_constants
from features.config import FeatureParams
from features.tables import connect, load_clean_tables

pytestmark = pytest.mark.spark

CUTOFFS = [dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 9, 1), dt.date(2025, 1, 1)]
EXPORT = dt.date(2025, 1, 1)
# clients whose only order falls at a given clock time on the day N days before 2024-01-01: the
# lapse tiers count whole calendar days on both backends
BOUNDARY = {
    "zz_90_0001": ("2023-10-03 00:01:00", "lapsed_90"),
    "zz_90_2359": ("2023-10-03 23:59:00", "lapsed_90"),
    "zz_89_2359": ("2023-10-04 23:59:00", "new"),  # its first order too: new, not lapsed
}


def _frames() -> dict[str, pd.DataFrame]:
    frames = random_frames(300, seed=11)
    created = pd.Timestamp("2022-01-01", tz="UTC")
    clients = pd.DataFrame(
        {"client_id": list(BOUNDARY), "created_at": created, "manager_id": "m1", "segment": "retail"}
    )
    clients["do_not_contact"] = False
    orders = pd.DataFrame(
        {
            "order_id": [f"zo{i}" for i in range(len(BOUNDARY))],
            "client_id": list(BOUNDARY),
            "ordered_at": [pd.Timestamp(at, tz="UTC") for at, _ in BOUNDARY.values()],
            "amount": 10.0,
            "margin": 1.0,
            "status": "completed",
        }
    )
    frames["clients"] = pd.concat([frames["clients"], clients], ignore_index=True)
    frames["clients"]["created_at"] = frames["clients"]["created_at"].astype("datetime64[us, UTC]")
    frames["orders"] = pd.concat([frames["orders"], orders], ignore_index=True)
    frames["orders"]["ordered_at"] = frames["orders"]["ordered_at"].astype("datetime64[us, UTC]")
    return frames


def _build(con: Any, clean: Path) -> tuple[pd.DataFrame, dict[dt.date, Any]]:
    params = FeatureParams(cutoffs=CUTOFFS)
    tables = load_clean_tables(con, clean)
    rhythm = fit_rhythm_constants(tables, CUTOFFS, params)
    expr = build_feature_table(con, tables, CUTOFFS, params, export_date=EXPORT, rhythm=rhythm)
    return expr.to_pandas().sort_values(["cutoff_at", "client_id"]).reset_index(drop=True), rhythm


def test_duckdb_and_pyspark_agree(spark: Any, tmp_path: Path) -> None:
    write_clean(_frames(), tmp_path)
    duck, duck_fit = _build(connect("duckdb", threads=1, memory_limit="512MB"), tmp_path)
    sp, sp_fit = _build(connect("pyspark", spark_session=spark), tmp_path)

    assert len(duck) > 300 and list(sp.columns) == list(duck.columns)
    assert list(sp.client_id) == list(duck.client_id)
    assert duck.state.nunique() >= 5 and duck.churn_label.notna().any() and duck.winback_label.notna().any()
    # the rhythm constants are fitted on each backend's own summary query: the same numbers
    assert sp_fit == duck_fit and {f.method for f in duck_fit.values()} == {"fit"}
    mismatched = mismatched_columns(duck, sp)
    assert not mismatched, f"columns differ between DuckDB and PySpark: {mismatched}"
    at = pd.Timestamp("2024-01-01", tz="UTC")
    for table in (duck, sp):
        rows = table[(table.cutoff_at == at) & table.client_id.isin(list(BOUNDARY))].set_index("client_id")
        assert rows.state.to_dict() == {c: state for c, (_, state) in BOUNDARY.items()}
        assert (rows.loc[["zz_90_0001", "zz_90_2359"], "loss_at"] == at).all()
