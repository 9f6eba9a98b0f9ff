"""`comeback ingest`: raw CRM export -> validated clean Parquet, quarantine files and a report.

Thin stage: locate the files, load the mapping and params, call :mod:`pipeline.ingest_rules`,
write every output atomically (temp file in the same folder, then ``os.replace``) and print the
per-table accounting. The run fails (exit 1) on schema-level problems and when a table's
quarantine share exceeds ``ingest.max_reject_share``; in that case the quarantine files and the
report are still written (they explain the failure) and stale clean tables are removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table as RichTable

from models.io import write_atomic
from pipeline.ingest_rules import (
    RULES,
    TABLE_ORDER,
    IngestError,
    IngestResult,
    check_reject_shares,
    ingest_export,
    locate_sources,
    report_json,
)
from pipeline.mapping import MappingError, load_mapping
from pipeline.params import ParamsError, load_params

log = logging.getLogger(__name__)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write an Arrow table as zstd Parquet, atomically."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def write_csv(table: pa.Table, path: Path) -> None:
    """Write an Arrow table as CSV with a header (also when empty), atomically."""
    write_atomic(path, lambda tmp: pacsv.write_csv(table, tmp))


def write_outputs(result: IngestResult, out: Path, *, clean: bool) -> None:
    """Write quarantine CSVs, the report and (when ``clean``) the clean Parquet tables to ``out``."""
    for name, r in result.tables.items():
        write_csv(r.quarantine, out / "quarantine" / f"{name}.csv")
    text = report_json(result)

    def _write_report(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    write_atomic(out / "ingest_report.json", _write_report)
    for name, r in result.tables.items():
        target = out / f"{name}.parquet"
        if clean:
            write_parquet(r.clean, target)
        else:
            target.unlink(missing_ok=True)


def accounting_table(result: IngestResult) -> RichTable:
    """The per-table accounting as a Rich table: read = kept + quarantined, and counts by rule."""
    t = RichTable(title=f"ingest: export date {result.params.export_date} ({result.params.timezone})")
    for col in ("table", "file", "read", "kept", "quarantined", "share", "by rule"):
        numeric = col in ("read", "kept", "quarantined", "share")
        t.add_column(col, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    for name in TABLE_ORDER:
        r = result.tables[name]
        rules = ", ".join(
            f"{k} {v}" for k, v in sorted(r.quarantined_by_rule.items(), key=lambda kv: RULES.index(kv[0]))
        )
        t.add_row(
            name,
            r.source_file or "(absent)",
            f"{r.rows_read:,}",
            f"{r.rows_kept:,}",
            f"{r.rows_quarantined:,}",
            f"{r.reject_share:.2%}",
            rules or "-",
        )
    return t


def command(
    raw: Path = typer.Option(
        ..., "--raw", help="Folder with the raw export (clients, orders, complaints[, contacts])."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for clean Parquet, quarantine/ and ingest_report.json."
    ),
    mapping: Path | None = typer.Option(None, "--mapping", help="YAML mapping of the CRM's names and codes."),
    params: Path = typer.Option(
        Path("params.yaml"), "--params", help="Params file (reads its ingest: section)."
    ),
) -> None:
    """Validate a raw CRM export against the table contract; quarantine bad rows, never drop them."""
    console = Console()
    try:
        settings = load_params(params).ingest
        export_mapping = load_mapping(mapping)
        sources = locate_sources(raw, export_mapping)
        result = ingest_export(sources, export_mapping, settings)
    except (IngestError, MappingError, ParamsError) as e:
        console.print(f"[red]ingest failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
    try:
        check_reject_shares(result)
    except IngestError as e:
        write_outputs(result, out, clean=False)
        console.print(accounting_table(result))
        console.print(f"[red]ingest failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
    write_outputs(result, out, clean=True)
    console.print(accounting_table(result))
    console.print(f"clean tables, quarantine/ and ingest_report.json written to {out}", highlight=False)
