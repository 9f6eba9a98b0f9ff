"""The Olist adapter on hand-made tables with one row per rule, then ingested with mappings/olist.yaml:
every source row lands in one bucket, and each rule gives the answer worked out by hand below."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.config import FeatureParams
from features.contract import FEATURE_COLUMNS, FEATURE_INFO_COLUMNS
from pipeline.build_features import run_features
from pipeline.ingest import write_parquet
from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import load_mapping
from pipeline.olist import SOURCE_FILES, adapt_olist

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
    ("c15", "P5", "PR"),
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
    # cancelled after approval, no items: set aside as an order, its complaint kept; delivered after
    # the promised date (03-21 00:00) and still cancelled: the last event (03-25) dates the complaint
    ("o3", "c3", "canceled", "03-01 12:00", "03-01 12:30", "03-05 10:00", "03-25 10:00", "03-20"),
    # cancellations dated when their promised date passed, after their last event
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
    # cancelled, its promised date after the export: not dated before it, no complaint; no items
    ("o15", "c15", "canceled", "06-05 10:00", "06-05 10:10", None, None, "06-25"),
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


def write_sources(
    folder: Path,
    *,
    drop: tuple[str, str] | None = None,
    extra: dict[str, list[tuple[object, ...]]] | None = None,
) -> Path:
    """The hand-made Olist tables as Parquet in ``folder``; ``drop`` = (table, column) to leave out;
    ``extra`` = rows to append, by table name."""
    more = extra or {}
    ts = pa.timestamp("us")
    tables = {
        "customers": _table(
            [*CUSTOMERS, *more.get("customers", [])],
            [
                ("customer_id", pa.string()),
                ("customer_unique_id", pa.string()),
                ("customer_state", pa.string()),
            ],
        ),
        "orders": _table(
            [*ORDERS, *more.get("orders", [])],
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
            [*ITEMS, *more.get("order_items", [])],
            [
                ("order_id", pa.string()),
                ("order_item_id", pa.int64()),
                ("product_id", pa.string()),
                ("price", pa.float64()),
                ("freight_value", pa.float64()),
            ],
        ),
        "order_payments": _table(
            [*PAYMENTS, *more.get("order_payments", [])],
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
        "orders": {"duplicate_order": 1, "no_customer": 2, "no_items": 3, "zero_amount": 1, "kept": 9},
        "customers": {
            "duplicate_customer_id": 1,
            "no_unique_id": 1,
            "no_order": 1,
            "same_person": 5,
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
    # every order with a client (16 - 1 duplicate - 2 without customer) has one complaint rule
    assert export.orders_by_complaint_rule == {
        "canceled_unpaid": 1,
        "canceled": 1,
        "unavailable": 1,
        "late_delivery": 3,
        "not_delivered": 2,
        "no_estimate": 0,
        "canceled_not_due": 1,
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
    # a parcel late when its promised date passed: severity 2 whatever its final delay (1 day for o2,
    # 40 for o8, 10 for o13, still on its way for o6 and o14); a cancellation at the later of the
    # promised date passing and the last event
    assert got == {
        "o2": ("late_delivery", 2, T(2018, 2, 21), T(2018, 2, 21, 8)),
        "o3": ("canceled", 3, T(2018, 3, 25, 10), T(2018, 3, 25, 10)),
        "o4": ("unavailable", 3, T(2018, 3, 26), T(2018, 3, 26)),
        "o5": ("canceled_unpaid", 1, T(2018, 3, 31), T(2018, 3, 31)),
        "o6": ("not_delivered", 2, T(2018, 5, 31), None),
        "o8": ("late_delivery", 2, T(2018, 1, 21), T(2018, 3, 1, 10)),
        "o13": ("late_delivery", 2, T(2018, 2, 21), T(2018, 3, 2, 10)),
        "o14": ("not_delivered", 2, T(2018, 6, 10), None),
    }
    assert {c["customer_unique_id"] for c in complaints.values()} <= set(clients)
    assert not any(c["human_factor"] for c in complaints.values())


# Twins of P6 and its order o8 (promised for 01-20, delivered 03-01, 40 days late), the same up to
# 02-01 (11 days late): o8b arrives on 02-05, o8c never (still shipped at the export).
TWINS = {
    "customers": [("c8b", "P6b", "RS"), ("c8c", "P6c", "RS")],
    "orders": [
        ("o8b", "c8b", "delivered", "01-10 10:00", "01-10 10:30", "01-12 10:00", "02-05 10:00", "01-20"),
        ("o8c", "c8c", "shipped", "01-10 10:00", "01-10 10:30", "01-12 10:00", None, "01-20"),
    ],
    "order_items": [("o8b", 1, "pH", 99.99, 10.0), ("o8c", 1, "pH", 99.99, 10.0)],
}
FEATURE_DAYS = [dt.date(2018, 2, 1), dt.date(2018, 3, 15), dt.date(2018, 4, 1)]


@pytest.fixture(scope="module")
def features_by_client(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, dt.date], dict[str, Any]]:
    """Adapter, ingest with mappings/olist.yaml and the features stage at ``FEATURE_DAYS`` on the
    sources with ``TWINS``: the info and feature columns of each row by (client_id, cutoff date)."""
    folder = tmp_path_factory.mktemp("olist_features")
    export = adapt_olist(write_sources(folder / "olist", extra=TWINS), threads=1)
    raw = export.write(folder / "raw")
    mapping = load_mapping(REPO / "mappings" / "olist.yaml")
    params = IngestParams(export_date=export.export_date, timezone="America/Sao_Paulo", threads=1)
    result = ingest_export(locate_sources(raw, mapping), mapping, params)
    for name, r in result.tables.items():
        assert r.rows_quarantined == 0
        write_parquet(r.clean, folder / "clean" / f"{name}.parquet")
    features = FeatureParams(cutoffs=FEATURE_DAYS)
    run_features(
        folder / "clean",
        folder / "features",
        FEATURE_DAYS,
        features,
        export_date=export.export_date,
        threads=1,
    )
    rows = pq.read_table(folder / "features" / "features.parquet").to_pylist()
    columns = [*FEATURE_INFO_COLUMNS, *FEATURE_COLUMNS]
    return {(r["client_id"], r["cutoff_at"].date()): {c: r[c] for c in columns} for r in rows}


def test_what_a_late_parcel_does_after_a_cutoff_changes_no_feature_at_it(
    features_by_client: dict[tuple[str, dt.date], dict[str, Any]],
) -> None:
    # Nothing known at 02-01 tells the twins apart, so no feature at 02-01 may: not the severity (a
    # grade by the final delay would) nor whether there is a complaint (one made at delivery only
    # would exist for the parcel that never arrives alone).
    at = {p: features_by_client[(p, dt.date(2018, 2, 1))] for p in ("P6", "P6b", "P6c")}
    assert at["P6"] == at["P6b"] == at["P6c"]
    p6 = at["P6"]
    assert (p6["complaints_total"], p6["open_complaints"], p6["complaint_severity_max"]) == (1, 1, 2)
    # the delay enters once the parcel arrives, as the resolution time (02-05 10:00 - 01-21 00:00)
    later = {p: features_by_client[(p, dt.date(2018, 3, 15))] for p in ("P6", "P6b", "P6c")}
    assert [later[p]["open_complaints"] for p in ("P6", "P6b", "P6c")] == [0, 0, 1]
    assert later["P6b"]["complaint_resolve_days_mean"] == pytest.approx(15 + 10 / 24)


def test_a_cancellation_is_not_seen_before_its_promised_date_passed(
    features_by_client: dict[tuple[str, dt.date], dict[str, Any]],
) -> None:
    # at 03-15, o3 (P2), o4 (P3) and o5 (P4) are cancelled by the export, but their promised dates
    # (03-20, 03-25, 03-30) have not passed: the cancellation may not have happened yet
    before, after = dt.date(2018, 3, 15), dt.date(2018, 4, 1)
    clients = ("P2", "P3", "P4")
    assert [features_by_client[(p, before)]["complaints_total"] for p in clients] == [0, 0, 0]
    assert [features_by_client[(p, after)]["complaints_total"] for p in clients] == [1, 1, 1]
    assert [features_by_client[(p, after)]["complaint_severity_max"] for p in clients] == [3, 3, 1]


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
    assert report["tables"]["orders"]["rows_read"] == 16 and report["tables"]["orders"]["rows_kept"] == 9
    assert pq.read_table(out / "complaints.parquet").num_rows == report["complaints"] == 8
    assert "no_items 3" in result.output


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
