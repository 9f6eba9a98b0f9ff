"""Training is deterministic and records what the registry and the model card need."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.train import TrainedModel, fit_model
from tests.model.conftest import HORIZON_DAYS, small_params


def test_same_data_and_params_give_the_same_model(
    winback_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    again = fit_model(fabricated[0], "winback", small_params(), horizon_days=HORIZON_DAYS)
    assert again.model.booster.model_to_string() == winback_model.model.booster.model_to_string()
    assert again.model.calibrator.to_json() == winback_model.model.calibrator.to_json()


def test_trained_model_carries_split_metrics_and_importance(churn_model: TrainedModel) -> None:
    assert churn_model.model.booster.num_trees() == churn_model.best_iteration
    assert set(churn_model.metrics) == {"valid", "test"}
    assert 0.5 < churn_model.metrics["test"]["roc_auc"] <= 1.0
    assert set(churn_model.calibration_check) == {"valid_cv_ece_isotonic", "valid_cv_ece_platt"}
    top = churn_model.importance["feature"].head(3).tolist()
    # the fabricated churn label is driven by recency, orders and open complaint severity
    assert "recency_days" in top
    assert np.all(np.diff(churn_model.importance["gain"].to_numpy()) <= 0)
