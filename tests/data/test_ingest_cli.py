"""`comeback ingest` end to end on small real files: outputs, exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from _ingest_fixtures import make_export
from typer.testing import CliRunner

from features.contract import RAW_TABLES

REPO = Path(__file__).resolve().parents[2]
QUARANTINE_COLUMNS = ["source_file", "line", "column", "rule", "value", "detail", "raw_row"]


def write_params(tmp_path: Path, **ingest: object) -> Path:
    """The repo's params.yaml with the ingest section overridden."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"] = {"export_date": "2025-01-01", "timezone": "UTC", "max_reject_share": 0.5, **ingest}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def invoke(*args: str) -> tuple[int, str]:
    """Run `comeback ingest ARGS` through the real Typer app."""
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["ingest", *args])
    return result.exit_code, result.output


def test_ingest_writes_clean_parquet_quarantine_and_report(tmp_path: Path) -> None:
    raw = make_export(tmp_path, orders="orders_type.csv")
    (raw / "contacts.csv").unlink()
    out = tmp_path / "clean"
    code, output = invoke("--raw", str(raw), "--out", str(out), "--params", str(write_params(tmp_path)))
    assert code == 0, output
    for name, contract in RAW_TABLES.items():
        table = pq.read_table(out / f"{name}.parquet")
        assert table.schema.names == contract.names
        for c in contract.columns:
            if c.kind == "timestamp":
                assert table.schema.field(c.name).type == pa.timestamp("us", tz="UTC")
        q = pacsv.read_csv(out / "quarantine" / f"{name}.csv")
        assert q.schema.names == QUARANTINE_COLUMNS
    assert pq.read_table(out / "contacts.parquet").num_rows == 0
    report = json.loads((out / "ingest_report.json").read_text())
    assert report["export_date"] == "2025-01-01" and report["timezone"] == "UTC"
    assert report["tables"]["orders"] == {
        "source_file": "orders.csv",
        "rows_read": 3,
        "rows_kept": 2,
        "rows_quarantined": 1,
        "quarantine_share": round(1 / 3, 6),
        "quarantined_by_rule": {"type": 1},
    }
    q = pacsv.read_csv(out / "quarantine" / "orders.csv").to_pylist()
    assert [(r["source_file"], r["line"], r["column"], r["rule"]) for r in q] == [
        ("orders.csv", 3, "amount", "type")
    ]
    assert "orders" in output and "quarantined" in output
    # only the outputs themselves, no temp files left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.parquet" for n in RAW_TABLES] + ["quarantine", "ingest_report.json"]
    )


def test_missing_required_column_stops_with_file_and_column(tmp_path: Path) -> None:
    raw = make_export(tmp_path, orders="orders_missing_column.csv")
    code, output = invoke(
        "--raw", str(raw), "--out", str(tmp_path / "o"), "--params", str(write_params(tmp_path))
    )
    assert code != 0
    assert "orders.csv" in output and "'amount'" in output


def test_reject_share_above_threshold_stops_and_names_the_table(tmp_path: Path) -> None:
    raw = make_export(tmp_path, orders="orders_many_bad.csv")
    out = tmp_path / "o"
    params = write_params(tmp_path, max_reject_share=0.05)
    code, output = invoke("--raw", str(raw), "--out", str(out), "--params", str(params))
    assert code != 0
    assert "orders (orders.csv): 2 of 4 rows = 50.0%" in output
    # the quarantine explaining the failure is written; no clean table a later stage could trust
    assert len(pacsv.read_csv(out / "quarantine" / "orders.csv")) == 2
    assert not (out / "orders.parquet").exists()


def test_typo_in_mapping_stops_with_the_key(tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text("tables:\n  orders:\n    colums: {order_id: BestellNr}\n")
    code, output = invoke(
        "--raw",
        str(make_export(tmp_path)),
        "--out",
        str(tmp_path / "o"),
        "--mapping",
        str(mapping),
        "--params",
        str(write_params(tmp_path)),
    )
    assert code != 0
    assert "tables.orders.colums" in output


@pytest.mark.parametrize("key", ["export_date"])
def test_params_without_ingest_key_stop(tmp_path: Path, key: str) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["ingest"][key]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    code, output = invoke(
        "--raw", str(make_export(tmp_path)), "--out", str(tmp_path / "o"), "--params", str(path)
    )
    assert code != 0 and f"ingest.{key}" in output


def test_adapt_online_retail_writes_a_raw_export_or_names_the_missing_file(tmp_path: Path) -> None:
    from pipeline.cli import app

    source = tmp_path / "or.parquet"
    pq.write_table(
        pa.table(
            {
                "InvoiceNo": ["536365", "C536366"],
                "StockCode": ["85123A", "85123A"],
                "Description": ["heart", "heart"],
                "Quantity": pa.array([6, -1], pa.int64()),
                "InvoiceDate": pa.array([1291191960000000, 1291192080000000], pa.timestamp("us")),
                "UnitPrice": [2.55, 2.55],
                "CustomerID": pa.array([17850, 17850], pa.int64()),
                "Country": ["United Kingdom", "United Kingdom"],
            }
        ),
        source,
    )
    out = tmp_path / "raw"
    result = CliRunner().invoke(app, ["adapt-online-retail", "--source", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_report.json",
        "clients.parquet",
        "complaints.parquet",
        "orders.parquet",
    ]
    report = json.loads((out / "adapter_report.json").read_text())
    assert report["lines_read"] == 2 and report["orders_by_kind"] == {"cancellation": 1, "invoice": 1}

    missing = CliRunner().invoke(
        app, ["adapt-online-retail", "--source", str(tmp_path / "no.parquet"), "--out", str(out)]
    )
    assert missing.exit_code != 0 and "no.parquet" in missing.output
