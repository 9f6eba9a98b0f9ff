"""`python -m pipeline.demo_summary`: where `make demo` put everything and what to do next.

Prints the campaign files with their row counts (from data/scores/manifest.json), the reports and
model cards, how to start the API with a curl example, and how to open the MLflow UI. Reads only
what the stages wrote; a missing file is reported as missing, never an error.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _manifest(scores: Path) -> dict[str, Any] | None:
    path = scores / "manifest.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _first_client(scores: Path, name: str) -> str | None:
    path = scores / name
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        row = next(reader, None)
    return row[0] or None if row else None


def render(console: Console, root: Path = Path()) -> None:
    """Print the demo summary for the project folder ``root``."""
    scores, reports = root / "data" / "scores", root / "data" / "reports"
    manifest = _manifest(scores)
    console.rule("[bold]comeback demo: what came out")
    table = Table(show_header=True, header_style="bold")
    table.add_column("output")
    table.add_column("where")
    table.add_column("rows", justify="right")
    rows = (manifest or {}).get("rows", {})
    for name, what in (
        ("prevention.csv", "prevention list (churn risk x value)"),
        ("winback.csv", "win-back list (win-back likelihood x value - offer cost)"),
        ("scores.parquet", "every client: probability, value, campaign, reasons"),
        ("summary.json", "campaign summary by tier, class, offer (+ summary.png)"),
        ("manifest.json", "model versions, cutoff, counts, sha256 of each file"),
    ):
        path = scores / name
        count = rows.get(name)
        table.add_row(
            what,
            str(path) if path.exists() else f"{path} [red](missing)[/red]",
            f"{count:,}" if count else "",
        )
    for name, what in (
        ("metrics.json", "evaluation metrics (test cutoff)"),
        ("model_card_churn.md", "model card: churn"),
        ("model_card_winback.md", "model card: win-back"),
        ("plots", "ROC, precision-recall, calibration, gains, importance"),
    ):
        path = reports / name
        table.add_row(what, str(path) if path.exists() else f"{path} [red](missing)[/red]", "")
    console.print(table)
    if manifest:
        models = manifest.get("models", {})
        versions = ", ".join(f"{k} v{v.get('version')}" for k, v in models.items())
        console.print(f"scoring cutoff {manifest.get('cutoff_at', '?')[:10]}, champions: {versions}")
        not_listed = manifest.get("not_listed_by_reason", {})
        for campaign, reasons in not_listed.items():
            if reasons:
                counts = ", ".join(f"{r} {n:,}" for r, n in reasons.items())
                console.print(f"not on the {campaign} list: {counts}")
    client = _first_client(scores, "winback.csv") or _first_client(scores, "prevention.csv") or "CLIENT_ID"
    console.rule("[bold]the scoring API")
    console.print(
        "export COMEBACK_API_KEYS=demo-key COMEBACK_ADMIN_KEYS=demo-admin\n"
        "make serve            # or: .venv/bin/comeback serve --port 8000\n"
        f"curl -s -H 'X-API-Key: demo-key' http://127.0.0.1:8000/v1/clients/{client}/score\n"
        "curl -s -H 'X-API-Key: demo-key' -H 'content-type: application/json' "
        f'-d \'{{"client_ids": ["{client}"]}}\' http://127.0.0.1:8000/v1/scores\n'
        "open http://127.0.0.1:8000/docs for the OpenAPI document",
        highlight=False,
        soft_wrap=True,  # commands must stay copy-pasteable, never folded at the terminal width
    )
    console.rule("[bold]experiments")
    console.print(
        ".venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db   # then open http://127.0.0.1:5000",
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:
    render(Console())


if __name__ == "__main__":
    main()
