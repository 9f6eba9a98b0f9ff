"""The Online Retail adapter on a hand-made file with one line per quirk, then ingested with
mappings/online_retail.yaml: every line lands in one bucket and each decision holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ingest import write_parquet
from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import load_mapping
from pipeline.online_retail import adapt_online_retail

REPO = Path(__file__).resolve().parents[2]
T = dt.datetime
LINES = [
    # InvoiceNo, StockCode, Quantity, InvoiceDate, UnitPrice, CustomerID, Country
    ("536365", "85123A", 6, T(2010, 12, 1, 8, 26), 2.55, 17850, "United Kingdom"),  # product
    ("536365", "71053", 6, T(2010, 12, 1, 8, 26), 3.39, 17850, "United Kingdom"),  # product
    ("536365", "POST", 1, T(2010, 12, 1, 8, 26), 18.0, 17850, "United Kingdom"),  # postage: not in amount
    ("536365", "71053", 6, T(2010, 12, 1, 8, 26), 3.39, 17850, "United Kingdom"),  # exact duplicate
    ("C536379", "22556", -2, T(2011, 6, 2, 9, 41), 1.65, 17850, "United Kingdom"),  # cancellation (BST)
    ("536400", "22633", 3, T(2010, 12, 3, 10, 0), 2.1, None, "United Kingdom"),  # no customer
    ("A563185", "B", 1, T(2011, 8, 12, 14, 50), 11062.06, None, "United Kingdom"),  # bad debt
    ("536500", "POST", 1, T(2010, 12, 5, 12, 0), 40.0, 12347, "Iceland"),  # postage-only invoice
    ("536501", "22728", 1, T(2010, 12, 7, 12, 0), 5.0, 12347, "Iceland"),
    ("536502", "22728", 1, T(2010, 12, 8, 12, 0), 5.0, 12347, "Norway"),
]


def write_source(path: Path) -> Path:
    cols = list(zip(*LINES, strict=True))
    table = pa.table(
        {
            "InvoiceNo": pa.array(cols[0], pa.string()),
            "StockCode": pa.array(cols[1], pa.string()),
            "Description": pa.array(["x"] * len(LINES), pa.string()),
            "Quantity": pa.array(cols[2], pa.int64()),
            "InvoiceDate": pa.array(cols[3], pa.timestamp("us")),
            "UnitPrice": pa.array(cols[4], pa.float64()),
            "CustomerID": pa.array(cols[5], pa.int64()),
            "Country": pa.array(cols[6], pa.string()),
        }
    )
    pq.write_table(table, path)
    return path


def test_every_line_lands_in_one_bucket_and_invoices_become_orders(tmp_path: Path) -> None:
    export = adapt_online_retail(write_source(tmp_path / "or.parquet"), threads=1)
    assert export.lines_by_bucket == {
        "bad_debt_adjustment": 1,
        "no_customer_id": 1,
        "duplicate_line": 1,
        "non_product": 2,
        "product": 5,
    }
    assert sum(export.lines_by_bucket.values()) == len(LINES)
    orders = {o["InvoiceNo"]: o for o in export.orders.to_pylist()}
    assert sorted(orders) == ["536365", "536501", "536502", "C536379"]
    assert orders["536365"]["Amount"] == round(6 * 2.55 + 6 * 3.39, 2)  # no postage, duplicate once
    assert orders["C536379"]["Amount"] == 3.3 and orders["C536379"]["Kind"] == "cancellation"
    assert orders["536365"]["CustomerID"] == "17850"
    clients = {c["CustomerID"]: c for c in export.clients.to_pylist()}
    assert clients["12347"]["FirstInvoiceDate"] == T(2010, 12, 5, 12, 0)  # the postage-only invoice counts
    assert clients["12347"]["Country"] == "Iceland"  # most of its lines
    assert sorted(clients) == ["12347", "17850"]
    # the export ends the day after the last line (the bad-debt one), in UK local time
    assert export.export_date == dt.date(2011, 8, 13)
    assert export.report()["ingest"] == {"export_date": "2011-08-13", "timezone": "Europe/London"}


def test_adapted_export_ingests_with_the_mapping(tmp_path: Path) -> None:
    export = adapt_online_retail(write_source(tmp_path / "or.parquet"), threads=1)
    raw = tmp_path / "raw"
    for name in ("clients", "orders", "complaints"):
        write_parquet(getattr(export, name), raw / f"{name}.parquet")
    mapping = load_mapping(REPO / "mappings" / "online_retail.yaml")
    params = IngestParams(export_date=dt.date(2011, 12, 10), timezone="Europe/London", threads=1)
    result = ingest_export(locate_sources(raw, mapping), mapping, params)
    orders = {o["order_id"]: o for o in result.tables["orders"].clean.to_pylist()}
    assert orders["C536379"]["status"] == "returned"
    assert orders["536365"]["status"] == "completed"
    # naive UK time: GMT in December, BST (UTC+1) in June
    assert orders["536365"]["ordered_at"] == dt.datetime(2010, 12, 1, 8, 26, tzinfo=dt.UTC)
    assert orders["C536379"]["ordered_at"] == dt.datetime(2011, 6, 2, 8, 41, tzinfo=dt.UTC)
    assert orders["536365"]["margin"] is None and orders["536365"]["due_at"] is None
    clients = result.tables["clients"].clean.to_pylist()
    assert [(c["client_id"], c["segment"], c["manager_id"]) for c in clients] == [
        ("12347", "Iceland", None),
        ("17850", "United Kingdom", None),
    ]
    for r in result.tables.values():
        assert r.rows_read == r.rows_kept + r.rows_quarantined == r.rows_kept
