"""Ingest rules: read a raw CRM export, check every row against the table contract, split it into
clean rows and quarantined rows, and account for every row read.

All row work is vectorised SQL in DuckDB: a CSV is read as text (``all_varchar``) with DuckDB's
rejects tables catching malformed lines (wrong field count, broken quoting, bad encoding); values
are then parsed with ``TRY_CAST``/``try_strptime`` and each rule is one filtered scan. Python only
touches the header line, the (few) rejected lines and the few rows whose quoted values span
several physical lines, to report true physical line numbers.

Rules (``rule`` in the quarantine files), in the order they are decided:

* ``malformed_line``: the CSV reader could not split the line into the header's fields.
* ``required`` / ``type``: an empty required value / a value that does not parse as its type.
* ``range`` (amount > 0, severity 1..5), ``allowed`` (status, category, campaign codes).
* ``after_export``: a timestamp at or after the export instant (``due_at`` excepted: it may be
  in the future). ``resolved_before_created``: a complaint resolved before it was made.
* ``unknown_client``: ``client_id`` not among the *kept* clients (so a quarantined client takes
  its orders, complaints and contacts with it).
* ``duplicate_row``: the same raw row as an earlier line; the first occurrence is judged alone.
* ``duplicate_id``: an id already used by an earlier row that passed every other rule; the first
  valid occurrence in file order is kept, later ones are quarantined.

A row failing several rules appears once per rule in the quarantine file but counts once in the
accounting: rows read = rows kept + rows quarantined, exactly, per table.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.contract import DUCKDB_TYPES, RAW_TABLES, Column, ContractError, Table
from pipeline.mapping import CsvOptions, ExportMapping, TableMapping

log = logging.getLogger(__name__)

RULE_MALFORMED = "malformed_line"
RULE_REQUIRED = "required"
RULE_TYPE = "type"
RULE_RANGE = "range"
RULE_ALLOWED = "allowed"
RULE_AFTER_EXPORT = "after_export"
RULE_RESOLVED_BEFORE_CREATED = "resolved_before_created"
RULE_UNKNOWN_CLIENT = "unknown_client"
RULE_DUPLICATE_ROW = "duplicate_row"
RULE_DUPLICATE_ID = "duplicate_id"
RULES = (
    RULE_MALFORMED,
    RULE_REQUIRED,
    RULE_TYPE,
    RULE_RANGE,
    RULE_ALLOWED,
    RULE_AFTER_EXPORT,
    RULE_RESOLVED_BEFORE_CREATED,
    RULE_UNKNOWN_CLIENT,
    RULE_DUPLICATE_ROW,
    RULE_DUPLICATE_ID,
)

#: Timestamp columns allowed to lie after the export instant (a payment can fall due later).
FUTURE_OK = frozenset({"due_at"})

#: Order in which tables are ingested: clients first, the others reference them.
TABLE_ORDER = ("clients", "orders", "complaints", "contacts")

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("column", pa.string()),
        ("rule", pa.string()),
        ("value", pa.string()),
        ("detail", pa.string()),
        ("raw_row", pa.string()),
    ]
)

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

_LINE = "_ingest_line"


class IngestParams(BaseModel):
    """The ``ingest:`` section of params.yaml.

    ``export_date``: the export was taken at 00:00 of this day in ``timezone``; history is
    everything strictly before that instant, so rows stamped at or after it are quarantined.
    ``timezone``: IANA zone in which naive timestamps of the export are read (stored as UTC).
    ``max_reject_share``: the run stops when a table quarantines more than this share (0..1) of
    its rows. ``threads``: DuckDB threads (the machine is shared; keep it small).
    """

    model_config = ConfigDict(extra="forbid")

    export_date: dt.date
    timezone: str = "UTC"
    max_reject_share: float = Field(0.05, ge=0.0, le=1.0)
    threads: int = Field(2, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/London)") from e
        return value

    @property
    def export_at(self) -> dt.datetime:
        """The export instant in UTC: 00:00 of ``export_date`` in ``timezone``."""
        local = dt.datetime.combine(self.export_date, dt.time(0), tzinfo=zoneinfo.ZoneInfo(self.timezone))
        return local.astimezone(dt.UTC)


class IngestError(ContractError):
    """A schema-level failure that stops the run; the message names the file and the column."""


class RejectShareError(IngestError):
    """A table quarantined more than ``ingest.max_reject_share`` of its rows."""


@dataclass
class TableResult:
    """The outcome of ingesting one table: clean rows, quarantine rows and the accounting."""

    table: str
    source_file: str
    clean: pa.Table
    quarantine: pa.Table
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def reject_share(self) -> float:
        """Share of rows read that went to quarantine (0 for an empty table)."""
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def accounting(self) -> dict[str, Any]:
        return {
            "source_file": self.source_file,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_share": round(self.reject_share, 6),
            "quarantined_by_rule": dict(sorted(self.quarantined_by_rule.items())),
        }


@dataclass
class IngestResult:
    """Every table's result plus the export instant they were judged against."""

    tables: dict[str, TableResult]
    params: IngestParams

    def report(self) -> dict[str, Any]:
        """The ingest report (``ingest_report.json``): accounting per table, export date and zone."""
        return {
            "export_date": self.params.export_date.isoformat(),
            "timezone": self.params.timezone,
            "export_at_utc": self.params.export_at.isoformat(),
            "max_reject_share": self.params.max_reject_share,
            "tables": {name: r.accounting() for name, r in self.tables.items()},
        }


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def locate_sources(raw_dir: Path, mapping: ExportMapping) -> dict[str, Path | None]:
    """Find each contract table's file in ``raw_dir``: the mapping's ``file`` or ``<table>.csv|.parquet``.

    A missing required table raises :class:`IngestError` naming the file looked for; the optional
    contacts table maps to ``None`` when absent.
    """
    if not raw_dir.is_dir():
        raise IngestError(f"raw export folder not found: {raw_dir}")
    found: dict[str, Path | None] = {}
    for name in TABLE_ORDER:
        tm = mapping.table(name)
        if tm.file is not None:
            candidates = [raw_dir / tm.file]
        else:
            candidates = [raw_dir / f"{name}.csv", raw_dir / f"{name}.parquet"]
        present = [p for p in candidates if p.is_file()]
        if len(present) > 1:
            raise IngestError(f"table {name!r}: both {present[0]} and {present[1]} exist; keep one")
        if not present and not RAW_TABLES[name].optional_table:
            raise IngestError(f"table {name!r}: file not found: {' or '.join(str(c) for c in candidates)}")
        found[name] = present[0] if present else None
    return found


