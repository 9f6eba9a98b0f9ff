"""The optional basket columns of the orders contract: produced by the Online Retail adapter,
carried by ingest, empty (not an error, not 0) when an export does not have them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import write_parquet
from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import load_mapping
from pipeline.online_retail import adapt_online_retail

REPO = Path(__file__).resolve().parents[2]
T = dt.datetime
PARAMS = IngestParams(export_date=dt.date(2011, 12, 10), timezone="Europe/London", threads=1)


def write_source(path: Path) -> Path:
    lines = [
        # InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice, CustomerID
        ("536365", "85123A", 6, T(2010, 12, 1, 8, 26), 2.55, 17850),
        ("536365", "71053", 4, T(2010, 12, 1, 8, 26), 3.39, 17850),
        ("536365", "71053", 2, T(2010, 12, 1, 8, 27), 3.39, 17850),  # same product again: one item
        ("536365", "POST", 1, T(2010, 12, 1, 8, 26), 18.0, 17850),  # postage: not a product
        ("536365", "71053", 4, T(2010, 12, 1, 8, 26), 3.39, 17850),  # exact duplicate: dropped
        ("C536379", "22556", -2, T(2011, 6, 2, 9, 41), 1.65, 17850),  # cancellation: 2 units back
        ("C536379", "22557", -3, T(2011, 6, 2, 9, 41), 1.65, 17850),
    ]
    cols = list(zip(*lines, strict=True))
    n = len(lines)
    pq.write_table(
        pa.table(
            {
                "InvoiceNo": pa.array(cols[0], pa.string()),
                "StockCode": pa.array(cols[1], pa.string()),
                "Description": pa.array(["x"] * n, pa.string()),
                "Quantity": pa.array(cols[2], pa.int64()),
                "InvoiceDate": pa.array(cols[3], pa.timestamp("us")),
                "UnitPrice": pa.array(cols[4], pa.float64()),
                "CustomerID": pa.array(cols[5], pa.int64()),
                "Country": pa.array(["United Kingdom"] * n, pa.string()),
            }
        ),
        path,
    )
    return path


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    export = adapt_online_retail(write_source(tmp_path / "or.parquet"), threads=1)
    folder = tmp_path / "raw"
    for name in ("clients", "orders", "complaints"):
        write_parquet(getattr(export, name), folder / f"{name}.parquet")
    return folder


def test_adapter_counts_distinct_products_and_units(raw: Path) -> None:
    orders = {o["InvoiceNo"]: o for o in pq.read_table(raw / "orders.parquet").to_pylist()}
    assert orders["536365"]["ItemCount"] == 2  # 85123A and 71053; postage and the duplicate left out
    assert orders["536365"]["Quantity"] == 6 + 4 + 2
    assert orders["C536379"]["ItemCount"] == 2
    assert orders["C536379"]["Quantity"] == 5  # units sent back, positive


def test_ingest_carries_the_basket_columns(raw: Path) -> None:
    mapping = load_mapping(REPO / "mappings" / "online_retail.yaml")
    result = ingest_export(locate_sources(raw, mapping), mapping, PARAMS)
    orders = {o["order_id"]: o for o in result.tables["orders"].clean.to_pylist()}
    assert (orders["536365"]["item_count"], orders["536365"]["quantity"]) == (2, 12.0)
    assert result.tables["orders"].clean.schema.field("item_count").type == pa.int64()


def test_export_without_basket_columns_ingests_them_empty(raw: Path) -> None:
    orders = pq.read_table(raw / "orders.parquet")
    pq.write_table(orders.drop_columns(["ItemCount", "Quantity"]), raw / "orders.parquet")
    mapping = load_mapping(REPO / "mappings" / "online_retail.yaml")
    result = ingest_export(locate_sources(raw, mapping), mapping, PARAMS)
    clean = result.tables["orders"].clean
    assert clean.num_rows == 2 and result.tables["orders"].rows_quarantined == 0
    assert clean.column("item_count").null_count == clean.num_rows
    assert clean.column("quantity").null_count == clean.num_rows


def test_negative_item_count_is_quarantined(raw: Path) -> None:
    orders = pq.read_table(raw / "orders.parquet")
    bad = orders.set_column(
        orders.schema.get_field_index("ItemCount"), "ItemCount", pa.array([-1, 2], pa.int64())
    )
    pq.write_table(bad, raw / "orders.parquet")
    mapping = load_mapping(REPO / "mappings" / "online_retail.yaml")
    result = ingest_export(locate_sources(raw, mapping), mapping, PARAMS)
    assert result.tables["orders"].quarantined_by_rule == {"range": 1}
