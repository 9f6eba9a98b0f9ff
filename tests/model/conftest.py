"""Shared fixtures of the model tests: a fabricated feature table and small, fast models on it."""

from __future__ import annotations

import pandas as pd
import pytest

from models.config import BoosterParams, TrainParams
from models.train import TrainedModel, fit_model
from tests.model.fabricate import fabricate_features

HORIZON_DAYS = 100


def small_params(**overrides: object) -> TrainParams:
    """Few, fast trees on one thread: enough to learn the planted effects."""
    booster = BoosterParams(
        learning_rate=0.1, num_boost_round=200, early_stopping_rounds=20, min_data_in_leaf=50
    )
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
