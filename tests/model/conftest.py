"""Shared fixtures of the model tests: a fabricated feature table and small, fast models on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.config import BoosterParams, SearchParams, TrainParams
from models.train import TrainedModel, fit_model
from tests.model.fabricate import fabricate_features

HORIZON_DAYS = 100


def small_params(**overrides: object) -> TrainParams:
    """Few, fast trees on one thread: enough to learn the planted effects."""
    booster = BoosterParams(
        learning_rate=0.1, num_boost_round=200, early_stopping_rounds=20, min_data_in_leaf=50
    )
    overrides.setdefault("search", SearchParams(trials=0))  # the configured booster, no search
    return TrainParams(num_threads=1, churn=booster, winback=booster, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def fabricated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature table, ground truth) with planted effects, 1500 clients x 25 cutoffs."""
    return fabricate_features(1500, seed=3)


@pytest.fixture(scope="session")
def churn_model(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    return fit_model(fabricated[0], "churn", small_params(), horizon_days=HORIZON_DAYS)


@pytest.fixture(scope="session")
def winback_model(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    return fit_model(fabricated[0], "winback", small_params(), horizon_days=HORIZON_DAYS)


SAMPLE_CLIENTS = 8000


@pytest.fixture(scope="session")
def sample_features(sample_work: Path) -> pd.DataFrame:
    """The feature table of the real pipeline on the seeded sample (see ``sample_work``)."""
    return pd.read_parquet(sample_work / "features" / "features.parquet")


@pytest.fixture(scope="session")
def sample_summary(sample_work: Path) -> dict[str, Any]:
    """features_summary.json of that run (cutoffs, fitted rhythm constants per cutoff)."""
    import json

    return dict(json.loads((sample_work / "features" / "features_summary.json").read_text()))


@pytest.fixture(scope="session")
def sample_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real generate -> ingest -> features pipeline on a seeded sample (8000 clients)."""
    import os
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    work = tmp_path_factory.mktemp("sample")
    shutil.copy(root / "params.yaml", work / "params.yaml")
    exe = Path(sys.executable).parent / "comeback"
    cli = str(exe) if exe.exists() else "comeback"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    for args in (
        ["generate", "--clients", str(SAMPLE_CLIENTS), "--seed", "7", "--out", "raw"],
        ["ingest", "--raw", "raw", "--out", "clean"],
        ["features", "--clean", "clean", "--out", "features"],
    ):
        done = subprocess.run([cli, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"comeback {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return work


@pytest.fixture(scope="session")
def sample_churn_model(sample_features: pd.DataFrame) -> TrainedModel:
    """A churn model trained on the sample (defaults except one thread)."""
    params = TrainParams(num_threads=1, search=SearchParams(trials=0))
    return fit_model(sample_features, "churn", params, horizon_days=HORIZON_DAYS)
