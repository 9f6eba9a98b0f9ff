"""Clean CRM tables as Ibis tables on a backend (DuckDB by default, PySpark by configuration).

The feature definitions in this package are Ibis expressions; this module supplies their inputs:
a connection with explicit thread and memory limits, the four clean tables read lazily from
Parquet (checked against the contract so a missing column names the file), and the table of
cutoffs with every window boundary precomputed in Python so the SQL only compares timestamps.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.datatypes as dt_ibis
import ibis.expr.types as ir
import pandas as pd
from ibis.backends import BaseBackend

from features.contract import RAW_TABLES, ContractError, Table, check_columns

log = logging.getLogger(__name__)

#: Ibis type of each contract kind in the clean tables.
IBIS_TYPES: dict[str, str] = {
    "string": "string",
    "int": "int64",
    "float": "float64",
    "bool": "boolean",
    "timestamp": "timestamp('UTC')",
}

#: Schema of the cutoffs table handed to the feature definitions (see ``cutoffs_table``).
CUTOFF_TIMESTAMP = "timestamp('UTC')"


@dataclass(frozen=True)
class CleanTables:
    """The four clean CRM tables as Ibis tables on one backend (contacts may be empty)."""

    clients: ir.Table
    orders: ir.Table
    complaints: ir.Table
    contacts: ir.Table


def connect(
    backend: Literal["duckdb", "pyspark"] = "duckdb",
    *,
    threads: int = 2,
    memory_limit: str = "2GB",
    temp_directory: Path | None = None,
    spark_session: Any = None,
) -> BaseBackend:
    """Open an Ibis backend with explicit resource limits.

    DuckDB gets ``threads`` worker threads, a ``memory_limit`` (it spills to ``temp_directory``
    beyond it) and the UTC time zone, so timestamp arithmetic never depends on the machine.
    PySpark uses ``spark_session`` when given, else a local session with ``threads`` cores, few
    shuffle partitions and a UTC session time zone.
    """
    if backend == "duckdb":
        con = ibis.duckdb.connect(threads=threads, memory_limit=memory_limit)
        con.raw_sql("SET TimeZone = 'UTC'")
        # The feature query left-joins narrow per-source aggregates onto the (client, cutoff) rows.
        # DuckDB's build-side optimiser otherwise hashes the growing wide side at every join, which
        # does not fit the memory limit at 1M clients; keeping the aggregates as build sides does.
        con.raw_sql("SET disabled_optimizers = 'build_side_probe_side'")
        if temp_directory is not None:
            con.raw_sql(f"SET temp_directory = '{temp_directory}'")
        return con
    if backend == "pyspark":
        session = spark_session if spark_session is not None else local_spark_session(threads=threads)
        return ibis.pyspark.connect(session)
    raise ValueError(f"features.backend must be 'duckdb' or 'pyspark', got {backend!r}")


def local_spark_session(*, threads: int = 2, shuffle_partitions: int = 4, small: bool = False) -> Any:
    """A local SparkSession (``local[threads]``) in UTC with few shuffle partitions.

    ``small`` tunes it for tiny data (tests): no whole-stage code generation and a JVM that
    skips its optimising compiler, which cuts the start-up cost of a wide query from about a
    minute to seconds.
    """
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(f"local[{threads}]")
        .appName("comeback-features")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(threads))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "false")
    )
    if small:
        builder = (
            builder.config("spark.sql.codegen.wholeStage", "false")
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        )
    return builder.getOrCreate()


@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(ts: dt_ibis.Timestamp(timezone="UTC")) -> dt_ibis.int64:  # type: ignore[valid-type]
    """DuckDB's epoch_us: microseconds since 1970 of a TIMESTAMPTZ, without a time-zone cast."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_unix_micros(ts: dt_ibis.Timestamp(timezone="UTC")) -> dt_ibis.int64:  # type: ignore[valid-type]
    """Spark's unix_micros: microseconds since 1970 of a timestamp."""


def epoch_seconds(ts: ir.TimestampValue, backend: str) -> ir.FloatingValue:
    """Epoch seconds (double, microsecond precision) of a UTC timestamp on ``backend``.

    Ibis' own epoch_seconds casts TIMESTAMPTZ to TIMESTAMP on DuckDB, a time-zone conversion
    about ten times slower than the arithmetic, and truncates to whole seconds on Spark; the
    backends' microsecond functions are fast and exact on both.
    """
    fn = _spark_unix_micros if backend == "pyspark" else _duckdb_epoch_us
    return fn(ts).cast("float64") / 1_000_000.0


