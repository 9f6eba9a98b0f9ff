"""The Olist adapter on hand-made tables with one row per rule, then ingested with mappings/olist.yaml:
every source row lands in one bucket, and each rule gives the answer worked out by hand below."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import load_mapping
from pipeline.olist import SOURCE_FILES, adapt_olist, late_severity_sql

REPO = Path(__file__).resolve().parents[2]
T = dt.datetime
UTC = dt.UTC

# customer_id, customer_unique_id, customer_state. c2 comes first in the file but P1's first order
# is c1's, so P1's segment is SP.
CUSTOMERS = [
    ("c2", "P1", "RJ"),
    ("c1", "P1", "SP"),
    ("c3", "P2", "MG"),
    ("c4", "P3", "SP"),
    ("c5", "P4", "BA"),
    ("c6", "P5", "PR"),
    ("c7", "P5", "PR"),
    ("c14", "P5", "PR"),
    ("c8", "P6", "RS"),
    ("c9", "P6", "RS"),
    ("c10", "P7", "SC"),
    ("c13", "P8", "GO"),
    ("c11", "P9", "SP"),  # no order: no_order
    ("c1", "P1", "SP"),  # a second row of c1: duplicate_customer_id
    ("c12", None, "SP"),  # no person: no_unique_id (its order o11 has no_customer)
]
# order_id, customer_id, status, purchase, approved, carrier, delivered, estimated (a date): times in
# 2018 as "MM-DD HH:MM", naive São Paulo time like Olist's
ORDERS = [
    # 1 day late (severity 1); first in the file but P1's second order
    ("o2", "c2", "delivered", "02-01 09:00", "02-01 09:10", "02-03 09:00", "02-21 08:00", "02-20"),
    # on time (delivered late in the day of the estimate), then a duplicate_order
    ("o1", "c1", "delivered", "01-05 10:00", "01-05 10:15", "01-08 12:00", "01-15 18:00", "01-15"),
    ("o1", "c1", "delivered", "01-05 10:00", "01-05 10:15", "01-08 12:00", "01-15 18:00", "01-15"),
    # cancelled after approval, no items: set aside as an order, its complaint kept
    ("o3", "c3", "canceled", "03-01 12:00", "03-01 12:30", None, None, "03-20"),
    ("o4", "c4", "unavailable", "03-05 08:00", "03-06 09:00", None, None, "03-25"),
    ("o5", "c5", "canceled", "03-10 20:00", None, None, None, "03-30"),
    # estimate passed: open, 11 days late on 06-10 (the day before the export)
    ("o6", "c6", "shipped", "04-01 10:00", "04-01 11:00", "04-03 10:00", None, "05-30"),
    # the last event of the data (approval 06-10 09:05), so the export date is 2018-06-11;
    # its estimate 06-10 has not passed at the export
    ("o7", "c7", "shipped", "06-10 09:00", "06-10 09:05", None, None, "06-10"),
    # 40 days late: severity 5
    ("o8", "c8", "delivered", "01-10 10:00", "01-10 10:30", "01-12 10:00", "03-01 10:00", "01-20"),
    ("o9", "c9", "created", "02-01 11:00", None, None, None, "02-20"),
    ("o10", "c10", "delivered", "04-10 10:00", "04-10 11:00", "04-12 10:00", None, "04-30"),
    ("o11", "c12", "delivered", "04-11 10:00", "04-11 11:00", "04-12 10:00", "04-20 10:00", "04-30"),
    ("o12", "c99", "delivered", "04-12 10:00", "04-12 11:00", "04-13 10:00", "04-21 10:00", "04-30"),
    # items worth 0.00 (zero_amount); 10 days late: a severity-3 complaint of a client with no order
    ("o13", "c13", "delivered", "02-10 10:00", "02-10 11:00", "02-12 10:00", "03-02 10:00", "02-20"),
    # estimate 06-09 passed at 06-10 00:00: 1 day late on 06-10
    ("o14", "c14", "shipped", "05-20 10:00", "05-20 11:00", "05-22 10:00", None, "06-09"),
]
# order_id, order_item_id, product_id, price, freight_value
ITEMS = [
    ("o1", 1, "pA", 10.0, 5.0),
    ("o1", 2, "pA", 10.0, 5.0),
    ("o2", 1, "pB", 15.5, 2.5),
    ("o2", 2, "pC", 4.5, 2.5),
    ("o2", 1, "pB", 15.5, 2.5),  # duplicate_item
    ("o4", 1, "pD", 30.0, 0.0),
    ("o5", 1, "pE", 12.34, 3.0),
    ("o6", 1, "pF", 50.0, 0.0),
    ("o7", 1, "pG", 8.0, 1.0),
    ("o8", 1, "pH", 99.99, 10.0),
    ("o10", 1, "pI", 5.0, 1.0),
    ("o11", 1, "pL", 3.0, 0.0),  # order_set_aside (no_customer)
    ("o13", 1, "pJ", 0.0, 0.0),  # order_set_aside (zero_amount)
    ("o14", 1, "pK", 7.0, 1.0),
    ("oX", 1, "pZ", 1.0, 1.0),  # unknown_order
]
# order_id, payment_sequential, payment_type, payment_installments, payment_value
PAYMENTS = [
    ("o1", 1, "credit_card", 1, 20.0),
    ("o1", 2, "voucher", 1, 10.0),  # o1: 20 + 10 freight = 30: matches
    ("o2", 1, "boleto", 1, 25.0),  # 20 + 5: matches
    ("o3", 1, "credit_card", 1, 40.0),  # order_set_aside (no_items)
    ("o4", 1, "credit_card", 3, 30.0),  # matches
    ("o6", 1, "credit_card", 10, 55.0),  # 50 + 0: does not match (card interest)
    ("oX", 1, "boleto", 1, 2.0),  # unknown_order
]


def _at(text: object) -> dt.datetime | None:
    """A naive datetime of 2018 from "MM-DD HH:MM" or "MM-DD"."""
    return None if text is None else dt.datetime.fromisoformat(f"2018-{text}")


def _table(rows: list[tuple[object, ...]], schema: list[tuple[str, pa.DataType]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            name: pa.array([_at(v) for v in cols[i]] if kind == pa.timestamp("us") else cols[i], kind)
            for i, (name, kind) in enumerate(schema)
        }
    )


def write_sources(folder: Path, *, drop: tuple[str, str] | None = None) -> Path:
    """The hand-made Olist tables as Parquet in ``folder``; ``drop`` = (table, column) to leave out."""
    ts = pa.timestamp("us")
    tables = {
        "customers": _table(
            CUSTOMERS,
            [
                ("customer_id", pa.string()),
                ("customer_unique_id", pa.string()),
                ("customer_state", pa.string()),
            ],
        ),
        "orders": _table(
            ORDERS,
            [
                ("order_id", pa.string()),
                ("customer_id", pa.string()),
                ("order_status", pa.string()),
                ("order_purchase_timestamp", ts),
                ("order_approved_at", ts),
                ("order_delivered_carrier_date", ts),
                ("order_delivered_customer_date", ts),
                ("order_estimated_delivery_date", ts),
            ],
        ),
        "order_items": _table(
            ITEMS,
            [
                ("order_id", pa.string()),
                ("order_item_id", pa.int64()),
                ("product_id", pa.string()),
                ("price", pa.float64()),
                ("freight_value", pa.float64()),
            ],
        ),
        "order_payments": _table(
            PAYMENTS,
            [
                ("order_id", pa.string()),
                ("payment_sequential", pa.int64()),
                ("payment_type", pa.string()),
                ("payment_installments", pa.int64()),
                ("payment_value", pa.float64()),
            ],
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if drop and drop[0] == name:
            table = table.drop_columns([drop[1]])
        pq.write_table(table, folder / SOURCE_FILES[name])
    return folder


def test_every_source_row_lands_in_one_bucket(tmp_path: Path) -> None:
    source = write_sources(tmp_path / "olist")
    export = adapt_olist(source, threads=1)
    assert export.rows_by_bucket == {
        "orders": {"duplicate_order": 1, "no_customer": 2, "no_items": 2, "zero_amount": 1, "kept": 9},
        "customers": {
            "duplicate_customer_id": 1,
            "no_unique_id": 1,
            "no_order": 1,
            "same_person": 4,
            "kept": 8,
        },
        "order_items": {"unknown_order": 1, "duplicate_item": 1, "order_set_aside": 2, "kept": 11},
        "order_payments": {"unknown_order": 1, "order_set_aside": 1, "kept": 5},
    }
    report = export.report()
    for name, file in SOURCE_FILES.items():
        entry = report["tables"][name]
        assert entry["rows_read"] == pq.ParquetFile(source / file).metadata.num_rows
        assert entry["rows_read"] == entry["rows_kept"] + entry["rows_set_aside"]
        assert entry["rows_set_aside"] == sum(entry["set_aside_by_rule"].values())
    # every order with a client (15 - 1 duplicate - 2 without customer) has one complaint rule
    assert export.orders_by_complaint_rule == {
        "canceled_unpaid": 1,
        "canceled": 1,
        "unavailable": 1,
        "late_delivery": 3,
        "not_delivered": 2,
        "no_estimate": 0,
        "on_time": 1,
        "never_approved": 1,
        "delivered_without_date": 1,
        "other_status": 0,
        "not_due_yet": 1,
    }
    assert report["clients"] == 8 and report["clients_without_kept_order"] == 2  # P2, P8
    assert report["complaints"] == 8
    assert report["payments_match_items_and_freight"] == {"orders": 3, "of_kept_orders": 9}
    assert export.last_event_at == T(2018, 6, 10, 9, 5) and export.export_date == dt.date(2018, 6, 11)


def test_orders_clients_and_complaints_follow_the_rules(tmp_path: Path) -> None:
    export = adapt_olist(write_sources(tmp_path / "olist"), threads=1)
    orders = {o["order_id"]: o for o in export.orders.to_pylist()}
    assert sorted(orders) == ["o1", "o10", "o14", "o2", "o4", "o5", "o6", "o7", "o8"]
    assert orders["o1"]["items_price"] == 20.0  # price only, freight left out
    assert (orders["o1"]["distinct_products"], orders["o1"]["items"]) == (1, 2.0)
    assert orders["o2"]["items_price"] == 20.0 and orders["o2"]["distinct_products"] == 2  # duplicate once
    assert orders["o2"]["customer_unique_id"] == "P1" and orders["o5"]["order_status"] == "canceled"

    clients = {c["customer_unique_id"]: c for c in export.clients.to_pylist()}
    assert sorted(clients) == [f"P{i}" for i in range(1, 9)]
    assert clients["P1"]["customer_state"] == "SP"  # the first order's address, not the first file row
    assert clients["P1"]["first_purchase_timestamp"] == T(2018, 1, 5, 10)
    assert clients["P6"]["first_purchase_timestamp"] == T(2018, 1, 10, 10)
    assert clients["P2"]["first_purchase_timestamp"] == T(2018, 3, 1, 12)  # its only order was set aside

    complaints = {c["order_id"]: c for c in export.complaints.to_pylist()}
    got = {
        k: (c["reason"], c["severity"], c["complaint_created_at"], c["resolved_at"])
        for k, c in complaints.items()
    }
    assert got == {
        "o2": ("late_delivery", 1, T(2018, 2, 21), T(2018, 2, 21, 8)),
        "o3": ("canceled", 3, T(2018, 3, 1, 12, 30), T(2018, 3, 1, 12, 30)),
        "o4": ("unavailable", 3, T(2018, 3, 6, 9), T(2018, 3, 6, 9)),
        "o5": ("canceled_unpaid", 1, T(2018, 3, 10, 20), T(2018, 3, 10, 20)),
        "o6": ("not_delivered", 3, T(2018, 5, 31), None),
        "o8": ("late_delivery", 5, T(2018, 1, 21), T(2018, 3, 1, 10)),
        "o13": ("late_delivery", 3, T(2018, 2, 21), T(2018, 3, 2, 10)),
        "o14": ("not_delivered", 1, T(2018, 6, 10), None),
    }
    assert {c["customer_unique_id"] for c in complaints.values()} <= set(clients)
    assert not any(c["human_factor"] for c in complaints.values())


@pytest.mark.parametrize(
    ("days", "severity"),
    [(1, 1), (2, 1), (3, 2), (7, 2), (8, 3), (14, 3), (15, 4), (30, 4), (31, 5), (180, 5)],
)
def test_lateness_grades_into_severity(days: int, severity: int) -> None:
    got = duckdb.connect().execute(f"SELECT {late_severity_sql(str(days))}").fetchone()
    assert got == (severity,)


def test_adapted_export_ingests_with_the_mapping(tmp_path: Path) -> None:
    export = adapt_olist(write_sources(tmp_path / "olist"), threads=1)
    raw = export.write(tmp_path / "raw")
    mapping = load_mapping(REPO / "mappings" / "olist.yaml")
    params = IngestParams(export_date=export.export_date, timezone="America/Sao_Paulo", threads=1)
    result = ingest_export(locate_sources(raw, mapping), mapping, params)
    for r in result.tables.values():
        assert r.rows_read == r.rows_kept + r.rows_quarantined == r.rows_kept
    orders = {o["order_id"]: o for o in result.tables["orders"].clean.to_pylist()}
    assert {k: o["status"] for k, o in orders.items()} == {
        "o1": "completed",
        "o2": "completed",
        "o4": "cancelled",
        "o5": "cancelled",
        "o6": "completed",
        "o7": "completed",
        "o8": "completed",
        "o10": "completed",
        "o14": "completed",
    }
    # naive São Paulo time: UTC-2 in January 2018 (summer time), UTC-3 in June
    assert orders["o1"]["ordered_at"] == T(2018, 1, 5, 12, tzinfo=UTC)
    assert orders["o7"]["ordered_at"] == T(2018, 6, 10, 12, tzinfo=UTC)
    assert (orders["o1"]["amount"], orders["o1"]["item_count"], orders["o1"]["quantity"]) == (20.0, 1, 2.0)
    assert (
        orders["o1"]["due_at"] is None and orders["o1"]["paid_at"] is None and orders["o1"]["margin"] is None
    )
    clients = {c["client_id"]: c for c in result.tables["clients"].clean.to_pylist()}
    assert (clients["P1"]["segment"], clients["P1"]["manager_id"]) == ("SP", None)
    assert clients["P1"]["created_at"] == T(2018, 1, 5, 12, tzinfo=UTC)
    complaints = {c["complaint_id"]: c for c in result.tables["complaints"].clean.to_pylist()}
    assert {k: c["category"] for k, c in complaints.items()} == {
        "o2": "delivery",
        "o3": "service",
        "o4": "product",
        "o5": "billing",
        "o6": "delivery",
        "o8": "delivery",
        "o13": "delivery",
        "o14": "delivery",
    }
    assert (
        complaints["o6"]["created_at"] == T(2018, 5, 31, 3, tzinfo=UTC)
        and complaints["o6"]["resolved_at"] is None
    )


def test_command_writes_the_export_and_the_report(tmp_path: Path) -> None:
    from pipeline.cli import app

    out = tmp_path / "raw"
    result = CliRunner().invoke(
        app, ["adapt-olist", "--source", str(write_sources(tmp_path / "olist")), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert names == {"adapter_report.json", "clients.parquet", "complaints.parquet", "orders.parquet"}
    report = json.loads((out / "adapter_report.json").read_text())
    assert report["export_date"] == "2018-06-11"
    assert report["tables"]["orders"]["rows_read"] == 15 and report["tables"]["orders"]["rows_kept"] == 9
    assert pq.read_table(out / "complaints.parquet").num_rows == report["complaints"] == 8
    assert "no_items 2" in result.output


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (("order_items", "price"), r"olist_order_items_dataset\.parquet: missing column\(s\) \['price'\]"),
        (("customers", "customer_unique_id"), r"olist_customers_dataset\.parquet: missing column"),
    ],
)
def test_bad_source_fails_naming_file_and_column(tmp_path: Path, drop: tuple[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adapt_olist(write_sources(tmp_path / "olist", drop=drop), threads=1)


def test_command_reports_a_missing_file_without_traceback(tmp_path: Path) -> None:
    from pipeline.cli import app

    source = write_sources(tmp_path / "olist")
    (source / SOURCE_FILES["order_payments"]).unlink()
    result = CliRunner().invoke(app, ["adapt-olist", "--source", str(source), "--out", str(tmp_path / "raw")])
    assert result.exit_code == 1
    assert "adapt-olist failed" in result.output and "olist_order_payments_dataset.parquet" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
