"""train.<kind>.extra_trees reaches LightGBM for that model only, and defaults to off."""

from __future__ import annotations

from pathlib import Path

from models.config import BoosterParams, TrainParams
from models.train import lightgbm_params
from pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[2]


def test_extra_trees_is_per_model_and_off_by_default() -> None:
    params = TrainParams(winback=BoosterParams(extra_trees=True))
    assert lightgbm_params("winback", params)["extra_trees"] is True
    assert lightgbm_params("churn", params)["extra_trees"] is False
    assert lightgbm_params("churn", TrainParams())["extra_trees"] is False


def test_online_retail_params_turn_it_on_for_winback_only() -> None:
    train = load_params(ROOT / "params" / "online_retail.yaml").train
    assert train.winback.extra_trees and not train.churn.extra_trees
