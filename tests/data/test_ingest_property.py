"""Property: for any mix of good and bad order rows, ingest accounts for every row exactly
(read = kept + quarantined), keeps every good row with its values unaltered and quarantines every
bad row on its own line."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import ExportMapping

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
PARAMS = IngestParams(export_date=dt.date(2025, 1, 1), timezone="UTC", max_reject_share=1.0, threads=1)
CLIENTS = ["c1", "c2", "c3", "c4"]  # the base export's clients
HEADER = "order_id,client_id,ordered_at,amount,margin,status,due_at,paid_at"
DEFECTS = (
    "type",
    "range",
    "allowed",
    "unknown_client",
    "after_export",
    "required",
    "malformed",
    "duplicate_row",
)

good_rows = st.fixed_dictionaries(
    {
        "client_id": st.sampled_from(CLIENTS),
        "ordered_at": st.datetimes(
            min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2024, 12, 31, 23, 59, 59)
        ),
        "amount": st.floats(min_value=0.01, max_value=1e7, allow_nan=False),
        "margin": st.none() | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        "status": st.sampled_from(["completed", "cancelled", "returned"]),
    }
)
# At least one good row: a column in which no value at all parses is a schema-level stop by design
# (tested in test_ingest_defects), not a row-level quarantine.
rows = st.lists(st.tuples(st.sampled_from(("good", *DEFECTS)), good_rows), min_size=1, max_size=30).filter(
    lambda mix: any(kind == "good" for kind, _ in mix)
)


def _line(order_id: str, r: dict[str, object]) -> str:
    ts = r["ordered_at"].strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[attr-defined]
    margin = "" if r["margin"] is None else repr(r["margin"])
    return f"{order_id},{r['client_id']},{ts},{r['amount']!r},{margin},{r['status']},,"


def _bad(kind: str, order_id: str, r: dict[str, object], previous: str | None) -> str:
    line = _line(order_id, r)
    fields = line.split(",")
    if kind == "type":
        fields[3] = "n/a"
    elif kind == "range":
        fields[3] = "-" + fields[3]
    elif kind == "allowed":
        fields[5] = "shipped"
    elif kind == "unknown_client":
        fields[1] = "nobody"
    elif kind == "after_export":
        fields[2] = "2025-06-01 00:00:00"
    elif kind == "required":
        fields[0] = ""
    elif kind == "malformed":
        fields.append("surplus")
    elif kind == "duplicate_row" and previous is not None:
        return previous
    elif kind == "duplicate_row":  # nothing to duplicate yet: make it a type error instead
        fields[3] = "n/a"
    return ",".join(fields)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_every_row_is_kept_or_quarantined_and_good_rows_are_unaltered(
    mix: list[tuple[str, dict[str, object]]],
) -> None:
    lines, good, bad_lines = [HEADER], {}, set()
    previous_good: str | None = None
    for i, (kind, r) in enumerate(mix):
        order_id = f"o{i}"
        file_line = len(lines) + 1
        if kind == "good":
            text = _line(order_id, r)
            good[order_id] = r
            previous_good = text
        else:
            text = _bad(kind, order_id, r, previous_good)
            bad_lines.add(file_line)
        lines.append(text)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        shutil.copytree(FIXTURES / "base", raw)
        (raw / "orders.csv").write_text("\n".join(lines) + "\n")
        mapping = ExportMapping()
        result = ingest_export(locate_sources(raw, mapping), mapping, PARAMS).tables["orders"]

    assert result.rows_read == len(mix)
    assert result.rows_read == result.rows_kept + result.rows_quarantined
    assert result.rows_kept == len(good)
    assert {q["line"] for q in result.quarantine.to_pylist()} == bad_lines
    kept = {row["order_id"]: row for row in result.clean.to_pylist()}
    assert kept.keys() == good.keys()
    for order_id, r in good.items():
        row = kept[order_id]
        assert row["client_id"] == r["client_id"]
        assert row["ordered_at"] == r["ordered_at"].replace(microsecond=0, tzinfo=dt.UTC)  # type: ignore[attr-defined]
        assert row["amount"] == r["amount"]
        assert row["margin"] == r["margin"]
        assert row["status"] == r["status"]


segments = st.text(alphabet=st.sampled_from(list('ab ,"\n')), max_size=12)
client_rows = st.lists(
    st.tuples(
        st.sampled_from(("good", "good", "type", "malformed", "broken_quote")), segments, st.booleans()
    ),
    min_size=1,
    max_size=25,
).filter(lambda mix: any(kind == "good" for kind, _, _ in mix))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(client_rows)
def test_line_numbers_survive_quoted_newlines_and_blank_lines(mix: list[tuple[str, str, bool]]) -> None:
    """Quarantine lines are the physical lines the rows were written on, whatever multi-line quoted
    values and blank lines come before them; quoted values come back unaltered."""
    text, line = ["client_id,created_at,manager_id,segment,do_not_contact"], 2
    good: dict[str, str] = {}
    bad_lines: set[int] = set()
    for i, (kind, segment, blank_before) in enumerate(mix):
        if blank_before:
            text.append("")
            line += 1
        quoted = '"' + segment.replace('"', '""') + '"'
        created = "soon" if kind == "type" else "2023-05-01 10:00:00"
        row = f"c{i},{created},m1,{quoted},"
        if kind == "malformed":
            row += ",surplus"
        elif kind == "broken_quote":
            row = f'c{i},{created},m1,"{segment.replace(chr(34), "")}"x,'
        text.append(row)
        if kind == "good":
            good[f"c{i}"] = segment
        else:
            bad_lines.add(line)
        line += 1 + row.count("\n")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        shutil.copytree(FIXTURES / "base", raw)
        (raw / "clients.csv").write_text("\n".join(text) + "\n")
        mapping = ExportMapping()
        result = ingest_export(locate_sources(raw, mapping), mapping, PARAMS).tables["clients"]

    assert result.rows_read == len(mix) == result.rows_kept + result.rows_quarantined
    assert {q["line"] for q in result.quarantine.to_pylist()} == bad_lines
    assert {r["client_id"]: r["segment"] for r in result.clean.to_pylist()} == {
        cid: (seg if seg.strip(" ") else None)
        for cid, seg in good.items()  # blank = spaces only
    }
