"""`comeback score`: the champions + the feature table at the scoring cutoff -> campaign files.

Thin stage: read params (``score:``), load both champions (MLflow registry by alias, or a trained
model folder with ``--models-dir``), read the feature table at the cutoff, call the scoring core
(:mod:`serving.core`) and write scores.parquet, prevention.csv, winback.csv, summary.json,
summary.png and manifest.json atomically (:mod:`serving.batch`). Prints the campaign summary, what
the values were computed from (margin, or revenue x score.default_margin_rate) and a warning for
each list that came out empty or leaves out most of its population. A feature table in which no
churn or win-back client has a usable value stops with exit code 1 before anything is written.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

log = logging.getLogger(__name__)


def _summary_table(summary: dict[str, Any]) -> RichTable:
    table = RichTable(title="campaign summary (expected value = sum of priorities)")
    for col in ("campaign", "group", "clients", "expected value"):
        table.add_column(col, justify="right" if col in ("clients", "expected value") else "left")
    for campaign in ("prevention", "winback"):
        entry = summary[campaign]
        table.add_row(campaign, "all", f"{entry['clients']:,}", f"{entry['expected_value']:,.0f}")
        for key in ("by_tier", "by_value_class", "by_offer"):
            for name, g in entry.get(key, {}).items():
                label = f"{key.removeprefix('by_').replace('_', ' ')}: {name}"
                table.add_row("", label, f"{g['clients']:,}", f"{g['expected_value']:,.0f}")
    for reason, n in summary["not_listed"].items():
        table.add_row("not listed", reason, f"{n:,}", "")
    return table


def _basis_line(basis: dict[str, Any]) -> str:
    """One line: clients valued on margin, on revenue x the rate, and without a value."""
    n = basis["clients"]
    rate = basis["default_margin_rate"]
    revenue = f"revenue x score.default_margin_rate {rate}" if rate is not None else "revenue (rate null)"
    return (
        f"value basis: {n['margin']:,} clients on margin_total, {n['revenue']:,} on {revenue}, "
        f"{n['none']:,} without a value"
    )


def command(
    features: Path = typer.Option(Path("data/features/features.parquet"), help="Feature table (Parquet)."),
    out: Path = typer.Option(Path("data/scores"), help="Output folder for scores and campaign lists."),
    cutoff: dt.datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%d"],
        help="Scoring cutoff date (default: score.cutoff, else latest).",
    ),
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml (section score)."),
    models_dir: Path | None = typer.Option(
        None, help="Load the models from this trained folder (churn/, winback/) instead of the registry."
    ),
    tracking_uri: str | None = typer.Option(
        None,
        help="MLflow tracking URI (default: COMEBACK_TRACKING_URI, else MLFLOW_TRACKING_URI).",
    ),
    alias: str = typer.Option("champion", help="Registry alias of the models to score with."),
    threads: int = typer.Option(
        2, min=1, help="LightGBM threads for the batch (the API uses 1 per request)."
    ),
    fallback_models_dir: Path | None = typer.Option(
        None,
        help="Score with this trained folder when the registry has no model under --alias yet "
        "(a fresh demo before `comeback promote`); the manifest names the source.",
    ),
) -> None:
    """Score every client at the scoring cutoff and write the campaign files to OUT."""
    from models.scorer import ModelNotFoundError, load_model, load_model_from_dir
    from pipeline.params import ParamsError, load_params
    from serving.batch import score_all_clients, summarize_campaigns, value_basis_of, write_outputs
    from serving.campaigns import require_usable_value
    from serving.core import Scorer, prepare_snapshot, read_feature_table

    console = Console()
    started = time.perf_counter()
    try:
        score_params = load_params(params).score
        when = cutoff.date() if cutoff is not None else score_params.cutoff
        if models_dir is not None:
            churn = load_model_from_dir(models_dir / "churn", num_threads=threads)
            winback = load_model_from_dir(models_dir / "winback", num_threads=threads)
        else:
            try:
                churn = load_model("churn", tracking_uri=tracking_uri, alias=alias, num_threads=threads)
                winback = load_model("winback", tracking_uri=tracking_uri, alias=alias, num_threads=threads)
            except ModelNotFoundError as e:
                if fallback_models_dir is None:
                    raise
                console.print(
                    f"[yellow]{e}\nscoring with the trained models in {fallback_models_dir} instead "
                    "(run `comeback promote` to serve registered champions)[/yellow]"
                )
                churn = load_model_from_dir(fallback_models_dir / "churn", num_threads=threads)
                winback = load_model_from_dir(fallback_models_dir / "winback", num_threads=threads)
        frame = read_feature_table(features, when)
        snapshot = prepare_snapshot(frame, score_params, source=str(features))
        del frame
        # Before scoring and writing: a table without any usable value can only give empty lists,
        # and the previous outputs must stay in place rather than be replaced by empty files.
        require_usable_value(snapshot.plan, score_params)
    except (ParamsError, ModelNotFoundError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]score: {e}[/red]", soft_wrap=True)
        raise typer.Exit(1) from e
    scorer = Scorer(snapshot, churn, winback, score_params)
    scores = score_all_clients(scorer)
    manifest = write_outputs(out, scores, scorer, features_source=str(features))
    summary = summarize_campaigns(scores, value_basis_of(scores, scorer), score_params)

    console.print(_summary_table(summary))
    console.print(_basis_line(summary["value_basis"]), soft_wrap=True)
    for warning in summary["warnings"]:
        console.print(f"[bold red]WARNING: {warning['message']}[/bold red]", soft_wrap=True)
    console.print(
        f"scored {len(scores):,} clients at {snapshot.cutoff_at.date()} with churn v{churn.version}, "
        f"win-back v{winback.version} in {time.perf_counter() - started:.1f} s: "
        f"prevention {manifest['lists']['prevention']:,}, winback {manifest['lists']['winback']:,} -> {out}"
    )
