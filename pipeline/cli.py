"""The `comeback` command: one subcommand per pipeline stage or tool.

Each stage lives in its own module (`pipeline/<stage>.py`) exposing a Typer ``command``; this
module only wires them together. Heavy libraries are imported inside the commands, so `--help`
stays fast.
"""

from __future__ import annotations

import logging
import os

import typer

from pipeline import build_features, evaluate, generate, ingest, online_retail, promote, score, serve, train
from pipeline.olist import command as adapt_olist_command

app = typer.Typer(
    name="comeback",
    help="Churn risk and win-back likelihood for CRM clients, from export to campaign lists and API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # MLflow draws a progress bar per artefact download (40 lines per model load in a DVC log);
    # the log lines say which model loaded. An explicit setting in the environment still wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


app.command("generate")(generate.command)
app.command("ingest")(ingest.command)
app.command("adapt-online-retail")(online_retail.command)
app.command("adapt-olist")(adapt_olist_command)
app.command("features")(build_features.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("promote")(promote.command)
app.command("score")(score.command)
app.command("serve")(serve.command)
