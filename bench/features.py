"""Benchmark of the features stage against two baselines measured in the same run.

    python bench/features.py                      # 100k clients (about 1M orders)
    python bench/features.py --clients 1000000    # the reported size: ~10M orders, ~500k complaints

Each measurement runs in its own subprocess, so its peak memory (ru_maxrss) is its own:

* ours-1     the features stage (`run_features`: build_feature_table, Parquet, summary) for one
             cutoff (DuckDB, 2 threads, 2GB memory limit);
* ours-12    the same for 12 monthly cutoffs (built in the stage's batches of at most 1M client
             rows, over gap rows computed once and kept in the spill folder);
* duckdb-sql a hand-written DuckDB query over the same Parquet files computing the RFM and
             complaint aggregates for the one cutoff (a subset of our columns), written to Parquet;
* pandas     the same RFM and complaint aggregates with a plain pandas groupby;
* output     the floor under ours-1 that no aggregation strategy removes: ours-1's finished table
             (already in DuckDB memory, not timed) sorted by (cutoff_at, client_id) and written to
             Parquet, as the stage's last step does. Needs ours-1 earlier in the same run.

Input data: ``--clean DIR`` with clean Parquet tables (e.g. from `comeback generate` and
`comeback ingest`), or by default a synthetic sample written by DuckDB SQL (seeded) and kept in
``--work`` for the next run. ``--repeat N`` runs the whole list N times, interleaved, and reports
medians; the 1-minute load average is printed beside every measurement (the machine is shared).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE_CUTOFF = dt.date(2024, 7, 1)
TWELVE_CUTOFFS = [dt.date(2024, m, 1) for m in range(1, 13)]
EXPORT = dt.date(2025, 1, 1)
THREADS = 2
MEMORY_LIMIT = "2GB"


def generate(out: Path, clients: int, seed: int) -> None:
    """Write a synthetic clean sample (contract columns and types) with DuckDB SQL.

    Rows are sorted as `comeback ingest` writes them (``features.contract`` ``sort_by``: by client,
    then time), so every measurement reads the layout the features stage gets in production.
    """
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}; SET TimeZone = 'UTC'; SELECT setseed({seed / 2**31})")
    n_orders, n_complaints, n_contacts = clients * 10, clients // 2, clients // 5
    start = "TIMESTAMPTZ '2021-01-01 00:00:00+00'"
    span = 4 * 365 * 86400 - 1
    # a skewed client: few clients order a lot, many order rarely
    skewed = f"'c' || lpad(CAST(CAST(floor(pow(random(), 2) * {clients}) AS BIGINT) AS VARCHAR), 8, '0')"
    con.execute(
        f"""COPY (SELECT 'c' || lpad(CAST(i AS VARCHAR), 8, '0') AS client_id,
                 {start} + to_seconds(CAST(floor(random() * {span // 2}) AS BIGINT)) AS created_at,
                 'm' || CAST(i % 50 AS VARCHAR) AS manager_id,
                 CASE WHEN random() < 0.7 THEN 'retail' ELSE 'wholesale' END AS segment,
                 random() < 0.03 AS do_not_contact
               FROM range({clients}) t(i)) TO '{out / "clients.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'o' || CAST(i AS VARCHAR) AS order_id, client_id, ordered_at,
                 round(50 + random() * 450, 2) AS amount,
                 CASE WHEN random() < 0.1 THEN NULL ELSE round(random() * 100 - 10, 2) END AS margin,
                 CASE WHEN r < 0.85 THEN 'completed' WHEN r < 0.95 THEN 'cancelled' ELSE 'returned' END
                   AS status,
                 CASE WHEN d < 0.7 THEN ordered_at + INTERVAL 30 DAY END AS due_at,
                 CASE WHEN d < 0.63
                      THEN ordered_at + to_seconds(CAST(floor((10 + random() * 40) * 86400) AS BIGINT))
                 END AS paid_at
               FROM (SELECT i, {skewed} AS client_id,
                            {start} + to_seconds(CAST(floor(random() * {span}) AS BIGINT)) AS ordered_at,
                            random() AS r, random() AS d
                     FROM range({n_orders}) t(i))
               ORDER BY client_id, ordered_at, i)
           TO '{out / "orders.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'k' || CAST(i AS VARCHAR) AS complaint_id, client_id, created_at,
                 CAST(1 + floor(random() * 5) AS BIGINT) AS severity,
                 ['product', 'service', 'delivery', 'billing', 'staff', 'other']
                   [CAST(1 + floor(random() * 6) AS INT)] AS category,
                 random() < 0.3 AS human_factor,
                 CASE WHEN random() < 0.75
                      THEN created_at + to_seconds(CAST(floor(random() * 30 * 86400) AS BIGINT))
                 END AS resolved_at
               FROM (SELECT i, {skewed} AS client_id,
                            {start} + to_seconds(CAST(floor(random() * {span}) AS BIGINT)) AS created_at
                     FROM range({n_complaints}) t(i))
               ORDER BY client_id, created_at, i)
           TO '{out / "complaints.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'x' || CAST(i AS VARCHAR) AS contact_id, {skewed} AS client_id,
                 {start} + to_seconds(CAST(floor(random() * {span}) AS BIGINT)) AS contacted_at,
                 CASE WHEN random() < 0.5 THEN 'prevention' ELSE 'winback' END AS campaign,
                 NULL::VARCHAR AS offer, 'm' || CAST(i % 50 AS VARCHAR) AS manager_id
               FROM range({n_contacts}) t(i)
               ORDER BY client_id, contacted_at, i) TO '{out / "contacts.parquet"}' (FORMAT parquet)"""
    )
    con.close()


def input_rows(clean: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in clean.glob("*.parquet"))


def run_ours(clean: Path, out: Path, cutoffs: list[dt.date]) -> int:
    """The features stage itself (cutoff batches, atomic write, summary), as `comeback features` runs it."""
    from features.config import FeatureParams
    from pipeline.build_features import run_features

    summary = run_features(
        clean,
        out,
        cutoffs,
        FeatureParams(cutoffs=cutoffs),
        export_date=EXPORT,
        threads=THREADS,
        memory_limit=MEMORY_LIMIT,
    )
    return int(summary["rows"])


def duckdb_sql(clean: Path, d: dt.date) -> str:
    """The hand-written baseline: RFM and complaint aggregates at one cutoff."""
    cut = f"TIMESTAMPTZ '{d.isoformat()} 00:00:00+00'"
    wins = ", ".join(
        f"count(*) FILTER (WHERE ordered_at >= {cut} - INTERVAL {w} DAY) AS orders_{w}d, "
        f"coalesce(sum(amount) FILTER (WHERE ordered_at >= {cut} - INTERVAL {w} DAY), 0) AS amount_{w}d, "
        f"sum(margin) FILTER (WHERE ordered_at >= {cut} - INTERVAL {w} DAY) AS margin_{w}d"
        for w in (30, 90, 180, 365)
    )
    return f"""
    WITH o AS (
        SELECT client_id, ordered_at, amount, margin,
               (epoch(ordered_at) - epoch(lag(ordered_at) OVER (PARTITION BY client_id ORDER BY ordered_at)))
                 / 86400.0 AS gap_days
        FROM '{clean / "orders.parquet"}' WHERE status = 'completed' AND ordered_at < {cut}),
    ro AS (
        SELECT client_id, count(*) AS orders_total, sum(amount) AS amount_total, sum(margin) AS margin_total,
               (epoch({cut}) - epoch(max(ordered_at))) / 86400.0 AS recency_days,
               (epoch({cut}) - epoch(min(ordered_at))) / 86400.0 AS days_since_first_order,
               avg(gap_days) AS gap_mean_days, stddev_samp(gap_days) AS gap_std_days, {wins}
        FROM o GROUP BY client_id),
    st AS (
        SELECT client_id, count(*) FILTER (WHERE status = 'cancelled') AS cancelled_orders_total,
               count(*) FILTER (WHERE status = 'returned') AS returned_orders_total, count(*) AS n_all
        FROM '{clean / "orders.parquet"}' WHERE ordered_at < {cut} GROUP BY client_id),
    k AS (
        SELECT client_id, count(*) AS complaints_total,
               count(*) FILTER (WHERE created_at >= {cut} - INTERVAL 90 DAY) AS complaints_90d,
               count(*) FILTER (WHERE created_at >= {cut} - INTERVAL 365 DAY) AS complaints_365d,
               max(severity) AS complaint_severity_max, avg(severity) AS complaint_severity_mean,
               count(*) FILTER (WHERE resolved_at IS NULL OR resolved_at >= {cut}) AS open_complaints,
               (epoch({cut}) - epoch(max(created_at))) / 86400.0 AS days_since_last_complaint
        FROM '{clean / "complaints.parquet"}' WHERE created_at < {cut} GROUP BY client_id)
    SELECT c.client_id, {cut} AS cutoff_at, ro.* EXCLUDE (client_id), st.* EXCLUDE (client_id),
           k.* EXCLUDE (client_id)
    FROM '{clean / "clients.parquet"}' c
    LEFT JOIN ro USING (client_id) LEFT JOIN st USING (client_id) LEFT JOIN k USING (client_id)
    WHERE c.created_at < {cut}
    ORDER BY c.client_id"""


def run_duckdb_sql(clean: Path, out: Path, d: dt.date) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}; SET memory_limit = '{MEMORY_LIMIT}'; SET TimeZone = 'UTC'")
    con.execute(f"COPY ({duckdb_sql(clean, d)}) TO '{out}' (FORMAT parquet)")
    return int(con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0])  # type: ignore[index]


def run_pandas(clean: Path, out: Path, d: dt.date) -> int:
    import numpy as np
    import pandas as pd

    cut = pd.Timestamp(d, tz="UTC")
    clients = pd.read_parquet(clean / "clients.parquet", columns=["client_id", "created_at"])
    clients = clients[clients.created_at < cut]
    orders = pd.read_parquet(
        clean / "orders.parquet", columns=["client_id", "ordered_at", "amount", "margin", "status"]
    )
    orders = orders[orders.ordered_at < cut]
    status = (
        orders.assign(
            cancelled_orders_total=(orders.status == "cancelled").astype("int64"),
            returned_orders_total=(orders.status == "returned").astype("int64"),
            n_all=1,
        )
        .groupby("client_id")[["cancelled_orders_total", "returned_orders_total", "n_all"]]
        .sum()
    )
    done = orders[orders.status == "completed"].sort_values(["client_id", "ordered_at"])
    done["gap_days"] = done.groupby("client_id").ordered_at.diff().dt.total_seconds() / 86400
    age = (cut - done.ordered_at).dt.total_seconds() / 86400
    for w in (30, 90, 180, 365):
        inside = age <= w
        done[f"orders_{w}d"] = inside.astype("int64")
        done[f"amount_{w}d"] = done.amount.where(inside, 0.0)
        done[f"margin_{w}d"] = done.margin.where(inside)
    g = done.groupby("client_id")
    rfm = g.agg(
        orders_total=("amount", "size"),
        amount_total=("amount", "sum"),
        margin_total=("margin", "sum"),
        last=("ordered_at", "max"),
        first=("ordered_at", "min"),
        gap_mean_days=("gap_days", "mean"),
        gap_std_days=("gap_days", "std"),
        **{
            f"{k}_{w}d": (f"{k}_{w}d", "sum")
            for w in (30, 90, 180, 365)
            for k in ("orders", "amount", "margin")
        },
    )
    rfm["recency_days"] = (cut - rfm.pop("last")).dt.total_seconds() / 86400
    rfm["days_since_first_order"] = (cut - rfm.pop("first")).dt.total_seconds() / 86400
    comp = pd.read_parquet(
        clean / "complaints.parquet", columns=["client_id", "created_at", "severity", "resolved_at"]
    )
    comp = comp[comp.created_at < cut]
    c_age = (cut - comp.created_at).dt.total_seconds() / 86400
    comp["in90"] = c_age <= 90
    comp["in365"] = c_age <= 365
    comp["open"] = comp.resolved_at.isna() | (comp.resolved_at >= cut)
    k = comp.groupby("client_id").agg(
        complaints_total=("severity", "size"),
        complaints_90d=("in90", "sum"),
        complaints_365d=("in365", "sum"),
        complaint_severity_max=("severity", "max"),
        complaint_severity_mean=("severity", "mean"),
        open_complaints=("open", "sum"),
        last=("created_at", "max"),
    )
    k["days_since_last_complaint"] = (cut - k.pop("last")).dt.total_seconds() / 86400
    table = clients.set_index("client_id").join([rfm, status, k], how="left").sort_index()
    table["cutoff_at"] = cut
    table = table.replace([np.inf, -np.inf], np.nan)
    table.reset_index().to_parquet(out, index=False)
    return len(table)


def run_output_floor(features: Path, out: Path) -> tuple[int, float]:
    """Sort and write ``features`` (loaded into memory first, untimed); rows and seconds taken."""
    import duckdb

    if not features.exists():
        raise SystemExit(f"output needs {features}: run ours-1 before it (--only ours-1 output)")
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}; SET memory_limit = '{MEMORY_LIMIT}'; SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE t AS SELECT * FROM '{features}'")
    t = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM t ORDER BY cutoff_at, client_id) TO '{out}' (FORMAT parquet)")
    seconds = time.perf_counter() - t
    return int(con.execute("SELECT count(*) FROM t").fetchone()[0]), seconds  # type: ignore[index]


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, clean: Path, out: Path) -> None:
    """Run one measurement in this (fresh) process and print a JSON line."""
    t = time.perf_counter()
    seconds = None
    if kind == "ours-1":
        rows = run_ours(clean, out, [ONE_CUTOFF])
    elif kind == "ours-12":
        rows = run_ours(clean, out, TWELVE_CUTOFFS)
    elif kind == "duckdb-sql":
        rows = run_duckdb_sql(clean, out, ONE_CUTOFF)
    elif kind == "pandas":
        rows = run_pandas(clean, out, ONE_CUTOFF)
    elif kind == "output":
        rows, seconds = run_output_floor(out.parent / "ours-1" / "features.parquet", out)
    else:
        raise SystemExit(f"unknown measurement {kind}")
    print(
        json.dumps(
            {
                "kind": kind,
                "seconds": time.perf_counter() - t if seconds is None else seconds,
                "rows_out": rows,
                "peak_mib": _peak_rss_mib(),
            }
        )
    )


def measure(kind: str, clean: Path, work: Path) -> dict[str, Any]:
    out = work / (kind if kind.startswith("ours") else f"{kind}.parquet")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--clean", str(clean), "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clean", type=Path, help="existing clean Parquet folder (default: generate one)")
    ap.add_argument(
        "--work", type=Path, help="folder for generated data and outputs (default: a temp folder)"
    )
    ap.add_argument("--only", nargs="*", default=["duckdb-sql", "ours-1", "output", "pandas", "ours-12"])
    ap.add_argument("--repeat", type=int, default=1, help="run the list this many times; report medians")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.clean, args.out)
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="comeback-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    clean = args.clean
    if clean is None:
        clean = work / f"clean_{args.clients}_{args.seed}_sorted"
        if not (clean / "orders.parquet").exists():
            t = time.perf_counter()
            generate(clean, args.clients, args.seed)
            print(f"generated {clean} in {time.perf_counter() - t:.1f}s")
    n_in = input_rows(clean)
    print(f"input: {n_in:,} rows in {clean} (machine: {os.cpu_count()} cores, {THREADS} threads used)")
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in args.only}
    for i in range(args.repeat):
        for kind in args.only:
            load = os.getloadavg()[0]
            r = measure(kind, clean, work)
            runs[kind].append(r)
            print(
                f"{kind:<11} {r['seconds']:8.1f} s  {n_in / r['seconds']:>12,.0f} input rows/s  "
                f"peak RSS {r['peak_mib'] / 1024:5.2f} GiB  {r['rows_out']:>11,} rows out  "
                f"(run {i + 1}, load {load:.1f} -> {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    sec = {kind: statistics.median(r["seconds"] for r in rs) for kind, rs in runs.items()}
    if args.repeat > 1:
        for kind, rs in runs.items():
            peak = max(r["peak_mib"] for r in rs) / 1024
            rate = n_in / sec[kind]
            print(f"median {kind:<11} {sec[kind]:8.1f} s  {rate:>12,.0f} rows/s  max peak {peak:.2f} GiB")
    if {"ours-1", "duckdb-sql"} <= sec.keys():
        print(f"ours-1 / duckdb-sql : {sec['ours-1'] / sec['duckdb-sql']:.2f}x")
    if {"ours-1", "pandas"} <= sec.keys():
        print(f"pandas / ours-1     : {sec['pandas'] / sec['ours-1']:.2f}x")
    if {"ours-1", "ours-12"} <= sec.keys():
        print(f"ours-12 / ours-1    : {sec['ours-12'] / sec['ours-1']:.2f}x")
    if {"output", "duckdb-sql"} <= sec.keys():
        ratio = sec["output"] / sec["duckdb-sql"]
        print(f"output / duckdb-sql : {ratio:.2f}x (sorting and writing our table alone)")


if __name__ == "__main__":
    main()
