"""train.<kind>.extra_trees reaches the search's first trial for that model only; off by default."""

from __future__ import annotations

from models.config import BoosterParams, TrainParams
from models.selection import booster_settings


def test_extra_trees_is_per_model_and_off_by_default() -> None:
    params = TrainParams(winback=BoosterParams(extra_trees=True))
    assert booster_settings(params.booster("winback"))["extra_trees"] is True
    assert booster_settings(params.booster("churn"))["extra_trees"] is False
    assert booster_settings(TrainParams().booster("churn"))["extra_trees"] is False
    assert booster_settings(TrainParams().booster("churn"))["pooled"] is False
