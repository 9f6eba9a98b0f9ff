"""Evaluation on the fabricated table: every number present, consistent, and written where DVC looks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.config import EvaluateParams
from models.dataset import frames_for_split
from models.evaluate import HEADLINE, evaluate_kind
from models.model_card import render_model_card
from models.plots import write_plots
from models.scorer import tracking_uri_from_env
from models.train import TrainedModel


def test_evaluation_scores_model_baselines_and_oracle(
    tmp_path: Path, churn_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    features, truth = fabricated
    result = evaluate_kind(
        features,
        churn_model.model,
        EvaluateParams(bootstrap=50),
        split=churn_model.split,
        truth=truth,
        importance=churn_model.importance,
    )
    assert {"model", "recency", "logistic_rfm", "oracle", "oracle_clairvoyant"} <= set(result.metrics)
    assert set(result.metrics) - {"model", "oracle", "oracle_clairvoyant"} <= {
        "recency",
        "logistic_rfm",
        "bgnbd",
    }
    # the paired difference against the best baseline on this cutoff
    best = result.details["best_baseline"]
    assert result.details["forecasts"][best]["roc_auc"] == max(
        result.details["forecasts"][b]["roc_auc"] for b in result.details["model_minus_baseline"]
    )
    assert result.details["model_minus_best_baseline"] == result.details["model_minus_baseline"][best]
    # per-client test predictions for re-scoring elsewhere
    pred = result.predictions
    assert pred is not None and list(pred.columns[:5]) == [
        "client_id",
        "cutoff_at",
        "task",
        "probability",
        "label",
    ]
    assert len(pred) == churn_model.split.test_rows and set(pred["task"]) == {"churn"}
    assert pred["probability"].to_numpy() == pytest.approx(
        churn_model.model.predict_probability(churn_model_test(churn_model, features))
    )
    for forecast in result.metrics.values():
        assert set(forecast) == set(HEADLINE)
    model = result.details["forecasts"]["model"]
    assert model["roc_auc_ci_low"] < model["roc_auc"] < model["roc_auc_ci_high"]
    assert model["rows"] == churn_model.split.test_rows
    # the test-cutoff numbers recorded at training time are the ones evaluation finds
    assert model["roc_auc"] == pytest.approx(churn_model.metrics["test"]["roc_auc"])
    assert result.details["forecasts"]["oracle"]["coverage"] == pytest.approx(1.0)
    # fabricated truth: both oracles are the same probabilities, so their scores and gaps agree
    assert result.metrics["oracle"] == result.metrics["oracle_clairvoyant"]
    gap = result.details["model_minus_oracle"]
    assert gap == result.details["model_minus_oracle_clairvoyant"]
    assert gap["roc_auc_diff_ci_low"] <= gap["roc_auc_diff"] <= gap["roc_auc_diff_ci_high"]
    assert gap["roc_auc_diff"] == pytest.approx(
        result.metrics["model"]["roc_auc"] - result.metrics["oracle"]["roc_auc"]
    )
    # planted effects: the model must beat recency alone, with a paired interval above zero
    vs_recency = result.details["model_minus_baseline"]["recency"]
    assert vs_recency["roc_auc_diff_ci_low"] > 0
    assert set(result.details["segments"]) == {"new", "established"}

    files = write_plots(result, tmp_path / "plots")
    names = {p.name for p in files}
    for plot in ("roc", "precision_recall", "calibration", "gains"):
        assert f"{plot}_model.csv" in names and f"{plot}_oracle.csv" in names and f"{plot}.png" in names
        assert f"{plot}_oracle_clairvoyant.csv" in names
    roc = pd.read_csv(tmp_path / "plots" / "churn" / "roc_model.csv")
    assert list(roc.columns) == ["fpr", "tpr"] and roc["fpr"].is_monotonic_increasing
    json.dumps(result.details)  # details.json must be serialisable as is

    card = render_model_card(
        "churn",
        model_name="comeback-churn",
        model_version="local",
        split=result.details["split"],
        details=result.details,
        importance=churn_model.importance,
        calibration="platt",
        selection=churn_model.selection,
    )
    assert str(churn_model.split.test_cutoff) in card and "logistic_rfm" in card
    # the selection table: every candidate with its validation score per fold, and the winner
    assert "## Model selection" in card and f"| {churn_model.selection['winner']} **(selected)** |" in card
    for fold in churn_model.selection["folds"]:
        assert fold["valid_cutoff"] in card
    assert "- vs oracle (observable oracle" in card and "- vs oracle_clairvoyant (clairvoyant" in card


def churn_model_test(model: TrainedModel, features: pd.DataFrame) -> pd.DataFrame:
    """The test rows of the model's own split."""
    return frames_for_split(features, model.split).test


def test_truth_without_observable_columns_scores_only_the_clairvoyant_oracle(
    churn_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    """A truth file of an older generator: the fair oracle is missing and said so, never substituted."""
    features, truth = fabricated
    old = truth.drop(columns=["churn_probability_observable", "winback_probability_observable"])
    with caplog.at_level("WARNING", logger="models.evaluate"):
        result = evaluate_kind(
            features, churn_model.model, EvaluateParams(bootstrap=20), split=churn_model.split, truth=old
        )
    assert "oracle_clairvoyant" in result.metrics and "oracle" not in result.metrics
    assert "model_minus_oracle" not in result.details
    assert "churn_probability_observable" in caplog.text


def test_tracking_uri_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("COMEBACK_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri_from_env() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri_from_env() == "http://mlflow:5000"
    monkeypatch.setenv("COMEBACK_TRACKING_URI", "sqlite:////data/comeback.db")
    assert tracking_uri_from_env() == "sqlite:////data/comeback.db"
