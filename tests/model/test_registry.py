"""Registry: challengers get registered, champion moves only after a comparison, loads by alias."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.config import PromoteParams
from models.dataset import default_feature_names, split_frames
from models.registry import log_and_register, promote_kind
from models.scorer import load_model
from models.train import TrainedModel, fit_on_frames, save_trained_model
from tests.model.conftest import HORIZON_DAYS, small_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shuffled_churn_model(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    """A deliberately worse model: the same rows with their labels shuffled."""
    frames = split_frames(fabricated[0], "churn", HORIZON_DAYS)
    rng = np.random.default_rng(11)
    shuffled = dataclasses.replace(
        frames,
        train=frames.train.assign(label=rng.permutation(frames.train["label"].to_numpy())),
        valid=frames.valid.assign(label=rng.permutation(frames.valid["label"].to_numpy())),
    )
    return fit_on_frames(shuffled, small_params(), feature_names=default_feature_names())


def _register(model: TrainedModel, folder: Path, uri: str) -> str:
    save_trained_model(model, folder)
    reg = log_and_register(
        model,
        folder,
        tracking_uri=uri,
        experiment="test",
        params={"train.seed": 42},
        data_source="features.parquet",
    )
    return reg.version


@pytest.mark.slow
def test_worse_challenger_stays_out_and_better_one_is_promoted(
    tmp_path: Path,
    churn_model: TrainedModel,
    shuffled_churn_model: TrainedModel,
    fabricated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    features = fabricated[0]
    params = PromoteParams(tolerance_roc_auc=0.005, tolerance_brier=0.002)

    v1 = _register(shuffled_churn_model, tmp_path / "v1", uri)
    first = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert first["decision"] == "promoted" and first["champion"] is None

    v2 = _register(churn_model, tmp_path / "v2", uri)
    better = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert better["decision"] == "promoted", better
    assert better["scores"]["challenger"]["roc_auc"] > better["scores"]["champion"]["roc_auc"]

    v3 = _register(shuffled_churn_model, tmp_path / "v3", uri)
    worse = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert worse["decision"] == "rejected", worse
    assert "roc_auc" in worse["reason"]

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("comeback-churn", "champion").version) == v2
    assert str(client.get_model_version_by_alias("comeback-churn", "challenger").version) == v3
    tags = client.get_model_version("comeback-churn", v3).tags
    assert tags["promotion_decision"] == "rejected"
    assert tags["promotion_compared_to"] == v2
    assert float(tags["promotion_champion_roc_auc"]) > float(tags["promotion_challenger_roc_auc"])
    assert v1 == "1" and v3 == "3"

    # the champion loads by alias in a fresh process and scores like the model that was registered
    X = features[features["state"].isin(["new", "active"])].head(20)
    X.to_parquet(tmp_path / "rows.parquet")
    code = (
        "import json, sys, pandas as pd; from models.scorer import load_model; "
        "m = load_model('churn'); X = pd.read_parquet(sys.argv[1]); "
        "print(json.dumps({'version': m.version, 'p': m.predict_probability(X).tolist()}))"
    )
    env = {**os.environ, "COMEBACK_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "rows.parquet")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["version"] == v2
    np.testing.assert_allclose(result["p"], churn_model.model.predict_probability(X))
    assert load_model("churn", tracking_uri=uri, alias="challenger").version == v3
