"""Command `promote` (not a DVC stage): move the `champion` alias after a recorded comparison.

For each model kind, scores the registered champion and challenger on the same test cutoff of
FEATURES and moves `champion` to the challenger only if it is not worse beyond the tolerances of
params.yaml `promote:`. The first registered model becomes champion. The decision is tagged on the
challenger version in the MLflow registry.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import typer
from rich.console import Console

log = logging.getLogger(__name__)


def command(
    features: Path = typer.Option(
        ..., "--features", help="Feature table Parquet (the test cutoff is taken from it)."
    ),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Params file (promote:, features:)."),
    test_cutoff: dt.datetime | None = typer.Option(
        None,
        "--test-cutoff",
        formats=["%Y-%m-%d"],
        help="Compare on this test cutoff (default: train.test_cutoff, else the latest fully labelled).",
    ),
) -> None:
    """Promote each challenger to champion if it is not worse than the champion beyond the tolerances."""
    from features.contract import ContractError
    from models.config import KINDS
    from models.dataset import SplitError, read_feature_table
    from models.registry import promote_kind
    from models.scorer import ModelNotFoundError, tracking_uri_from_env
    from pipeline.params import ParamsError, load_params

    console = Console()
    try:
        settings = load_params(params)
        frame = read_feature_table(features)
        uri = tracking_uri_from_env()
        for kind in KINDS:
            record = promote_kind(
                kind,
                frame,
                settings.promote,
                horizon_days=settings.features.horizon_days,
                tracking_uri=uri,
                test_cutoff=test_cutoff.date() if test_cutoff is not None else settings.train.test_cutoff,
            )
            color = "red" if record["decision"] == "refused" else "default"
            console.print(
                f"[{color}]{record['name']}: challenger v{record['challenger']} {record['decision']} "
                f"({record['reason']})[/{color}]",
                highlight=False,
                soft_wrap=True,
            )
    except (ParamsError, ContractError, SplitError, FileNotFoundError, ModelNotFoundError) as e:
        console.print(f"[red]promote failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
