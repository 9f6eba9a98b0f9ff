"""A German-named export (semicolons, decimal commas, day-first dates, Latin-1, German codes) is
mapped by mappings/example.yaml and ingested into the contract's names, codes and UTC instants."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import load_mapping

REPO = Path(__file__).resolve().parents[2]
GERMAN = REPO / "tests" / "fixtures" / "ingest" / "german"
PARAMS = IngestParams(
    export_date=dt.date(2025, 1, 1), timezone="Europe/Berlin", max_reject_share=1.0, threads=1
)


def test_german_export_is_mapped_onto_the_contract() -> None:
    mapping = load_mapping(REPO / "mappings" / "example.yaml")
    result = ingest_export(locate_sources(GERMAN, mapping), mapping, PARAMS)
    utc = dt.UTC

    clients = result.tables["clients"].clean.to_pylist()
    assert clients == [
        {
            "client_id": "K1",
            "created_at": dt.datetime(2023, 1, 10, 8, 0, tzinfo=utc),
            "manager_id": "B1",
            "segment": "Handel",
            "do_not_contact": False,
        },
        {
            "client_id": "K2",
            "created_at": dt.datetime(2023, 7, 11, 8, 30, tzinfo=utc),  # CEST: UTC+2
            "manager_id": None,
            "segment": "Großhandel",  # read as Latin-1
            "do_not_contact": True,
        },
        {
            "client_id": "K3",
            "created_at": dt.datetime(2023, 3, 12, 7, 15, tzinfo=utc),
            "manager_id": "B1",
            "segment": None,
            "do_not_contact": False,
        },
    ]

    orders = result.tables["orders"]
    # clean rows are sorted by client and time (contract sort_by), not in file order
    by_id = {o["order_id"]: o for o in orders.clean.to_pylist()}
    assert sorted((o["order_id"], o["amount"], o["margin"], o["status"]) for o in by_id.values()) == [
        ("B1", 120.5, 30.1, "completed"),
        ("B2", 80.0, None, "cancelled"),
        ("B3", 45.25, -3.5, "returned"),
    ]
    assert by_id["B1"]["due_at"] == dt.datetime(2024, 2, 4, 23, 0, tzinfo=utc)
    # an unmapped code is checked against the contract and quarantined under the contract's name
    (q,) = orders.quarantine.to_pylist()
    assert (q["source_file"], q["line"], q["column"], q["rule"], q["value"]) == (
        "Bestellungen.csv",
        5,
        "status",
        "allowed",
        "verloren",
    )
    assert "'Status'" in q["detail"]

    complaints = result.tables["complaints"].clean.to_pylist()
    assert sorted((c["category"], c["human_factor"], c["severity"]) for c in complaints) == [
        ("delivery", False, 3),
        ("staff", True, 5),
    ]
    assert result.tables["contacts"].rows_read == 0
    for r in result.tables.values():
        assert r.rows_read == r.rows_kept + r.rows_quarantined