def _cast_to_contract(table: ir.Table, spec: Table, backend: str) -> ir.Table:
    """Select the contract columns in contract order with contract types; add optional defaults.

    Every timestamp column ``x_at`` gets a twin ``x_at_s`` with its epoch seconds (double), so the
    feature definitions compute durations without per-backend functions.
    """
    cols: dict[str, ir.Value] = {}
    for c in spec.columns:
        if c.name in table.columns:
            cols[c.name] = table[c.name].cast(IBIS_TYPES[c.kind])
        else:
            cols[c.name] = ibis.literal(c.default, type=IBIS_TYPES[c.kind])
    for c in spec.columns:
        if c.kind == "timestamp":
            cols[f"{c.name}_s"] = epoch_seconds(cols[c.name], backend)
    return table.select(**cols)


def empty_table(name: str, backend: str = "duckdb") -> ir.Table:
    """An empty table with the contract schema of ``name`` (used when contacts are absent)."""
    spec = RAW_TABLES[name]
    schema = ibis.schema({c.name: IBIS_TYPES[c.kind] for c in spec.columns})
    return _cast_to_contract(ibis.memtable(schema.to_pyarrow().empty_table()), spec, backend)


def load_clean_tables(con: BaseBackend, clean_dir: Path) -> CleanTables:
    """Register ``clean_dir/{clients,orders,complaints,contacts}.parquet`` on ``con`` (lazily).

    Fails with a ContractError naming the file when a table is missing or lacks a required column.
    A missing contacts file yields an empty contacts table (contacts are optional).
    """
    out: dict[str, ir.Table] = {}
    for name, spec in RAW_TABLES.items():
        path = clean_dir / f"{name}.parquet"
        if not path.exists():
            if spec.optional_table:
                log.info("no %s: using an empty %s table", path, name)
                out[name] = empty_table(name, con.name)
                continue
            raise ContractError(f"table {name!r}: clean file not found: {path}")
        raw = con.read_parquet(path, table_name=f"comeback_clean_{name}")
        check_columns(spec, raw.columns, source=str(path))
        out[name] = _cast_to_contract(raw, spec, con.name)
    return CleanTables(**out)


def tables_from_frames(frames: dict[str, pd.DataFrame], backend: str = "duckdb") -> CleanTables:
    """Clean tables from in-memory pandas frames (tests, notebooks); contacts may be omitted."""
    out: dict[str, ir.Table] = {}
    for name, spec in RAW_TABLES.items():
        frame = frames.get(name)
        if frame is None:
            if spec.optional_table:
                out[name] = empty_table(name, backend)
                continue
            raise ContractError(f"table {name!r}: no frame given")
        check_columns(spec, frame.columns, source="frame")
        schema = {c.name: IBIS_TYPES[c.kind] for c in spec.columns if c.name in frame.columns}
        out[name] = _cast_to_contract(ibis.memtable(frame[list(schema)], schema=schema), spec, backend)
    return CleanTables(**out)


def cutoff_instant(day: dt.date) -> dt.datetime:
    """The snapshot instant of cutoff date ``day``: 00:00 UTC of that day."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def cutoffs_frame(
    cutoffs: Sequence[dt.date],
    *,
    windows_days: Sequence[int],
    horizon_days: int,
    export_date: dt.date,
    constants: Mapping[dt.date, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """The cutoffs with every boundary the definitions need, computed once here.

    Columns: ``cutoff_id`` (0..n-1 in date order), ``cutoff_at`` (UTC), ``cutoff_s`` (epoch
    seconds), ``start_{w}`` (= cutoff_at - w days, for every window w), ``label_end_at``
    (= cutoff_at + horizon_days days) and ``label_defined`` (the label window ends on or before
    the export instant, so the outcome is fully observed). ``constants`` adds per-cutoff float
    columns (name -> value for each date, the same names at every date): the fitted rhythm
    constants enter the feature expression this way, as data of the cutoff rather than literals
    of the query.
    """
    days = sorted(set(cutoffs))
    if not days:
        raise ValueError("features: no cutoff dates given")
    export_at = cutoff_instant(export_date)
    rows = []
    for i, day in enumerate(days):
        at = cutoff_instant(day)
        label_end = at + dt.timedelta(days=horizon_days)
        row: dict[str, Any] = {"cutoff_id": i, "cutoff_at": at, "cutoff_s": at.timestamp()}
        for w in windows_days:
            row[f"start_{w}"] = at - dt.timedelta(days=w)
        row["label_end_at"] = label_end
        row["label_defined"] = label_end <= export_at
        if constants is not None:
            row.update({name: float(v) for name, v in constants[day].items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col in frame.columns:
        if col == "cutoff_at" or col.startswith("start_") or col == "label_end_at":
            frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame


def cutoffs_table(frame: pd.DataFrame) -> ir.Table:
    """The cutoffs frame of ``cutoffs_frame`` as a (tiny, in-memory) Ibis table."""
    types = {
        c: CUTOFF_TIMESTAMP
        if str(frame[c].dtype).startswith("datetime64")
        else {"cutoff_id": "int64", "label_defined": "boolean"}.get(c, "float64")
        for c in frame.columns
    }
    return ibis.memtable(frame, schema=types)
