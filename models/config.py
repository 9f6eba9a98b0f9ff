"""Typed parameters of the train, evaluate and promote steps (params.yaml `train:`, `evaluate:`, `promote:`).

The field names are the params.yaml keys and, flattened (`train.churn.learning_rate`), the MLflow
param names, so `dvc exp run -S train.churn.learning_rate=0.03` and the MLflow UI speak one language.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ModelKind = Literal["churn", "winback"]
KINDS: tuple[ModelKind, ...] = ("churn", "winback")
CalibrationMethod = Literal["isotonic", "platt"]
SplitMode = Literal["strict", "overlap"]
#: How the folds are cut: ``auto`` picks strict or overlap per fold from the history it is given.
SplitChoice = Literal["auto", "strict", "overlap"]
#: The candidates model selection weighs (models/selection.py).
Candidate = Literal["lightgbm", "logistic_rfm", "blend"]
CANDIDATES: tuple[Candidate, ...] = ("lightgbm", "logistic_rfm", "blend")


class BoosterParams(BaseModel):
    """LightGBM hyperparameters of one model (learning_rate etc. have LightGBM's meaning)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2)
    max_depth: int = -1
    min_data_in_leaf: int = Field(default=100, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: int = Field(default=1, ge=0)
    lambda_l2: float = Field(default=1.0, ge=0)
    # extremely randomised splits (one random threshold per feature): a regulariser for small
    # populations such as a one-year export's win-back rows (the search also tries it)
    extra_trees: bool = False
    num_boost_round: int = Field(default=1000, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)


class SearchParams(BaseModel):
    """The `train.search:` section: the budget of the hyperparameter search of each booster.

    The search (Optuna's TPE sampler, seeded with ``train.seed``) stops after ``trials`` trials or
    ``seconds`` seconds, whichever comes first; only the trial budget is reproducible (a time budget
    cuts the search wherever the machine's speed puts it). 0 trials: the booster params as written.
    """

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=20, ge=0)
    seconds: float = Field(default=120.0, gt=0)
    # training rows per fold part in the search, thinned by whole clients beyond it (the final
    # model trains on every row)
    max_rows: int = Field(default=200_000, ge=1_000)


class TrainParams(BaseModel):
    """The `train:` section: shared settings, the selection protocol and one BoosterParams per model.

    Model selection (models/selection.py) validates on ``folds`` cutoffs before the test cutoff,
    searches each booster within ``search``, weighs the ``candidates`` and keeps the best on validation.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    num_threads: int = Field(default=2, ge=1)
    calibration: CalibrationMethod = "platt"
    # auto: per fold, strict where the history allows it (training label windows end before the
    # validation cutoff), else overlap with client-disjoint folds (training windows only end before
    # the test cutoff). The test cutoff is never touched by fitting or choosing.
    split: SplitChoice = "auto"
    # None: the latest cutoff whose label window is fully observed
    test_cutoff: dt.date | None = None
    folds: int = Field(default=3, ge=1, le=12)
    min_rows: int = Field(default=100, ge=10)  # fewer training or validation rows: the population stops
    min_positives: int = Field(default=10, ge=1)  # ... or fewer events (or non-events) than this
    candidates: list[Candidate] = Field(default_factory=lambda: list(CANDIDATES))
    search: SearchParams = SearchParams()
    experiment: str = "comeback"
    register_models: bool = True  # register both models in MLflow (alias challenger)
    churn: BoosterParams = BoosterParams()
    winback: BoosterParams = BoosterParams()

    def booster(self, kind: ModelKind) -> BoosterParams:
        """The hyperparameters of the ``kind`` model."""
        return self.churn if kind == "churn" else self.winback

    def flat(self, prefix: str = "train") -> dict[str, Any]:
        """Flattened ``{"train.churn.learning_rate": 0.05, ...}`` for MLflow params."""
        return flatten(self.model_dump(), prefix)


class EvaluateParams(BaseModel):
    """The `evaluate:` section: bootstrap size, calibration bins and the seed of the resampling."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: int = Field(default=200, ge=10)
    ece_bins: int = Field(default=10, ge=2)
    seed: int = 0


class PromoteParams(BaseModel):
    """The `promote:` section: how much worse a challenger may be and still replace the champion.

    The challenger is promoted when roc_auc(challenger) >= roc_auc(champion) - tolerance_roc_auc and
    brier(challenger) <= brier(champion) + tolerance_brier, both on the same test cutoff.
    """

    model_config = ConfigDict(extra="forbid")

    tolerance_roc_auc: float = Field(default=0.005, ge=0)
    tolerance_brier: float = Field(default=0.002, ge=0)


def flatten(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Nested dict -> ``{"prefix.a.b": value}`` (the params.yaml path of every leaf)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out
