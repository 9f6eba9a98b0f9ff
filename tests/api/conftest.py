"""Session fixtures of the API tests: a real model trained by models.train on a fabricated feature
table, registered in a temporary sqlite MLflow store, served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI

from models.config import BoosterParams, SearchParams, TrainParams
from models.train import TrainedModel, fit_all, save_trained_model
from serving.config import ApiSettings, ScoreParams
from tests.api.sample import make_features, write_features

API_KEY = "test-key-1"
ADMIN_KEY = "test-admin-1"
MAX_CLIENTS = 200


@dataclass
class Trained:
    features: pd.DataFrame
    features_path: Path
    tracking_uri: str
    models: dict[str, TrainedModel]
    model_dirs: dict[str, Path]
    versions: dict[str, str]


def register(trained: Trained, *, promote: bool = True) -> dict[str, str]:
    """Register both trained models as new versions (models.registry) and move champion to them."""
    from mlflow import MlflowClient

    from models.registry import CHAMPION, log_and_register

    out = {}
    client = MlflowClient(tracking_uri=trained.tracking_uri, registry_uri=trained.tracking_uri)
    for kind, tm in trained.models.items():
        reg = log_and_register(
            tm,
            trained.model_dirs[kind],
            tracking_uri=trained.tracking_uri,
            experiment="comeback-tests",
            params={"test": 1},
            data_source=str(trained.features_path),
        )
        if promote:
            client.set_registered_model_alias(reg.name, CHAMPION, reg.version)
        out[kind] = reg.version
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("api")
    features = make_features(1200, seed=3)
    path = write_features(root / "features" / "features.parquet", features)
    booster = BoosterParams(num_boost_round=60, min_data_in_leaf=20, early_stopping_rounds=15, num_leaves=15)
    params = TrainParams(
        num_threads=1, churn=booster, winback=booster, register_models=False, search=SearchParams(trials=0)
    )
    models: dict[str, TrainedModel] = {
        str(kind): tm for kind, tm in fit_all(features, params, horizon_days=100).items()
    }
    dirs: dict[str, Path] = {}
    for kind, tm in models.items():
        dirs[kind] = root / "models" / kind
        save_trained_model(tm, dirs[kind])
    t = Trained(
        features=features,
        features_path=path,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        models=models,
        model_dirs=dirs,
        versions={},
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    t.versions = register(t)
    return t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/health/ready")
        if r.status_code == 200:
            return
        if r.json().get("status") == "failed":
            raise RuntimeError(f"app failed to load: {r.json()}")
        time.sleep(0.05)
    raise TimeoutError("app not ready")


def api_settings(trained: Trained, **overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "tracking_uri": trained.tracking_uri,
        "features": trained.features_path,
        "api_keys": API_KEY,
        "admin_keys": ADMIN_KEY,
        "max_clients_per_request": MAX_CLIENTS,
        "max_body_bytes": 64 * 1024,
        "canary_rows": 32,
        **overrides,
    }
    return ApiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def score_params() -> ScoreParams:
    return ScoreParams()
