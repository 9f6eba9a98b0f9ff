"""`comeback generate`: write a seeded synthetic CRM export plus its ground truth.

Thin stage: reads the `generate` and `features` sections of params.yaml, asks
:mod:`pipeline.synthetic` for the tables block by block and streams them to files. Every file is
written under a temporary name in the output folder and moved into place with ``os.replace`` at
the end, so a crashed run never leaves a half-written export behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger(__name__)

RAW_TABLES = ("clients", "orders", "complaints", "contacts")
TRUTH_TABLES = ("truth", "truth_clients")
ID_COLUMNS = {
    "orders": ("order_id", "O", 9),
    "complaints": ("complaint_id", "K", 8),
    "contacts": ("contact_id", "T", 8),
}


def command(
    clients: int | None = typer.Option(
        None, "--clients", help="Number of clients (default: params.yaml generate.clients)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Root seed (default: params.yaml generate.seed)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created; its generated files are replaced)."),
    fmt: str | None = typer.Option(
        None, "--format", help="csv | parquet for the four raw tables (default: params.yaml generate.format)."
    ),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read."),
    workers: int = typer.Option(
        0, "--workers", help="Processes simulating blocks of 100k clients (0: up to 2)."
    ),
) -> None:
    """Generate a synthetic CRM export with a known ground truth.

    Reads params.yaml `generate` (clients, seed, start, export_date, format, onboarding_dropout) and
    `features` (cutoffs, horizon_days, lapse_tiers_days[0]: where and how the truth is written; the
    cutoff schedule is resolved as the features stage resolves it, see TruthSpec.for_features).

    Writes into OUT: clients, orders, complaints and contacts as .csv or .parquet (the raw-table
    contract of features/contract.py), truth.parquet (per client and cutoff: observable state and the
    exact probability of no completed order within the horizon), truth_clients.parquet (latent
    parameters and loss history per client) and generate_manifest.json (params, row counts, time).
    """
    from pipeline.synthetic import GenerateParams

    gen, truth = load_sections(params)
    overrides: dict[str, Any] = {"clients": clients, "seed": seed, "format": fmt}
    gen = GenerateParams.model_validate(
        {**gen.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    )
    manifest = generate_export(gen, truth, out, workers=workers)
    counts = ", ".join(f"{k} {v:,}" for k, v in manifest["rows"].items())
    log.info("generated %s in %.1f s: %s", out, manifest["elapsed_seconds"], counts)


def load_sections(path: Path) -> tuple[Any, Any]:
    """The `generate` section and the truth settings from `features`, validated.

    Only the sections this stage reads are validated here (the same models as pipeline/params.py),
    so the stage runs even when another stage's section is being edited.
    """
    import yaml

    from features.config import CutoffError, FeatureParams
    from pipeline.synthetic import GenerateParams, TruthSpec

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise typer.BadParameter(f"params file not found: {path}", param_hint="--params") from e
    gen = GenerateParams.model_validate(raw.get("generate") or {})
    feat = FeatureParams.model_validate(raw["features"]) if "features" in raw else None
    if feat is None:
        return gen, TruthSpec(cutoffs=())
    try:
        return gen, TruthSpec.for_features(feat, gen)
    except CutoffError as e:
        raise typer.BadParameter(f"{path}: {e}", param_hint="--params") from e


def _simulate(args: tuple[Any, Any, int, int, float]) -> Any:
    """One block, in a worker process: its tables (raw ones ready for the output format), with ids
    numbered from 1 within the block."""
    from pipeline.synthetic import BLOCK_CLIENTS, IdCounters, block_tables, simulate_block

    gen, truth, block, n, mult = args
    sim, truth_rows = simulate_block(gen, truth, block, n, mult)
    bt = block_tables(sim, truth_rows, gen, truth, first_client=block * BLOCK_CLIENTS, ids=IdCounters())
    if gen.format == "csv":
        for name in RAW_TABLES:
            setattr(bt, name, _for_csv(getattr(bt, name)))
    return bt


def _blocks(gen: Any, truth: Any, workers: int) -> Iterator[Any]:
    """Block tables in block order, simulated by up to ``workers`` processes."""
    from pipeline.synthetic import BLOCK_CLIENTS, onboarding_multiplier

    mult = onboarding_multiplier(gen.onboarding_dropout)
    n_blocks = -(-gen.clients // BLOCK_CLIENTS)
    jobs = [
        (gen, truth, b, min(BLOCK_CLIENTS, gen.clients - b * BLOCK_CLIENTS), mult) for b in range(n_blocks)
    ]
    if workers <= 1 or n_blocks == 1:
        for job in jobs:
            yield _simulate(job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[Any]] = []
        nxt = 0
        while nxt < len(jobs) or pending:
            while nxt < len(jobs) and len(pending) < workers:  # bounded: at most `workers` blocks in flight
                pending.append(pool.submit(_simulate, jobs[nxt]))
                nxt += 1
            yield pending.pop(0).result()


def _renumber(bt: Any, offsets: dict[str, int]) -> None:
    """Give a block's orders, complaints and contacts their global ids (numbered in write order)."""
    import numpy as np

    from pipeline.synthetic import _ids

    for name, (col, prefix, width) in ID_COLUMNS.items():
        table = getattr(bt, name)
        n = table.num_rows
        ids = _ids(prefix, np.arange(offsets[name] + 1, offsets[name] + n + 1), width)
        setattr(bt, name, table.set_column(table.schema.get_field_index(col), col, ids))
        offsets[name] += n


