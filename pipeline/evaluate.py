"""Stage `evaluate`: trained models -> metrics, details, plots and model cards on the test cutoff.

Reads FEATURES, MODELS/{churn,winback}/ and optionally the generator's ground truth (TRUTH), writes
OUT/metrics.json (DVC metrics: headline numbers per model and forecast; with TRUTH also ``oracle``,
the observable oracle, and ``oracle_clairvoyant``, see models/evaluate.py), OUT/details.json
(intervals, paired differences incl. model minus each oracle and minus the best baseline, segments),
OUT/predictions.parquet (every test row's probability and label per task, the baselines beside it,
for re-scoring with other tools), OUT/plots/<kind>/*.csv|png (DVC plots) and
OUT/model_card_<kind>.md. When the model was registered, the card, plots and test metrics are also
attached to its MLflow training run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

log = logging.getLogger(__name__)


def command(
    features: Path = typer.Option(..., "--features", help="Feature table Parquet."),
    models: Path = typer.Option(..., "--models", help="Folder with the trained models (train --out)."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for metrics.json, details.json, plots/, model cards."
    ),
    truth: Path | None = typer.Option(
        None, "--truth", help="Ground-truth probabilities (synthetic data only)."
    ),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Params file (evaluate:, features:)."),
    test_cutoff: dt.datetime | None = typer.Option(
        None,
        "--test-cutoff",
        formats=["%Y-%m-%d"],
        help="Score on this test cutoff instead of the one the model was trained for (split.json).",
    ),
) -> None:
    """Score both models and two baselines on the test cutoff, with bootstrap intervals and plots."""
    import pandas as pd

    from features.contract import ContractError
    from models.config import KINDS
    from models.dataset import SplitError, TimeSplit, read_feature_table
    from models.evaluate import PREDICTIONS_FILE, evaluate_kind
    from models.io import write_json_atomic, write_parquet_atomic, write_text_atomic
    from models.model_card import render_model_card
    from models.plots import importance_frame, write_plots
    from models.registry import log_evaluation, read_registration
    from models.scorer import (
        SELECTION_FILE,
        SPLIT_FILE,
        ModelNotFoundError,
        load_model_from_dir,
        tracking_uri_from_env,
    )
    from pipeline.params import ParamsError, load_params

    console = Console()
    try:
        settings = load_params(params)
        frame = read_feature_table(features)
        truth_frame = pd.read_parquet(truth) if truth is not None else None
        metrics: dict[str, Any] = {}
        details: dict[str, Any] = {}
        predictions: list[pd.DataFrame] = []
        cards: dict[str, str] = {}
        files: dict[str, list[Path]] = {}
        for kind in KINDS:
            folder = models / kind
            model = load_model_from_dir(folder, num_threads=settings.train.num_threads)
            importance = importance_frame(folder / "importance.csv")
            split = TimeSplit.from_json(json.loads((folder / SPLIT_FILE).read_text(encoding="utf-8")))
            if test_cutoff is not None:
                split = dataclasses.replace(split, test_cutoff=test_cutoff.date())
            result = evaluate_kind(
                frame, model, settings.evaluate, split=split, truth=truth_frame, importance=importance
            )
            if result.predictions is not None:
                predictions.append(result.predictions)
            metrics[kind] = result.metrics
            details[kind] = result.details
            files[kind] = write_plots(result, out / "plots")
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            train_metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            selection_path = folder / SELECTION_FILE
            selection = (
                json.loads(selection_path.read_text(encoding="utf-8")) if selection_path.is_file() else None
            )
            reg = read_registration(folder)
            cards[kind] = render_model_card(
                kind,
                model_name=model.name,
                model_version=reg.get("version") or "local",
                split=result.details["split"],
                details=result.details,
                importance=importance,
                calibration=meta.get("calibration", "?"),
                calibration_check=train_metrics.get("calibration_check"),
                selection=selection,
            )
    except (ParamsError, ContractError, SplitError, FileNotFoundError, ModelNotFoundError) as e:
        console.print(f"[red]evaluate failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
    write_json_atomic(out / "metrics.json", metrics)
    write_json_atomic(out / "details.json", details)
    if predictions:
        write_parquet_atomic(out / PREDICTIONS_FILE, pd.concat(predictions, ignore_index=True))
    for name, card in cards.items():
        card_path = out / f"model_card_{name}.md"
        write_text_atomic(card_path, card)
        files[name].append(card_path)
        reg = read_registration(models / name)
        if reg.get("run_id"):
            try:
                flat = {f"eval_{f}_{k}": float(v) for f, m in metrics[name].items() for k, v in m.items()}
                log_evaluation(
                    tracking_uri_from_env(),
                    reg["run_id"],
                    metrics=flat,
                    files=files[name],
                    artifact_path="plots",
                )
            except Exception as e:  # tracking is a convenience here; the DVC outputs are the record
                log.warning("could not attach the evaluation to MLflow run %s: %s", reg["run_id"], e)
        line = ", ".join(f"{f} {v['roc_auc']:.4f}" for f, v in metrics[name].items())
        console.print(f"{name} ROC-AUC on the test cutoff: {line} -> {out}", highlight=False)
