"""Stage `features`: clean tables -> point-in-time feature table for every cutoff.

Reads ``CLEAN/{clients,orders,complaints,contacts}.parquet``, builds the features and labels of
``features.build`` on DuckDB (or PySpark when ``features.backend: pyspark``) and writes
``OUT/features.parquet`` (one row per client and cutoff) and ``OUT/features_summary.json``
(rows per cutoff and state, label base rates), both atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import typer

from features.config import FeatureParams

log = logging.getLogger(__name__)


def resolve_cutoffs(
    params: FeatureParams, export_date: dt.date, explicit: list[dt.date] | None = None
) -> list[dt.date]:
    """The cutoff dates to build: ``explicit`` if given, else params cutoffs plus the scoring cutoff.

    The scoring cutoff is ``features.scoring_cutoff`` or, when null, the export date. A cutoff
    after the export date is an error: nothing after the export is known.
    """
    if explicit:
        days = sorted(set(explicit))
    else:
        scoring = params.scoring_cutoff or export_date
        days = sorted({*params.cutoff_dates(), scoring})
    late = [d for d in days if d > export_date]
    if late:
        raise ValueError(
            f"features: cutoff(s) {', '.join(d.isoformat() for d in late)} after the export date "
            f"{export_date.isoformat()} (ingest.export_date)"
        )
    return days


def _write_parquet_atomically(con: Any, expr: Any, path: Path, backend: str) -> Path:
    """Write ``expr`` to a temp file beside ``path``; return the temp path (caller replaces)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    if backend == "duckdb":
        con.to_parquet(expr, tmp)
    else:
        import pyarrow.parquet as pq

        pq.write_table(expr.to_pyarrow(), tmp)
    return tmp


def run_features(
    clean: Path,
    out: Path,
    cutoffs: list[dt.date],
    params: FeatureParams,
    *,
    export_date: dt.date,
    threads: int = 2,
    memory_limit: str = "2GB",
) -> dict[str, Any]:
    """Build and write the feature table and its summary; return the summary."""
    from features.tables import connect

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spill.", dir=out) as spill:
        con = connect(params.backend, threads=threads, memory_limit=memory_limit, temp_directory=Path(spill))
        try:
            return _build_and_write(con, clean, out, cutoffs, params, export_date=export_date)
        finally:
            con.disconnect()


def _build_and_write(
    con: Any, clean: Path, out: Path, cutoffs: list[dt.date], params: FeatureParams, *, export_date: dt.date
) -> dict[str, Any]:
    from features.build import build_feature_table, summarize_feature_table
    from features.contract import check_feature_table
    from features.tables import load_clean_tables

    tables = load_clean_tables(con, clean)
    expr = build_feature_table(con, tables, cutoffs, params, export_date=export_date)
    check_feature_table(expr.columns, source=str(out / "features.parquet"))
    target = out / "features.parquet"
    tmp = _write_parquet_atomically(con, expr, target, params.backend)
    try:
        summary = summarize_feature_table(con.read_parquet(tmp))
        summary.update(
            backend=params.backend,
            export_date=export_date.isoformat(),
            horizon_days=params.horizon_days,
        )
        fd, tmp_json = tempfile.mkstemp(prefix=".features_summary.json.", suffix=".tmp", dir=out)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
        tmp.replace(target)
        Path(tmp_json).replace(out / "features_summary.json")
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%d rows, %d cutoffs)", target, summary["rows"], len(cutoffs))
    return summary


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise typer.BadParameter(f"--cutoff {text!r} is not a date YYYY-MM-DD") from e


def command(
    clean: Path = typer.Option(..., "--clean", help="Folder with the clean tables (ingest output)."),
    out: Path = typer.Option(..., "--out", help="Folder for features.parquet and features_summary.json."),
    cutoff: list[str] = typer.Option(
        [], "--cutoff", help="Cutoff date YYYY-MM-DD (repeatable); default: params cutoffs + scoring cutoff."
    ),
    params_path: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read."),
) -> None:
    """Build point-in-time features and labels for every cutoff.

    Reads params.yaml `features` and `ingest.export_date`.
    """
    from pipeline.params import load_params

    params = load_params(params_path)
    export_date = params.ingest.export_date
    days = resolve_cutoffs(params.features, export_date, [_parse_day(c) for c in cutoff] or None)
    summary = run_features(clean, out, days, params.features, export_date=export_date)
    typer.echo(f"features: {summary['rows']} rows over {len(days)} cutoffs -> {out / 'features.parquet'}")