def connect(threads: int, timezone: str = "UTC") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a fixed thread count, its session time zone set to ``timezone``.

    The session zone is how naive timestamps are read: casting text without an offset to
    TIMESTAMPTZ interprets it in that zone (ICU), text with an offset keeps its own instant.
    """
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET TimeZone = {_lit(timezone)}")
    return con


def read_csv_header(path: Path, options: CsvOptions) -> list[str]:
    """The column names on line 1 of a CSV file (only this line is parsed in Python)."""
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise IngestError(f"{path}: empty file or empty header line (expected the column names on line 1)")
    encoding = "utf-8-sig" if options.encoding == "utf-8" else options.encoding
    try:
        text = first.decode(encoding).rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise IngestError(f"{path}: header line is not valid {options.encoding}: {e}") from e
    dialect: dict[str, Any] = {"delimiter": options.delimiter, "quotechar": options.quote}
    if options.escape != options.quote:
        dialect.update(escapechar=options.escape, doublequote=False)
    names = next(csv.reader([text], **dialect))
    names = [n if n.strip() else f"column{i + 1}" for i, n in enumerate(names)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise IngestError(f"{path}: header names column(s) {dupes} more than once")
    return names


def newline_offsets(path: Path, chunk_bytes: int = 64 << 20) -> np.ndarray:
    """Byte offsets of every ``\\n`` in a file, found vectorised over 64 MiB chunks."""
    size = path.stat().st_size
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    parts = [np.flatnonzero(data[i : i + chunk_bytes] == 10) + i for i in range(0, size, chunk_bytes)]
    return np.concatenate(parts).astype(np.int64)


def find_blank_lines(path: Path, chunk_bytes: int = 64 << 20, nl: np.ndarray | None = None) -> np.ndarray:
    """1-based numbers of the empty physical lines of a file (``\\n`` or ``\\r\\n`` alone).

    DuckDB's CSV reader skips them but counts them in its line numbers; knowing them lets us turn
    its record numbers into physical line numbers. ``nl``: the file's newline offsets, if known.
    """
    if nl is None:
        nl = newline_offsets(path, chunk_bytes)
    if nl.size == 0:
        return np.zeros(0, dtype=np.int64)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    starts = np.concatenate(([0], nl[:-1] + 1))
    length = nl - starts
    blank = length == 0
    one = np.flatnonzero(length == 1)
    if one.size:
        blank[one] = data[starts[one]] == 13
    return np.flatnonzero(blank).astype(np.int64) + 1


def read_physical_lines(path: Path, nl: np.ndarray, first: int, count: int, encoding: str) -> str:
    """The exact text of physical lines ``first .. first+count-1`` (1-based), undecodable bytes as
    ``\\xNN`` escapes, so a malformed line is quarantined without losing a byte."""
    start = 0 if first <= 1 else int(nl[first - 2]) + 1
    last = first - 1 + count - 1  # index into nl of the last line's end
    end = int(nl[last]) if last < nl.size else path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(start)
        raw = fh.read(max(end - start, 0))
    return raw.decode(encoding, errors="backslashreplace").removesuffix("\r")


def physical_line_segments(
    kept_rows: int,
    embedded_newlines: dict[int, int],
    reject_slots: dict[int, int],
    blank_lines: np.ndarray,
) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """Map DuckDB's record order onto physical line numbers (header = line 1).

    DuckDB numbers records by counting line ends outside quotes (blank lines included, newlines
    inside quoted values not). ``kept_rows`` rows were read in file order, row ``k`` containing
    ``embedded_newlines[k]`` newlines inside quoted values; ``reject_slots`` maps DuckDB's line
    number of each rejected record to the newlines inside it. Returns segments ``(k, line)``,
    meaning rows ``k, k+1, ...`` up to the next segment sit on lines ``line, line+1, ...``, and
    the physical line of each rejected record. Runs in O(events), not O(rows).
    """
    blanks = [int(b) for b in blank_lines if b > 1]
    rejects = sorted(reject_slots)
    multi = sorted(k for k, n in embedded_newlines.items() if n > 0)
    segments: list[tuple[int, int]] = []
    reject_lines: dict[int, int] = {}
    k, slot, line = 0, 2, 2
    bi = ri = mi = 0
    inf = 1 << 62
    while k < kept_rows or ri < len(rejects):
        while bi < len(blanks) and blanks[bi] < line:
            bi += 1
        next_blank = blanks[bi] if bi < len(blanks) else inf
        next_reject = rejects[ri] if ri < len(rejects) else inf
        if next_blank == line:
            bi += 1
            slot += 1
            line += 1
        elif next_reject == slot:
            reject_lines[slot] = line
            line += 1 + reject_slots[slot]
            slot += 1
            ri += 1
        elif k < kept_rows:
            while mi < len(multi) and multi[mi] < k:
                mi += 1
            next_multi = multi[mi] if mi < len(multi) else inf
            n = min(kept_rows - k, next_blank - line, next_reject - slot, next_multi - k + 1)
            segments.append((k, line))
            k += n
            slot += n
            line += n
            if next_multi == k - 1:
                line += embedded_newlines[next_multi]
        else:
            # Rejects left but no rows: blank lines we did not see; resynchronise on DuckDB's count.
            log.warning(
                "line numbers after line %d may be off: unexpected gap before record %d", line, next_reject
            )
            line += next_reject - slot
            slot = next_reject
    return segments, reject_lines


# ------------------------------------------------------------------------------------------------
# SQL helpers
# ------------------------------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class RawTable:
    """A raw export table loaded into DuckDB as text, with its physical line numbers."""

    table: str
    source_file: str
    relation: str  # DuckDB table: every export column as VARCHAR plus _ingest_line
    columns: list[str]
    malformed: list[dict[str, Any]]  # rejected CSV records: line, detail, text


def load_raw_table(con: duckdb.DuckDBPyConnection, table: str, path: Path, tm: TableMapping) -> RawTable:
    """Load one export file (CSV or Parquet) into DuckDB as text, numbering rows by physical line."""
    relation = f"raw_{table}"
    if path.suffix.lower() == ".parquet":
        try:
            names = [
                d[0] for d in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
            ]
        except duckdb.Error as e:
            raise IngestError(f"{path}: not a readable Parquet file: {e}") from e
        cols = ", ".join(f"CAST({_ident(n)} AS VARCHAR) AS {_ident(n)}" for n in names)
        con.execute(
            f"CREATE OR REPLACE TABLE {relation} AS SELECT {cols}, file_row_number + 1 AS {_LINE} "
            f"FROM read_parquet({_lit(str(path))}, file_row_number = true)"
        )
        return RawTable(table, path.name, relation, names, [])
    if path.suffix.lower() != ".csv":
        raise IngestError(f"{path}: unsupported file type (expected .csv or .parquet)")
    opts = tm.csv
    names = read_csv_header(path, opts)
    columns = "{" + ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in names) + "}"
    rejects, scans = f"rejects_{table}", f"reject_scans_{table}"
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {relation}_read AS SELECT * FROM read_csv({_lit(str(path))}, "
            f"header = true, auto_detect = false, columns = {columns}, delim = {_lit(opts.delimiter)}, "
            f"quote = {_lit(opts.quote)}, escape = {_lit(opts.escape)}, encoding = {_lit(opts.encoding)}, "
            f"store_rejects = true, rejects_table = {_lit(rejects)}, rejects_scan = {_lit(scans)}, "
            f"rejects_limit = 0, max_line_size = 16777216)"
        )
    except duckdb.Error as e:
        raise IngestError(f"{path}: cannot be read as CSV: {e}") from e
    kept = con.execute(f"SELECT count(*) FROM {relation}_read").fetchone()
    kept_rows = int(kept[0]) if kept else 0
    # Newlines inside quoted values shift physical lines; only rows that have some are fetched.
    nl_sum = " + ".join(
        f"coalesce(length({_ident(n)}) - length(replace({_ident(n)}, chr(10), '')), 0)" for n in names
    )
    embedded = dict(
        con.execute(
            f"SELECT rowid, {nl_sum} AS n FROM {relation}_read WHERE "
            + " OR ".join(f"contains({_ident(n)}, chr(10))" for n in names)
        ).fetchall()
    )
    rejected = con.execute(
        f"SELECT line, string_agg(DISTINCT error_type::VARCHAR, ', ' ORDER BY error_type::VARCHAR), "
        f"first(error_message ORDER BY column_idx), first(csv_line ORDER BY column_idx) "
        f"FROM {rejects} GROUP BY line ORDER BY line"
    ).fetchall()
    reject_slots: dict[int, int] = {}
    texts: dict[int, tuple[str, str]] = {}
    for slot, kinds, message, text in rejected:
        body = (text or "").strip("\r\n")
        reject_slots[int(slot)] = body.count("\n")
        texts[int(slot)] = (f"{kinds}: {message}", body)
    nl = newline_offsets(path)
    blanks = find_blank_lines(path, nl=nl)
    segments, reject_lines = physical_line_segments(kept_rows, embedded, reject_slots, blanks)
    # Expand the segments into one line number per row, then attach it by position (no join work).
    bounds = np.array([k for k, _ in segments] + [kept_rows], dtype=np.int64)
    offsets = np.array([line - k for k, line in segments], dtype=np.int64)
    lines = np.arange(kept_rows, dtype=np.int64) + np.repeat(offsets, np.diff(bounds))
    con.register(f"{relation}_lines", pa.table({_LINE: lines}))
    con.execute(
        f"CREATE OR REPLACE TABLE {relation} AS "
        f"SELECT * FROM {relation}_read POSITIONAL JOIN {relation}_lines"
    )
    con.unregister(f"{relation}_lines")
    con.execute(f"DROP TABLE {relation}_read")
    malformed = [
        {
            "line": reject_lines[slot],
            "detail": texts[slot][0],
            "text": read_physical_lines(path, nl, reject_lines[slot], 1 + reject_slots[slot], opts.encoding),
        }
        for slot in sorted(texts)
    ]
    return RawTable(table, path.name, relation, names, malformed)


def _text_expr(source: str | None, tm: TableMapping, column: Column, present: set[str]) -> str:
    """SQL for the column's text after value mapping; blank -> NULL."""
    if source is None or source not in present:
        return "CAST(NULL AS VARCHAR)"
    col = _ident(source)
    text = f"CASE WHEN trim({col}) = '' THEN NULL ELSE {col} END"
    codes = tm.values.get(column.name)
    if codes:
        whens = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in codes.items())
        text = f"CASE {text} {whens} ELSE {text} END"
    return text


