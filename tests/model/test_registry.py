"""Registry: challengers get registered, champion moves only after a comparison, loads by alias."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.config import PromoteParams
from models.registry import log_and_register, promote_kind
from models.scorer import load_model
from models.train import TrainedModel, fit_model, save_trained_model
from tests.model.conftest import HORIZON_DAYS, small_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shuffled_churn_model(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    """A useless model: the same table with its churn labels shuffled (fails the guard)."""
    frame = fabricated[0].copy()
    known = frame["churn_label"].notna()
    rng = np.random.default_rng(11)
    frame.loc[known, "churn_label"] = rng.permutation(frame.loc[known, "churn_label"].to_numpy())
    return fit_model(frame, "churn", small_params(), horizon_days=HORIZON_DAYS)


@pytest.fixture(scope="module")
def weaker_churn_model(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    """A worse but honest model: the logistic RFM candidate alone (it misses the complaint effect)."""
    params = small_params(candidates=["logistic_rfm"])
    return fit_model(fabricated[0], "churn", params, horizon_days=HORIZON_DAYS)


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
    weaker_churn_model: TrainedModel,
    fabricated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    features = fabricated[0]
    params = PromoteParams(tolerance_roc_auc=0.005, tolerance_brier=0.002)

    assert not shuffled_churn_model.guard_passed and weaker_churn_model.guard_passed
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    # a model that failed the guard is registered, but never as challenger, and promote refuses it
    v1 = _register(shuffled_churn_model, tmp_path / "v1", uri)
    assert "challenger" not in client.get_registered_model("comeback-churn").aliases
    refused = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert refused["decision"] == "refused" and refused["champion"] is None
    assert refused["reason"] == "; ".join(shuffled_churn_model.selection["guard"]["reasons"])

    v2 = _register(churn_model, tmp_path / "v2", uri)
    first = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert first["decision"] == "promoted" and first["champion"] is None

    v3 = _register(weaker_churn_model, tmp_path / "v3", uri)
    worse = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert worse["decision"] == "rejected", worse
    assert "roc_auc" in worse["reason"]
    assert worse["scores"]["challenger"]["roc_auc"] < worse["scores"]["champion"]["roc_auc"]

    assert str(client.get_model_version_by_alias("comeback-churn", "champion").version) == v2
    assert str(client.get_model_version_by_alias("comeback-churn", "challenger").version) == v3
    tags = client.get_model_version("comeback-churn", v3).tags
    assert tags["promotion_decision"] == "rejected" and tags["candidate"] == "logistic_rfm"
    assert tags["promotion_compared_to"] == v2
    assert float(tags["promotion_champion_roc_auc"]) > float(tags["promotion_challenger_roc_auc"])

    # a later useless model supersedes the challenger alias and is refused; the champion stays
    v4 = _register(shuffled_churn_model, tmp_path / "v4", uri)
    assert "challenger" not in client.get_registered_model("comeback-churn").aliases
    again = promote_kind("churn", features, params, horizon_days=HORIZON_DAYS, tracking_uri=uri)
    assert again["decision"] == "refused" and again["challenger"] == v4 and again["champion"] == v2
    assert client.get_model_version("comeback-churn", v4).tags["guard_passed"] == "false"
    assert (v1, v3, v4) == ("1", "3", "4")

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
    assert load_model("churn", tracking_uri=uri, alias="champion").version == v2
