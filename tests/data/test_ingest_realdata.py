"""Real UCI Online Retail through the adapter and ingest: every line and every row is accounted for.

Needs the shared data folder ($COMEBACK_SHARED_DATA or ../shared/data); skipped when absent.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import write_parquet
from pipeline.ingest_rules import ingest_export, locate_sources
from pipeline.mapping import load_mapping
from pipeline.online_retail import ONLINE_RETAIL_FILE, adapt_online_retail, shared_data_dir
from pipeline.params import load_params

REPO = Path(__file__).resolve().parents[2]
SOURCE = shared_data_dir() / ONLINE_RETAIL_FILE

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not SOURCE.is_file(), reason=f"shared data absent: {SOURCE} (set COMEBACK_SHARED_DATA)"
    ),
]


def test_online_retail_accounting_is_exact(tmp_path: Path) -> None:
    export = adapt_online_retail(SOURCE, threads=2)
    assert sum(export.lines_by_bucket.values()) == pq.ParquetFile(SOURCE).metadata.num_rows
    assert export.lines_by_bucket["product"] > 0 and export.lines_by_bucket["no_customer_id"] > 0

    raw = tmp_path / "raw"
    for name in ("clients", "orders", "complaints"):
        write_parquet(getattr(export, name), raw / f"{name}.parquet")
    mapping = load_mapping(REPO / "mappings" / "online_retail.yaml")
    # the default params.yaml with only the export's own facts (what a user sets)
    facts = export.report()["ingest"]
    assert facts == {"export_date": "2011-12-10", "timezone": "Europe/London"}
    params = load_params(REPO / "params.yaml").ingest.model_copy(
        update={"export_date": dt.date.fromisoformat(facts["export_date"]), "timezone": facts["timezone"]}
    )
    result = ingest_export(locate_sources(raw, mapping), mapping, params)

    for r in result.tables.values():
        assert r.rows_read == r.rows_kept + r.rows_quarantined
        assert r.reject_share <= params.max_reject_share
    orders = result.tables["orders"]
    assert orders.rows_read == export.orders.num_rows == sum(export.orders_by_kind.values())
    assert result.tables["clients"].rows_kept == export.clients.num_rows
    clean = orders.clean
    assert set(clean.column("status").unique().to_pylist()) <= {"completed", "returned"}
    assert pc.min(clean.column("amount")).as_py() > 0
    assert pc.max(clean.column("ordered_at")).as_py() < params.export_at
    assert pc.min(clean.column("ordered_at")).as_py() >= dt.datetime(2010, 12, 1, tzinfo=dt.UTC)