def _typed_expr(text: str, column: Column, tm: TableMapping) -> str:
    """SQL parsing the text into the contract type; NULL when it does not parse.

    Timestamps without an offset are read in the session time zone (see :func:`connect`).
    """
    v = f"trim({text})"
    if column.kind == "string":
        return text
    if column.kind == "int":
        return f"CASE WHEN regexp_full_match({v}, '[+-]?[0-9]+') THEN TRY_CAST({v} AS BIGINT) END"
    if column.kind == "float":
        num = f"replace({v}, ',', '.')" if tm.csv.decimal_separator == "," else v
        return f"CASE WHEN isfinite(TRY_CAST({num} AS DOUBLE)) THEN TRY_CAST({num} AS DOUBLE) END"
    if column.kind == "bool":
        return f"TRY_CAST({v} AS BOOLEAN)"
    if tm.timestamp_format:
        fmt = _lit(tm.timestamp_format)
        if "%z" in tm.timestamp_format or "%Z" in tm.timestamp_format:
            return f"CAST(try_strptime({v}, {fmt}) AS TIMESTAMPTZ)"
        return f"CAST(CAST(try_strptime({v}, {fmt}) AS TIMESTAMP) AS TIMESTAMPTZ)"
    return f"TRY_CAST({v} AS TIMESTAMPTZ)"


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    return row[0] if row else None


