"""Unit tests of the pure parts of ingest: line numbering, params, mapping model, header reading."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.ingest_rules import IngestParams, find_blank_lines, physical_line_segments, read_csv_header
from pipeline.mapping import CsvOptions, MappingError, parse_mapping


def _lines(segments: list[tuple[int, int]], kept: int) -> list[int]:
    """Expand segments into the physical line of every kept row."""
    out = []
    for i, (k, line) in enumerate(segments):
        end = segments[i + 1][0] if i + 1 < len(segments) else kept
        out += [line + j for j in range(end - k)]
    return out


def test_plain_file_rows_are_on_consecutive_lines() -> None:
    segments, rejects = physical_line_segments(5, {}, {}, np.zeros(0, dtype=np.int64))
    assert _lines(segments, 5) == [2, 3, 4, 5, 6]
    assert rejects == {}


def test_rejects_blank_lines_and_quoted_newlines_shift_lines() -> None:
    # header 1 | row0 2 | blank 3 | row1 4-5 (one quoted newline) | reject 6 | reject 7 (2 lines) |
    # row2 9 | row3 10-12 (two quoted newlines) | row4 13
    segments, rejects = physical_line_segments(5, {1: 1, 3: 2}, {5: 0, 6: 1}, np.array([3]))
    assert _lines(segments, 5) == [2, 4, 9, 10, 13]
    assert rejects == {5: 6, 6: 7}


def test_trailing_reject_after_last_row() -> None:
    segments, rejects = physical_line_segments(2, {}, {4: 0}, np.zeros(0, dtype=np.int64))
    assert _lines(segments, 2) == [2, 3]
    assert rejects == {4: 4}


def test_find_blank_lines_handles_lf_and_crlf(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_bytes(b"a,b\r\n1,2\r\n\r\n3,4\n\n5,6\n")
    assert find_blank_lines(f).tolist() == [3, 5]
    # a chunk boundary inside the file must not change the answer
    assert find_blank_lines(f, chunk_bytes=3).tolist() == [3, 5]


def test_export_instant_is_midnight_in_the_declared_zone() -> None:
    p = IngestParams(export_date=dt.date(2011, 7, 1), timezone="Europe/London")
    assert p.export_at == dt.datetime(2011, 6, 30, 23, 0, tzinfo=dt.UTC)


def test_params_reject_unknown_zone_and_keys() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        IngestParams(export_date=dt.date(2025, 1, 1), timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="max_reject_shar"):
        IngestParams.model_validate({"export_date": "2025-01-01", "max_reject_shar": 0.1})


def test_mapping_typo_in_key_names_the_key() -> None:
    with pytest.raises(MappingError, match=r"tables\.orders\.colums"):
        parse_mapping({"tables": {"orders": {"colums": {"order_id": "BestellNr"}}}}, source="m.yaml")


def test_mapping_unknown_contract_column_names_it() -> None:
    with pytest.raises(MappingError, match=r"tables\.orders\.columns\.betrag: not a column of the 'orders'"):
        parse_mapping({"tables": {"orders": {"columns": {"betrag": "Betrag"}}}})


def test_mapping_unknown_table_is_an_error() -> None:
    with pytest.raises(MappingError, match=r"tables\.bestellungen"):
        parse_mapping({"tables": {"bestellungen": {}}})


def test_mapping_null_only_for_nullable_columns() -> None:
    ok = parse_mapping({"tables": {"orders": {"columns": {"margin": None}}}})
    assert ok.table("orders").source_column("margin") is None
    assert ok.table("orders").source_column("amount") == "amount"
    with pytest.raises(MappingError, match=r"orders\.amount is a required"):
        parse_mapping({"tables": {"orders": {"columns": {"amount": None}}}})


def test_mapping_codes_are_text_even_when_yaml_reads_numbers() -> None:
    m = parse_mapping({"tables": {"complaints": {"values": {"human_factor": {1: True, 0: False}}}}})
    assert m.table("complaints").values["human_factor"] == {"1": "true", "0": "false"}


def test_header_with_quotes_bom_and_semicolons(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_bytes('\ufeff"Kunden;Nr";Datum\r\nx;y\r\n'.encode())
    assert read_csv_header(f, CsvOptions(delimiter=";")) == ["Kunden;Nr", "Datum"]


def test_default_params_with_only_the_export_facts_build_a_schedule_before_the_export() -> None:
    """A real export needs only ingest.export_date and ingest.timezone changed (Online Retail's)."""
    import yaml

    from pipeline.params import Params

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text(encoding="utf-8"))
    raw["ingest"].update(export_date="2011-12-10", timezone="Europe/London")
    params = Params.model_validate(raw)
    assert params.ingest.export_at == dt.datetime(2011, 12, 10, tzinfo=dt.UTC)  # GMT in December
    days = params.features.cutoff_dates(
        export_date=params.ingest.export_date, first_order=dt.date(2010, 12, 1)
    )
    assert days[-1] + dt.timedelta(days=params.features.horizon_days) <= dt.date(2011, 12, 10)
    assert days[1] - days[0] == dt.timedelta(days=7)  # a year of history: weekly cutoffs
