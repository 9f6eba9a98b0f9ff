"""One hand-made export file per defect: the quarantine row (file, line, column, rule) and the
exact accounting are asserted for every table. Real DuckDB, real files, no mocks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from _ingest_fixtures import FIXTURES, make_export

from pipeline.ingest_rules import (
    IngestError,
    IngestParams,
    IngestResult,
    ingest_export,
    locate_sources,
)
from pipeline.mapping import ExportMapping

PARAMS = IngestParams(export_date=dt.date(2025, 1, 1), timezone="UTC", max_reject_share=1.0, threads=1)
BASE_ROWS = {"clients": 4, "orders": 4, "complaints": 2, "contacts": 2}


def run(raw: Path, params: IngestParams = PARAMS) -> IngestResult:
    mapping = ExportMapping()
    return ingest_export(locate_sources(raw, mapping), mapping, params)


def quarantined(result: IngestResult, table: str) -> list[tuple[str, int, str, str]]:
    q = result.tables[table].quarantine.to_pylist()
    return [(r["source_file"], r["line"], r["column"], r["rule"]) for r in q]


# table replaced -> defect file, and per table: (rows read, [(line, column, rule), ...])
CASES: dict[str, tuple[dict[str, str], dict[str, tuple[int, list[tuple[int, str, str]]]]]] = {
    "type": ({"orders": "orders_type.csv"}, {"orders": (3, [(3, "amount", "type")])}),
    "required": ({"orders": "orders_required.csv"}, {"orders": (3, [(4, "client_id", "required")])}),
    "range_amount": ({"orders": "orders_range.csv"}, {"orders": (3, [(3, "amount", "range")])}),
    "range_severity": (
        {"complaints": "complaints_range.csv"},
        {"complaints": (3, [(3, "severity", "range")])},
    ),
    "allowed_status": ({"orders": "orders_allowed.csv"}, {"orders": (3, [(3, "status", "allowed")])}),
    "allowed_category": (
        {"complaints": "complaints_allowed.csv"},
        {"complaints": (2, [(2, "category", "allowed")])},
    ),
    "allowed_campaign": (
        {"contacts": "contacts_allowed.csv"},
        {"contacts": (2, [(3, "campaign", "allowed")])},
    ),
    "duplicate_id": (
        {"orders": "orders_duplicate_id.csv"},
        {"orders": (4, [(5, "order_id", "duplicate_id")])},
    ),
    "duplicate_row": ({"orders": "orders_duplicate_row.csv"}, {"orders": (4, [(4, "", "duplicate_row")])}),
    "unknown_client": (
        {"orders": "orders_unknown_client.csv"},
        {"orders": (3, [(3, "client_id", "unknown_client")])},
    ),
    "quarantined_client": (
        {"clients": "clients_bad_created_at.csv"},
        {"clients": (4, [(4, "created_at", "type")]), "orders": (4, [(5, "client_id", "unknown_client")])},
    ),
    "resolved_before_created": (
        {"complaints": "complaints_resolved_before_created.csv"},
        {"complaints": (2, [(2, "resolved_at", "resolved_before_created")])},
    ),
    "after_export": (
        {"orders": "orders_after_export.csv"},
        {"orders": (3, [(3, "ordered_at", "after_export")])},
    ),
    "field_count": (
        {"orders": "orders_field_count.csv"},
        {"orders": (4, [(3, "", "malformed_line"), (4, "", "malformed_line")])},
    ),
    "broken_quote": ({"orders": "orders_broken_quote.csv"}, {"orders": (3, [(3, "", "malformed_line")])}),
    "bad_encoding": ({"orders": "orders_bad_encoding.csv"}, {"orders": (3, [(3, "", "malformed_line")])}),
    "multiline_and_blank_line": (
        {"clients": "clients_multiline.csv"},
        {
            "clients": (4, [(6, "do_not_contact", "type")]),
            "orders": (4, [(5, "client_id", "unknown_client")]),
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_defect_is_quarantined_with_exact_accounting(tmp_path: Path, case: str) -> None:
    replace, expected = CASES[case]
    result = run(make_export(tmp_path, **replace))
    for table in BASE_ROWS:
        read, rows = expected.get(table, (BASE_ROWS[table], []))
        r = result.tables[table]
        source = f"{table}.csv"
        assert quarantined(result, table) == [(source, line, col, rule) for line, col, rule in rows], table
        bad_lines = {line for line, _, _ in rows}
        assert (r.rows_read, r.rows_kept, r.rows_quarantined) == (read, read - len(bad_lines), len(bad_lines))
        assert r.rows_read == r.rows_kept + r.rows_quarantined
        assert r.clean.num_rows == r.rows_kept
        by_rule: dict[str, int] = {}
        for _, _, rule in rows:
            by_rule[rule] = by_rule.get(rule, 0) + 1
        assert r.quarantined_by_rule == by_rule


def test_quarantine_keeps_the_raw_row_and_the_offending_value(tmp_path: Path) -> None:
    result = run(make_export(tmp_path, orders="orders_type.csv"))
    (row,) = result.tables["orders"].quarantine.to_pylist()
    assert row["value"] == "eighty"
    raw = json.loads(row["raw_row"])
    assert raw == {
        "order_id": "o2",
        "client_id": "c1",
        "ordered_at": "2024-03-07 11:00:00",
        "amount": "eighty",
        "margin": None,
        "status": "completed",
        "due_at": "2024-04-07",
        "paid_at": None,
    }


def test_malformed_line_keeps_its_text(tmp_path: Path) -> None:
    result = run(make_export(tmp_path, orders="orders_field_count.csv"))
    rows = result.tables["orders"].quarantine.to_pylist()
    assert rows[0]["value"] == "o2,c1,2024-03-07 11:00:00,80,,completed,2024-04-07,,extra"
    assert json.loads(rows[0]["raw_row"]) == rows[0]["value"]
    assert "TOO MANY COLUMNS" in rows[0]["detail"]


def test_bad_encoding_line_is_kept_byte_for_byte(tmp_path: Path) -> None:
    result = run(make_export(tmp_path, orders="orders_bad_encoding.csv"))
    (row,) = result.tables["orders"].quarantine.to_pylist()
    assert row["value"] == "o2,c1\\xff\\xfe,2024-03-07 11:00:00,80,,completed,2024-04-07,"
    assert "INVALID ENCODING" in row["detail"]


def test_duplicate_id_keeps_the_first_occurrence(tmp_path: Path) -> None:
    result = run(make_export(tmp_path, orders="orders_duplicate_id.csv"))
    clean = result.tables["orders"].clean.to_pylist()
    o2 = [r for r in clean if r["order_id"] == "o2"]
    assert len(o2) == 1 and o2[0]["amount"] == 80.0 and o2[0]["client_id"] == "c1"


def test_quoted_newline_value_is_kept_intact(tmp_path: Path) -> None:
    result = run(make_export(tmp_path, clients="clients_multiline.csv"))
    c1 = result.tables["clients"].clean.to_pylist()[0]
    assert c1["segment"] == "retail\nand wholesale"


def test_clean_types_follow_the_contract(tmp_path: Path) -> None:
    result = run(make_export(tmp_path))
    clients = result.tables["clients"].clean
    assert clients.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert clients.schema.field("do_not_contact").type == pa.bool_()
    # absent or empty do_not_contact means False; "true" stays True
    assert clients.column("do_not_contact").to_pylist() == [False, False, True, False]
    orders = result.tables["orders"].clean
    assert orders.schema.field("amount").type == pa.float64()
    assert orders.column("amount").to_pylist() == [120.5, 80.0, 45.25, 300.0]
    assert orders.column("margin").to_pylist() == [30.1, None, -3.5, 90.0]
    assert result.tables["complaints"].clean.schema.field("severity").type == pa.int64()


def test_missing_do_not_contact_column_defaults_to_false(tmp_path: Path) -> None:
    raw = make_export(tmp_path)
    text = (raw / "clients.csv").read_text().splitlines()
    (raw / "clients.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in text) + "\n")
    result = run(raw)
    assert result.tables["clients"].clean.column("do_not_contact").to_pylist() == [False] * 4


def test_absent_contacts_table_gives_an_empty_table_with_schema(tmp_path: Path) -> None:
    raw = make_export(tmp_path)
    (raw / "contacts.csv").unlink()
    result = run(raw)
    contacts = result.tables["contacts"]
    assert contacts.rows_read == 0 and contacts.clean.num_rows == 0
    assert contacts.clean.schema.names == [
        "contact_id",
        "client_id",
        "contacted_at",
        "campaign",
        "offer",
        "manager_id",
    ]


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"orders\.csv: table 'orders': missing required column 'amount'"):
        run(make_export(tmp_path, orders="orders_missing_column.csv"))


def test_column_that_never_parses_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(
        IngestError, match=r"orders\.csv: column 'amount' \(orders\.amount\) cannot be read as float"
    ):
        run(make_export(tmp_path, orders="orders_unreadable_amount.csv"))


def test_missing_required_table_names_the_file(tmp_path: Path) -> None:
    raw = make_export(tmp_path)
    (raw / "orders.csv").unlink()
    with pytest.raises(
        IngestError, match=r"table 'orders': file not found: .*orders\.csv or .*orders\.parquet"
    ):
        run(raw)


def test_naive_timestamps_are_read_in_the_declared_zone(tmp_path: Path) -> None:
    params = PARAMS.model_copy(update={"timezone": "Europe/Berlin"})
    raw = make_export(tmp_path)
    (raw / "contacts.csv").write_text(
        "contact_id,client_id,contacted_at,campaign,offer,manager_id\n"
        "x1,c1,2024-01-15 12:00:00,prevention,,m1\n"  # winter: UTC+1
        "x2,c1,2024-07-15 12:00:00,prevention,,m1\n"  # summer: UTC+2
        "x3,c1,2024-07-15T12:00:00+05:00,winback,,m1\n"  # explicit offset wins over the zone
        "x4,c1,2024-07-15T12:00:00Z,winback,,m1\n"
        "x5,c1,2024-03-31,winback,,m1\n"  # a date alone is local midnight
    )
    clean = run(raw, params).tables["contacts"].clean
    got = dict(
        zip(clean.column("contact_id").to_pylist(), clean.column("contacted_at").to_pylist(), strict=True)
    )
    utc = dt.UTC
    assert got == {
        "x1": dt.datetime(2024, 1, 15, 11, 0, tzinfo=utc),
        "x2": dt.datetime(2024, 7, 15, 10, 0, tzinfo=utc),
        "x3": dt.datetime(2024, 7, 15, 7, 0, tzinfo=utc),
        "x4": dt.datetime(2024, 7, 15, 12, 0, tzinfo=utc),
        "x5": dt.datetime(2024, 3, 30, 23, 0, tzinfo=utc),
    }


def test_clean_rows_are_sorted_by_client_and_time_ties_in_file_order(tmp_path: Path) -> None:
    raw = make_export(tmp_path)
    (raw / "orders.csv").write_text(
        "order_id,client_id,ordered_at,amount,margin,status,due_at,paid_at\n"
        "o1,c2,2024-03-01 10:00:00,10,,completed,,\n"
        "o2,c1,2024-05-01 10:00:00,10,,completed,,\n"
        "o3,c2,2024-01-01 10:00:00,10,,completed,,\n"
        "o4,c1,2024-02-01 10:00:00,10,,cancelled,,\n"
        "o5,c2,2024-03-01 10:00:00,10,,returned,,\n"  # ties with o1: file order decides
        "o6,c1,2024-02-01 10:00:00,10,,completed,,\n"  # ties with o4
    )
    result = run(raw, PARAMS)
    assert result.tables["orders"].clean.column("order_id").to_pylist() == [
        "o4",
        "o6",
        "o2",
        "o3",
        "o1",
        "o5",
    ]
    for name, r in result.tables.items():
        ids = r.clean.column("client_id").to_pylist()
        assert ids == sorted(ids), name


def test_export_instant_uses_the_declared_zone(tmp_path: Path) -> None:
    # 2024-12-31 23:30 in Berlin is 22:30 UTC, before the export instant 2024-12-31 23:00 UTC;
    # 2025-01-01 00:30 Berlin is after it.
    params = PARAMS.model_copy(update={"timezone": "Europe/Berlin"})
    raw = make_export(tmp_path)
    (raw / "contacts.csv").write_text(
        "contact_id,client_id,contacted_at,campaign,offer,manager_id\n"
        "x1,c1,2024-12-31 23:30:00,prevention,,m1\n"
        "x2,c1,2025-01-01 00:30:00,prevention,,m1\n"
    )
    result = run(raw, params)
    assert quarantined(result, "contacts") == [("contacts.csv", 3, "contacted_at", "after_export")]


def test_parquet_input_works_like_csv(tmp_path: Path) -> None:
    csv_raw = make_export(tmp_path / "csv", orders="orders_type.csv", clients="clients_bad_created_at.csv")
    pq_raw = tmp_path / "parquet"
    pq_raw.mkdir()
    con = duckdb.connect()
    for table in BASE_ROWS:
        src = csv_raw / f"{table}.csv"
        con.execute(
            f"COPY (SELECT * FROM read_csv('{src}', all_varchar = true)) TO '{pq_raw / (table + '.parquet')}'"
        )
    con.close()
    from_csv, from_parquet = run(csv_raw), run(pq_raw)
    for table in BASE_ROWS:
        a, b = from_csv.tables[table], from_parquet.tables[table]
        assert b.clean.equals(a.clean), table
        assert (b.rows_read, b.rows_kept, b.quarantined_by_rule) == (
            a.rows_read,
            a.rows_kept,
            a.quarantined_by_rule,
        )
        # Parquet reports the 1-based row number: the CSV line minus the header line
        assert [(r[1] - 1, r[2], r[3]) for r in quarantined(from_csv, table)] == [
            (r[1], r[2], r[3]) for r in quarantined(from_parquet, table)
        ]
    assert quarantined(from_parquet, "orders")[0][0] == "orders.parquet"


def test_crlf_line_ends_bom_and_missing_final_newline_keep_line_numbers(tmp_path: Path) -> None:
    raw = make_export(tmp_path)
    text = (FIXTURES / "defects" / "orders_field_count.csv").read_text()
    (raw / "orders.csv").write_bytes(b"\xef\xbb\xbf" + text.rstrip("\n").replace("\n", "\r\n").encode())
    result = run(raw)
    assert quarantined(result, "orders") == [
        ("orders.csv", 3, "", "malformed_line"),
        ("orders.csv", 4, "", "malformed_line"),
    ]
    assert result.tables["orders"].clean.column("order_id").to_pylist() == ["o1", "o4"]
    paid_at = result.tables["orders"].clean.column("paid_at").to_pylist()
    assert paid_at[0] == dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
