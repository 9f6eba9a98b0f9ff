"""Stage `train`: feature table -> calibrated churn and win-back models, logged and registered.

Reads FEATURES (the feature table Parquet) and params.yaml (`train:` and `features.horizon_days`),
writes OUT/{churn,winback}/ (booster.txt, calibration.json, feature_names.json, split.json,
metrics.json, model.json, importance.csv), logs one MLflow run per model and registers each as a
new version of comeback-<kind> with the alias `challenger` (never `champion`: see `promote`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

import typer
from rich.console import Console

log = logging.getLogger(__name__)


def command(
    features: Path = typer.Option(..., "--features", help="Feature table Parquet (features stage output)."),
    out: Path = typer.Option(..., "--out", help="Folder for the trained models: OUT/churn/, OUT/winback/."),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Params file (train:, features:)."),
    test_cutoff: dt.datetime | None = typer.Option(
        None,
        "--test-cutoff",
        formats=["%Y-%m-%d"],
        help="Pin the test cutoff (default: train.test_cutoff, else the latest fully labelled cutoff).",
    ),
) -> None:
    """Select and train the churn and win-back models on rolling time folds; register them as challengers.

    A model that fails the registration guard (constant, or no better than recency alone on
    validation) is saved and registered without the challenger alias, with the reason.
    """
    from features.contract import ContractError
    from models.config import flatten
    from models.dataset import SplitError, read_feature_table
    from models.io import write_json_atomic
    from models.registry import log_and_register
    from models.scorer import tracking_uri_from_env
    from models.train import fit_all, save_trained_model
    from pipeline.params import ParamsError, load_params

    console = Console()
    started = time.perf_counter()
    try:
        settings = load_params(params)
        if test_cutoff is not None:
            settings.train.test_cutoff = test_cutoff.date()
        frame = read_feature_table(features)
        read_s = time.perf_counter() - started
        horizon = settings.features.horizon_days
        trained = fit_all(frame, settings.train, horizon_days=horizon)
    except (ParamsError, ContractError, SplitError, FileNotFoundError) as e:
        console.print(f"[red]train failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
    # Params under their params.yaml names: the train section and the features section that made the
    # table (cutoffs, horizon, tiers). Nothing secret lives in params.yaml.
    mlflow_params = {
        **settings.train.flat("train"),
        **flatten(settings.features.model_dump(mode="json"), "features"),
    }
    uri = tracking_uri_from_env() if settings.train.register_models else None
    for kind, model in trained.items():
        folder = out / kind
        save_trained_model(model, folder)
        if uri is not None:
            reg = log_and_register(
                model,
                folder,
                tracking_uri=uri,
                experiment=settings.train.experiment,
                params=mlflow_params,
                data_source=str(features),
            )
            meta_path = folder / "model.json"
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            meta["registration"] = {"run_id": reg.run_id, "name": reg.name, "version": reg.version}
            write_json_atomic(meta_path, meta)
        t = model.metrics["test"]
        sel = model.selection
        means = ", ".join(f"{c} {row['mean']:.4f}" for c, row in sel.get("table", {}).items())
        console.print(
            f"{kind}: {sel.get('winner')} ({model.best_iteration} trees), validation ROC-AUC over "
            f"{len(sel.get('folds', []))} fold(s): {means}; test cutoff {model.split.test_cutoff}: "
            f"roc_auc {t['roc_auc']:.4f}, brier {t['brier']:.4f}, ece {t['ece']:.4f} "
            f"({model.fit_seconds:.1f} s) -> {folder}",
            highlight=False,
        )
        if not model.guard_passed:
            reasons = "; ".join(sel["guard"]["reasons"])
            console.print(
                f"[yellow]{kind}: NOT registered as challenger: {reasons}[/yellow]",
                highlight=False,
                soft_wrap=True,
            )
    wall = time.perf_counter() - started
    fit = sum(m.fit_seconds for m in trained.values())
    console.print(
        f"train: {wall:.1f} s in all: reading {read_s:.1f} s, selection and fitting {fit:.1f} s, "
        f"saving, MLflow logging and registration {wall - read_s - fit:.1f} s "
        f"({100 * (wall - fit) / wall:.0f}% outside fitting)",
        highlight=False,
    )
