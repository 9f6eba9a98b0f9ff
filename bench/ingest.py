"""Ingest speed on a large export, as a ratio to plain DuckDB `read_csv` of the same files.

Writes N orders (default 1,000,000) for N/10 clients with about 0.1% defective rows (bad amount,
unknown client, wrong field count, duplicate row), then times, in the same run:
  baseline: DuckDB reads every CSV into a table (all_varchar), nothing else;
  ingest:   the full `ingest_export` (parse, every rule, line numbers, Arrow results).
Run from the repo root: .venv/bin/python -m bench.ingest [rows] [threads]
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipeline.ingest_rules import IngestParams, ingest_export, locate_sources
from pipeline.mapping import ExportMapping


def write_export(raw: Path, rows: int) -> None:
    """A synthetic export with ~0.1% defects (deterministic)."""
    raw.mkdir(parents=True)
    con = duckdb.connect()
    clients = max(rows // 10, 1)
    con.execute(
        f"COPY (SELECT 'c' || i AS client_id, "
        f"TIMESTAMP '2020-01-01' + INTERVAL (i % 1000) DAY AS created_at, "
        f"'m' || (i % 50) AS manager_id, 'retail' AS segment, false AS do_not_contact "
        f"FROM range({clients}) t(i)) TO '{raw / 'clients.csv'}' (HEADER)"
    )
    con.execute(
        f"COPY (SELECT 'o' || i AS order_id, "
        f"CASE WHEN i % 1000 = 1 THEN 'nobody' ELSE 'c' || (i % {clients}) END AS client_id, "
        f"strftime(TIMESTAMP '2021-01-01' + INTERVAL (i % 1400) DAY + INTERVAL (i % 86400) SECOND, "
        f"'%Y-%m-%d %H:%M:%S') AS ordered_at, "
        f"CASE WHEN i % 1000 = 2 THEN 'n/a' "
        f"ELSE CAST(round(10 + (i % 997) * 1.37, 2) AS VARCHAR) END AS amount, "
        f"CAST(round((i % 97) - 20.5, 2) AS VARCHAR) AS margin, "
        f"CASE i % 10 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'returned' ELSE 'completed' END AS status, "
        f"'' AS due_at, '' AS paid_at FROM range({rows}) t(i)) TO '{raw / 'orders_body.csv'}' (HEADER)"
    )
    con.close()
    # malformed lines and exact duplicates, appended as text
    body = (raw / "orders_body.csv").read_text().splitlines()
    out = [body[0]]
    for n, line in enumerate(body[1:]):
        out.append(line)
        if n % 1000 == 3:
            out.append(line)  # duplicate_row
        if n % 1000 == 4:
            out.append(line + ",surplus")  # malformed_line
    (raw / "orders.csv").write_text("\n".join(out) + "\n")
    (raw / "orders_body.csv").unlink()
    (raw / "complaints.csv").write_text(
        "complaint_id,client_id,created_at,severity,category,human_factor,resolved_at\n"
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        raw = tmp / "raw"
        write_export(raw, rows)
        size_mb = sum(p.stat().st_size for p in raw.iterdir()) / 1e6

        t0 = time.perf_counter()
        con = duckdb.connect()
        con.execute(f"SET threads = {threads}")
        for f in raw.iterdir():
            con.execute(
                f"CREATE TABLE {f.stem} AS SELECT * FROM read_csv('{f}', all_varchar = true, header = true)"
            )
        con.close()
        baseline = time.perf_counter() - t0

        mapping = ExportMapping()
        params = IngestParams(
            export_date=dt.date(2025, 1, 1), timezone="Europe/Berlin", max_reject_share=1.0, threads=threads
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = ingest_export(locate_sources(raw, mapping), mapping, params)
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        orders = result.tables["orders"]
        clients = result.tables["clients"].rows_read
        print(f"export: {orders.rows_read:,} order rows, {clients:,} clients, {size_mb:.0f} MB")
        print(f"orders quarantined by rule: {orders.quarantined_by_rule}")
        print(f"baseline read_csv: {baseline:.2f} s wall; ingest: {took:.2f} s wall, {cpu:.2f} s CPU")
        print(f"ratio ingest / baseline (wall): {took / baseline:.1f}x ({threads} threads)")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