def _for_csv(table: Any) -> Any:
    """Timestamps as ISO-8601 UTC text (2023-04-05T13:20:00Z); the rest as pyarrow writes it.

    Cast to text rather than strftime: the same strings, several times faster.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for name in table.column_names:
        col = table[name]
        if pa.types.is_timestamp(col.type):
            text = pc.cast(col.cast(pa.timestamp("s")), pa.string())  # "2023-04-05 13:20:00"
            col = pc.binary_join_element_wise(pc.replace_substring(text, " ", "T"), pa.scalar("Z"), "")
        cols.append(col)
    return pa.table(cols, names=table.column_names)


class _Sink:
    """A table streamed to a temporary file, block by block; moved into place by ``commit``."""

    def __init__(self, tmp: Path, final: Path, fmt: str) -> None:
        self.tmp, self.final, self.fmt = tmp, final, fmt
        self.writer: Any = None

    def write(self, table: Any) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if self.fmt == "csv":  # timestamps already text (see _simulate)
            if self.writer is None:
                self.writer = pcsv.CSVWriter(str(self.tmp), table.schema)
        elif self.writer is None:
            self.writer = pq.ParquetWriter(str(self.tmp), table.schema, compression="zstd")
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self) -> None:
        self.tmp.replace(self.final)  # atomic within one file system


def generate_export(gen: Any, truth: Any, out: Path, *, workers: int = 0) -> dict[str, Any]:
    """Generate and write everything into ``out``; returns the manifest that was written."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(out) / f".generate-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    workers = workers or min(2, os.cpu_count() or 1)
    sinks = {
        name: _Sink(tmp / f"{name}.{gen.format}", out / f"{name}.{gen.format}", gen.format)
        for name in RAW_TABLES
    }
    sinks.update(
        {name: _Sink(tmp / f"{name}.parquet", out / f"{name}.parquet", "parquet") for name in TRUTH_TABLES}
    )
    rows = dict.fromkeys((*RAW_TABLES, *TRUTH_TABLES), 0)
    offsets = dict.fromkeys(ID_COLUMNS, 0)
    try:
        for bt in _blocks(gen, truth, workers):
            _renumber(bt, offsets)
            for name, sink in sinks.items():
                table = getattr(bt, name)
                sink.write(table)
                rows[name] += table.num_rows
        for sink in sinks.values():
            sink.close()
        for sink in sinks.values():
            sink.commit()
        other = "parquet" if gen.format == "csv" else "csv"
        for name in RAW_TABLES:  # a previous run in the other format would shadow this one
            (out / f"{name}.{other}").unlink(missing_ok=True)
        manifest = {
            "params": gen.model_dump(mode="json"),
            "seed": gen.seed,
            "truth": {
                "cutoffs": [c.isoformat() for c in truth.cutoffs],
                "horizon_days": truth.horizon_days,
                "active_days": truth.active_days,
            },
            "rows": rows,
            "files": sorted(s.final.name for s in sinks.values()),
            "elapsed_seconds": round(time.perf_counter() - started, 3),
        }
        path = tmp / "generate_manifest.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        path.replace(out / "generate_manifest.json")
        return manifest
    finally:
        for sink in sinks.values():
            sink.close()
        shutil.rmtree(tmp, ignore_errors=True)
