"""`comeback serve`: run the scoring API (FastAPI on uvicorn, one worker).

Settings come from the environment (``COMEBACK_*``, see serving.config.ApiSettings: API keys,
tracking URI, model alias); ``--features`` overrides COMEBACK_FEATURES. The campaign rules are the
``score:`` section of params.yaml, the same the batch stage uses.
"""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    features: Path | None = typer.Option(
        None, help="Feature table (default: COMEBACK_FEATURES, else data/features/features.parquet)."
    ),
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml (section score: campaign rules)."),
) -> None:
    """Serve scores over HTTP: POST /v1/scores, GET /v1/clients/{id}/score, /health/*, /metrics."""
    import uvicorn

    from pipeline.params import ParamsError, load_params
    from serving.app import create_app
    from serving.config import ApiSettings

    try:
        score_params = load_params(params).score
    except ParamsError as e:
        typer.echo(f"serve: {e}", err=True)
        raise typer.Exit(1) from e
    settings = ApiSettings()
    if features is not None:
        settings = settings.model_copy(update={"features": features})
    if not settings.keys(admin=False):
        typer.echo("warning: COMEBACK_API_KEYS is empty, every keyed route will answer 401", err=True)
    app = create_app(settings, score_params)
    uvicorn.run(app, host=host, port=port, workers=1, log_level="info", access_log=False)