def validate_table(
    con: duckdb.DuckDBPyConnection,
    raw: RawTable,
    contract: Table,
    tm: TableMapping,
    params: IngestParams,
) -> TableResult:
    """Apply every rule to one loaded table; leaves ``clean_<table>`` in DuckDB and returns the result.

    ``unknown_client`` is checked against ``clean_clients``, so clients must be validated first.
    Raises :class:`IngestError` (naming the file and the column) when a required column is
    missing or a typed column has values of which none parses.
    """
    name, source = contract.name, raw.source_file
    present = set(raw.columns)
    sources: dict[str, str | None] = {}
    for c in contract.columns:
        src = tm.source_column(c.name)
        if src is not None and src not in present and c.required:
            alias = f" (contract column {name}.{c.name})" if src != c.name else ""
            raise IngestError(f"{source}: table {name!r}: missing required column {src!r}{alias}")
        sources[c.name] = src if src in present else None
    extra = sorted(present - {s for s in sources.values() if s})
    if extra:
        log.info("%s: ignoring column(s) not in the %s contract: %s", source, name, ", ".join(extra))

    # Two levels so each mapped text expression is computed once and parsed from a plain column.
    texts = [f"{_LINE} AS line"]
    parsed = ["line", "row_hash"]
    for i, c in enumerate(contract.columns):
        texts.append(f"{_text_expr(sources[c.name], tm, c, present)} AS v{i}")
        parsed += [f"v{i}", f"{_typed_expr(f'v{i}', c, tm)} AS t{i}"]
    all_raw = ", ".join(_ident(n) for n in raw.columns)
    texts.append(f"hash({all_raw}) AS row_hash")
    typed = f"typed_{name}"
    con.execute(
        f"CREATE OR REPLACE TABLE {typed} AS SELECT {', '.join(parsed)} "
        f"FROM (SELECT {', '.join(texts)} FROM {raw.relation})"
    )

    idx = {c.name: i for i, c in enumerate(contract.columns)}
    for c in contract.columns:
        i = idx[c.name]
        if c.kind == "string" or sources[c.name] is None:
            continue
        row = con.execute(f"SELECT count(v{i}), count(t{i}), min(v{i}) FROM {typed}").fetchone()
        n_text, n_typed, example = row if row else (0, 0, None)
        if n_text and not n_typed:
            hint = " (set timestamp_format in the mapping file)" if c.kind == "timestamp" else ""
            raise IngestError(
                f"{source}: column {sources[c.name]!r} ({name}.{c.name}) cannot be read as {c.kind}: "
                f"none of its {n_text} values parses, e.g. {example!r}{hint}"
            )

    export_at = _lit(params.export_at.strftime("%Y-%m-%d %H:%M:%S+00:00"))
    checks: list[str] = []

    def check(column: str, rule: str, where: str, detail: str, value: str | None = None) -> None:
        val = value if value is not None else (f"v{idx[column]}" if column else "''")
        checks.append(
            f'SELECT line, {_lit(column)} AS "column", {_lit(rule)} AS rule, '
            f"coalesce({val}, '') AS value, {detail} AS detail FROM {typed} WHERE {where}"
        )

    for c in contract.columns:
        i = idx[c.name]
        where_src = f" (export column {sources[c.name]!r})" if sources[c.name] not in (None, c.name) else ""
        if not c.nullable and c.default is None:
            check(c.name, RULE_REQUIRED, f"v{i} IS NULL", _lit(f"{c.name} is required{where_src}"))
        if c.kind != "string":
            fmt = f", format {tm.timestamp_format!r}" if c.kind == "timestamp" and tm.timestamp_format else ""
            check(
                c.name,
                RULE_TYPE,
                f"v{i} IS NOT NULL AND t{i} IS NULL",
                _lit(f"not a {c.kind}{fmt}{where_src}"),
            )
        if c.min_value is not None or c.max_value is not None:
            bad = []
            if c.min_value is not None:
                bad.append(f"t{i} {'<=' if c.min_exclusive else '<'} {c.min_value}")
            if c.max_value is not None:
                bad.append(f"t{i} > {c.max_value}")
            check(c.name, RULE_RANGE, f"t{i} IS NOT NULL AND ({' OR '.join(bad)})", _lit(f"must be {c.rule}"))
        if c.allowed:
            codes = ", ".join(_lit(a) for a in c.allowed)
            check(
                c.name,
                RULE_ALLOWED,
                f"t{i} IS NOT NULL AND t{i} NOT IN ({codes})",
                _lit(f"must be one of {'|'.join(c.allowed)}{where_src}"),
            )
        if c.kind == "timestamp" and c.name not in FUTURE_OK:
            check(
                c.name,
                RULE_AFTER_EXPORT,
                f"t{i} >= TIMESTAMPTZ {export_at}",
                _lit(
                    f"at or after the export instant {params.export_at.isoformat()} "
                    f"({params.export_date} in {params.timezone})"
                ),
            )
    if "resolved_at" in idx and "created_at" in idx:
        r, cr = idx["resolved_at"], idx["created_at"]
        check("resolved_at", RULE_RESOLVED_BEFORE_CREATED, f"t{r} < t{cr}", f"'created_at is ' || v{cr}")
    if "client_id" in contract.references:
        ci = idx["client_id"]
        check(
            "client_id",
            RULE_UNKNOWN_CLIENT,
            f"t{ci} IS NOT NULL AND t{ci} NOT IN (SELECT client_id FROM clean_clients)",
            "'no kept client with this client_id'",
        )
    violations = f"violations_{name}"
    con.execute(f"CREATE OR REPLACE TABLE {violations} AS {' UNION ALL '.join(checks)}")
    # Exact duplicate rows: a hash finds the (usually few) candidates, then the raw values decide,
    # so a hash collision can never quarantine a row that merely shares a hash.
    duplicates = f"duplicates_{name}"
    con.execute(
        f"CREATE OR REPLACE TABLE {duplicates} AS SELECT line, first_line FROM ("
        f"SELECT {_LINE} AS line, min({_LINE}) OVER (PARTITION BY {all_raw}) AS first_line "
        f"FROM {raw.relation} WHERE {_LINE} IN (SELECT line FROM ("
        f"SELECT line, count(*) OVER (PARTITION BY row_hash) AS n FROM {typed}) WHERE n > 1)"
        f") WHERE line <> first_line"
    )
    con.execute(
        f"INSERT INTO {violations} SELECT line, '', {_lit(RULE_DUPLICATE_ROW)}, '', "
        f"'same row as line ' || first_line FROM {duplicates}"
    )
    if contract.key:
        ki = idx[contract.key]
        con.execute(
            f"INSERT INTO {violations} SELECT line, {_lit(contract.key)}, {_lit(RULE_DUPLICATE_ID)}, v{ki}, "
            f"'id already used on line ' || first_id_line || ' (first valid occurrence kept)' FROM ("
            f"SELECT line, v{ki}, first_value(line) OVER (PARTITION BY t{ki} ORDER BY line) AS first_id_line "
            f"FROM {typed} WHERE line NOT IN (SELECT line FROM {violations})"
            f") WHERE line <> first_id_line"
        )

    out_cols = []
    for c in contract.columns:
        i = idx[c.name]
        expr = f"coalesce(t{i}, {str(c.default).lower()})" if c.default is not None else f"t{i}"
        out_cols.append(f"CAST({expr} AS {DUCKDB_TYPES[c.kind]}) AS {_ident(c.name)}")
    # sorted as the contract says (ties in file order): the features stage groups by client
    order = ", ".join([*(f"t{idx[c]}" for c in contract.sort_by), "line"])
    con.execute(
        f"CREATE OR REPLACE TABLE clean_{name} AS SELECT {', '.join(out_cols)} FROM {typed} "
        f"WHERE line NOT IN (SELECT line FROM {violations}) ORDER BY {order}"
    )

    malformed = pa.table(
        {
            "line": pa.array([m["line"] for m in raw.malformed], pa.int64()),
            "detail": pa.array([m["detail"] for m in raw.malformed], pa.string()),
            "text": pa.array([m["text"] for m in raw.malformed], pa.string()),
        }
    )
    con.register(f"malformed_{name}", malformed)
    raw_json = "json_object(" + ", ".join(f"{_lit(n)}, r.{_ident(n)}" for n in raw.columns) + ")"
    quarantine = con.sql(
        f'SELECT {_lit(source)} AS source_file, q.line, q."column", q.rule, q.value, q.detail, '
        f"CAST({raw_json} AS VARCHAR) AS raw_row "
        f"FROM {violations} q JOIN {raw.relation} r ON r.{_LINE} = q.line "
        f"UNION ALL SELECT {_lit(source)}, line, '', {_lit(RULE_MALFORMED)}, text, detail, "
        f"to_json(text)::VARCHAR "
        f'FROM malformed_{name} ORDER BY line, rule, "column"'
    ).to_arrow_table()

    read_rows = int(_scalar(con, f"SELECT count(*) FROM {typed}")) + len(raw.malformed)
    kept = int(_scalar(con, f"SELECT count(*) FROM clean_{name}"))
    bad_rows = int(_scalar(con, f"SELECT count(DISTINCT line) FROM {violations}")) + len(raw.malformed)
    if read_rows != kept + bad_rows:  # a broken invariant is a bug here, not bad data
        raise RuntimeError(
            f"{source}: accounting broken: read {read_rows} != kept {kept} + quarantined {bad_rows}"
        )
    by_rule = dict(con.execute(f"SELECT rule, count(*) FROM {violations} GROUP BY rule").fetchall())
    if raw.malformed:
        by_rule[RULE_MALFORMED] = len(raw.malformed)
    clean = con.sql(f"SELECT * FROM clean_{name}").to_arrow_table()
    return TableResult(
        table=name,
        source_file=source,
        clean=clean.cast(contract_schema(contract)),
        quarantine=quarantine.cast(QUARANTINE_SCHEMA),
        rows_read=read_rows,
        rows_kept=kept,
        rows_quarantined=bad_rows,
        quarantined_by_rule={str(k): int(v) for k, v in by_rule.items()},
    )


