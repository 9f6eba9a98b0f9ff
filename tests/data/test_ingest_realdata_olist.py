"""The real Olist tables through the adapter and ingest: every source row and every row is accounted for.

Needs the shared data folder ($COMEBACK_SHARED_DATA or ../shared/data); skipped when absent.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import load_mapping
from pipeline.olist import COMPLAINT_RULES, OLIST_DIR, RULE_SEVERITY, SOURCE_FILES, OlistExport, adapt_olist
from pipeline.online_retail import shared_data_dir
from pipeline.params import load_params

REPO = Path(__file__).resolve().parents[2]
SOURCE = shared_data_dir() / OLIST_DIR
MISSING = [f for f in SOURCE_FILES.values() if not (SOURCE / f).is_file()]

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        bool(MISSING), reason=f"shared data absent: {SOURCE} lacks {MISSING} (set COMEBACK_SHARED_DATA)"
    ),
]


@pytest.fixture(scope="module")
def export() -> OlistExport:
    return adapt_olist(SOURCE, threads=2)


def test_olist_accounting_is_exact_and_ingest_keeps_nearly_all(export: OlistExport, tmp_path: Path) -> None:
    report = export.report()
    for name, file in SOURCE_FILES.items():
        entry = report["tables"][name]
        assert entry["rows_read"] == pq.ParquetFile(SOURCE / file).metadata.num_rows
        assert entry["rows_read"] == entry["rows_kept"] + entry["rows_set_aside"]
    orders = report["tables"]["orders"]
    assert orders["rows_kept"] == export.orders.num_rows and orders["set_aside_by_rule"]["no_items"] > 0
    assert report["tables"]["customers"]["rows_kept"] == export.clients.num_rows
    aside = orders["set_aside_by_rule"]
    assert sum(export.orders_by_complaint_rule.values()) == (
        orders["rows_read"] - aside["duplicate_order"] - aside["no_customer"]
    )
    assert export.complaints.num_rows == sum(export.orders_by_complaint_rule[r] for r in COMPLAINT_RULES)
    assert export.export_date == export.last_event_at.date() + dt.timedelta(days=1)

    raw = export.write(tmp_path / "raw")
    mapping = load_mapping(REPO / "mappings" / "olist.yaml")
    max_share = load_params(REPO / "params.yaml").ingest.max_reject_share
    params = IngestParams(
        export_date=export.export_date, timezone="America/Sao_Paulo", max_reject_share=max_share, threads=2
    )
    result = ingest_export(locate_sources(raw, mapping), mapping, params)
    for r in result.tables.values():
        assert r.rows_read == r.rows_kept + r.rows_quarantined
        assert r.reject_share <= params.max_reject_share
    assert result.tables["complaints"].rows_read == export.complaints.num_rows
    clean = result.tables["orders"].clean
    assert set(clean.column("status").unique().to_pylist()) == {"completed", "cancelled"}
    assert pc.min(clean.column("amount")).as_py() > 0
    assert pc.max(clean.column("ordered_at")).as_py() < params.export_at
    complaints = result.tables["complaints"].clean
    assert set(complaints.column("category").unique().to_pylist()) == {
        "delivery",
        "service",
        "product",
        "billing",
    }
    assert set(complaints.column("severity").unique().to_pylist()) == set(RULE_SEVERITY.values())


def test_olist_complaints_say_nothing_later_than_their_created_at(export: OlistExport) -> None:
    # Per rule, the rows that break the rules of pipeline/olist.py's docstring: a severity other than
    # the rule's own (fixed when the complaint is made), a complaint dated before the promised date
    # passed, a cancellation before its order's last event, a delivery complaint resolved otherwise
    # than at delivery (or, never delivered, resolved at all), a cancellation not resolved at once.
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("complaints", export.complaints)
    severity = " ".join(f"WHEN '{r}' THEN {n}" for r, n in RULE_SEVERITY.items())
    got = con.execute(
        f"""
        SELECT reason, count(*) AS n,
            count_if(severity <> CASE reason {severity} END) AS other_severity,
            count_if(complaint_created_at
                < CAST(CAST(order_estimated_delivery_date AS DATE) + 1 AS TIMESTAMP)) AS before_promised_date,
            count_if(reason NOT IN ('late_delivery', 'not_delivered') AND complaint_created_at
                < greatest(order_purchase_timestamp, order_approved_at, order_delivered_carrier_date,
                           order_delivered_customer_date)) AS before_last_event,
            count_if(CASE reason
                WHEN 'late_delivery' THEN resolved_at IS DISTINCT FROM order_delivered_customer_date
                WHEN 'not_delivered' THEN resolved_at IS NOT NULL OR order_delivered_customer_date IS NOT NULL
                ELSE resolved_at IS DISTINCT FROM complaint_created_at END) AS other_resolution,
            count_if(complaint_created_at >= DATE '{export.export_date}') AS after_export
        FROM complaints c JOIN read_parquet(?) o USING (order_id)
        GROUP BY reason ORDER BY reason
        """,
        [str(SOURCE / SOURCE_FILES["orders"])],
    ).fetchall()
    assert {r[0] for r in got} == set(COMPLAINT_RULES)
    assert [(r[0], *r[2:]) for r in got] == [(r[0], 0, 0, 0, 0, 0) for r in got]
    assert sum(r[1] for r in got) == export.complaints.num_rows