def contract_schema(contract: Table) -> pa.Schema:
    """The Arrow schema of a clean table (timestamps as ``timestamp[us, tz=UTC]``)."""
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.kind]) for c in contract.columns])


def empty_result(contract: Table) -> TableResult:
    """The result for an optional table absent from the export: empty, with the right schema."""
    return TableResult(
        table=contract.name,
        source_file="",
        clean=contract_schema(contract).empty_table(),
        quarantine=QUARANTINE_SCHEMA.empty_table(),
        rows_read=0,
        rows_kept=0,
        rows_quarantined=0,
    )


def ingest_export(
    sources: dict[str, Path | None], mapping: ExportMapping, params: IngestParams
) -> IngestResult:
    """Validate every table of an export; clients first, since the others must reference kept clients.

    ``sources`` comes from :func:`locate_sources`. Raises :class:`IngestError` on schema-level
    problems; the reject-share limit is checked separately (:func:`check_reject_shares`) so the
    caller can still write the quarantine files that explain the failure.
    """
    con = connect(params.threads, params.timezone)
    try:
        results: dict[str, TableResult] = {}
        for name in TABLE_ORDER:
            contract = RAW_TABLES[name]
            path = sources.get(name)
            if path is None:
                results[name] = empty_result(contract)
                continue
            tm = mapping.table(name)
            raw = load_raw_table(con, name, path, tm)
            results[name] = validate_table(con, raw, contract, tm, params)
            log.info(
                "%s: read %d, kept %d, quarantined %d",
                name,
                results[name].rows_read,
                results[name].rows_kept,
                results[name].rows_quarantined,
            )
        return IngestResult(tables=results, params=params)
    finally:
        con.close()


def check_reject_shares(result: IngestResult) -> None:
    """Raise :class:`RejectShareError` naming every table whose quarantine share exceeds the limit."""
    limit = result.params.max_reject_share
    over = [r for r in result.tables.values() if r.reject_share > limit]
    if over:
        parts = ", ".join(
            f"{r.table} ({r.source_file}): {r.rows_quarantined} of {r.rows_read} rows = {r.reject_share:.1%}"
            for r in over
        )
        raise RejectShareError(f"quarantine share above ingest.max_reject_share = {limit:.1%}: {parts}")


def report_json(result: IngestResult) -> str:
    """The ingest report as pretty JSON text."""
    return json.dumps(result.report(), indent=2) + "\n"
