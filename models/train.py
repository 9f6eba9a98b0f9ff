"""Fit the calibrated LightGBM churn and win-back models on a leakage-free time split.

``fit_churn_model`` / ``fit_winback_model`` take the feature table (a DataFrame) and the typed
``train:`` params and return a :class:`TrainedModel`: the booster (early-stopped on the validation
cutoff), the calibrator (fitted on the validation cutoff), the split, and the metrics on the
validation and test cutoffs. Nothing here reads files, params.yaml or the environment.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import fit_calibrator
from models.config import KINDS, CalibrationMethod, ModelKind, TrainParams
from models.dataset import SplitFrames, TimeSplit, default_feature_names, feature_matrix, split_frames
from models.io import write_json_atomic, write_text_atomic
from models.metrics import ece, score_all
from models.scorer import (
    BOOSTER_FILE,
    CALIBRATION_FILE,
    FEATURES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SPLIT_FILE,
    LoadedModel,
    registered_name,
)

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A fitted model with everything the registry, the evaluation and the model card need."""

    model: LoadedModel
    split: TimeSplit
    best_iteration: int
    fit_seconds: float
    metrics: dict[str, dict[str, float]]  # {"valid": {...}, "test": {...}}
    calibration_check: dict[str, float]  # cross-fitted validation ECE of isotonic and platt
    importance: pd.DataFrame  # feature, gain, split
    train_frame: pd.DataFrame = field(repr=False)  # the training rows (for the MLflow dataset digest)
    input_example: pd.DataFrame = field(repr=False)

    @property
    def kind(self) -> ModelKind:
        return self.model.kind


def lightgbm_params(kind: ModelKind, params: TrainParams) -> dict[str, Any]:
    """The LightGBM parameter dict: binary objective, deterministic, fixed seed and thread count."""
    b = params.booster(kind)
    return {
        "objective": "binary",
        "metric": ["binary_logloss", "auc"],
        "first_metric_only": True,
        "learning_rate": b.learning_rate,
        "num_leaves": b.num_leaves,
        "max_depth": b.max_depth,
        "min_data_in_leaf": b.min_data_in_leaf,
        "feature_fraction": b.feature_fraction,
        "bagging_fraction": b.bagging_fraction,
        "bagging_freq": b.bagging_freq,
        "lambda_l2": b.lambda_l2,
        "extra_trees": b.extra_trees,
        "seed": params.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": params.num_threads,
        "verbosity": -1,
    }


def fit_churn_model(features: pd.DataFrame, params: TrainParams, *, horizon_days: int) -> TrainedModel:
    """Churn model: active and new clients; event = no completed order within ``horizon_days`` days."""
    return fit_model(features, "churn", params, horizon_days=horizon_days)


def fit_winback_model(features: pd.DataFrame, params: TrainParams, *, horizon_days: int) -> TrainedModel:
    """Win-back model: lapsed clients (90/180/360); event = a completed order within ``horizon_days``."""
    return fit_model(features, "winback", params, horizon_days=horizon_days)


def fit_model(
    features: pd.DataFrame,
    kind: ModelKind,
    params: TrainParams,
    *,
    horizon_days: int,
    feature_names: list[str] | None = None,
) -> TrainedModel:
    """Split, fit with early stopping on the validation cutoff, calibrate there, score valid and test."""
    frames = split_frames(features, kind, horizon_days, params.split)
    names = feature_names or default_feature_names()
    return fit_on_frames(frames, params, feature_names=names)


def fit_on_frames(frames: SplitFrames, params: TrainParams, *, feature_names: list[str]) -> TrainedModel:
    """:func:`fit_model` on an existing split (the registry tests use it with shuffled labels)."""
    kind = frames.split.kind
    started = time.perf_counter()
    X_train = feature_matrix(frames.train, feature_names)
    X_valid = feature_matrix(frames.valid, feature_names)
    y_train = frames.train["label"].to_numpy()
    y_valid = frames.valid["label"].to_numpy()
    b = params.booster(kind)
    train_set = lgb.Dataset(X_train, y_train, feature_name=list(feature_names), free_raw_data=True)
    valid_set = lgb.Dataset(X_valid, y_valid, reference=train_set)
    booster = lgb.train(
        lightgbm_params(kind, params),
        train_set,
        num_boost_round=b.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(b.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    # Keep only the trees up to the best iteration, so the saved model is what was evaluated.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    raw_valid = np.asarray(booster.predict(X_valid, raw_score=True, num_threads=params.num_threads))
    calibrator = fit_calibrator(raw_valid, y_valid, params.calibration)
    check = compare_calibrations(raw_valid, y_valid, seed=params.seed)
    fit_seconds = time.perf_counter() - started

    model = LoadedModel(
        kind=kind,
        name=registered_name(kind),
        version="local",
        booster=booster,
        calibrator=calibrator,
        feature_names=list(feature_names),
        num_threads=params.num_threads,
    )
    p_valid = calibrator(raw_valid)
    p_test = model.predict_probability(frames.test)
    y_test = frames.test["label"].to_numpy()
    metrics = {"valid": score_all(y_valid, p_valid), "test": score_all(y_test, p_test)}
    model.metrics = dict(metrics["test"])
    importance = pd.DataFrame(
        {
            "feature": list(feature_names),
            "gain": booster.feature_importance(importance_type="gain"),
            "split": booster.feature_importance(importance_type="split"),
        }
    ).sort_values("gain", ascending=False, kind="stable", ignore_index=True)
    log.info(
        "%s: %d trees, valid roc_auc %.4f, test roc_auc %.4f ece %.4f (%.1f s)",
        kind,
        best,
        metrics["valid"]["roc_auc"],
        metrics["test"]["roc_auc"],
        metrics["test"]["ece"],
        fit_seconds,
    )
    return TrainedModel(
        model=model,
        split=frames.split,
        best_iteration=best,
        fit_seconds=fit_seconds,
        metrics=metrics,
        calibration_check=check,
        importance=importance,
        train_frame=frames.train,
        input_example=frames.test[list(feature_names)].head(5).reset_index(drop=True),
    )


def compare_calibrations(raw: np.ndarray, y: np.ndarray, *, seed: int, folds: int = 5) -> dict[str, float]:
    """Cross-fitted ECE (10 equal-frequency bins) of isotonic and Platt calibration on held-out rows.

    Each fold's calibrator is fitted on the other folds of the validation cutoff and applied to the
    fold, so the comparison never looks at the test cutoff and does not flatter the more flexible
    isotonic map.
    """
    rng = np.random.default_rng(seed)
    fold_of = rng.integers(0, folds, size=len(y))
    out: dict[str, float] = {}
    methods: tuple[CalibrationMethod, ...] = ("isotonic", "platt")
    for method in methods:
        p = np.empty(len(y))
        for f in range(folds):
            held = fold_of == f
            cal = fit_calibrator(raw[~held], y[~held], method)
            p[held] = cal(raw[held])
        out[f"valid_cv_ece_{method}"] = ece(y, p, 10)
    return out


def save_trained_model(trained: TrainedModel, folder: Path, *, extra: dict[str, Any] | None = None) -> None:
    """Write OUT/<kind>/: booster.txt, calibration.json, feature_names.json, split.json, metrics.json,
    model.json, importance.csv; every file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    m = trained.model
    write_text_atomic(folder / BOOSTER_FILE, m.booster.model_to_string())
    write_json_atomic(folder / CALIBRATION_FILE, m.calibrator.to_json())
    write_json_atomic(folder / FEATURES_FILE, m.feature_names)
    write_json_atomic(folder / SPLIT_FILE, trained.split.to_json())
    write_json_atomic(
        folder / METRICS_FILE, {**trained.metrics, "calibration_check": trained.calibration_check}
    )
    write_json_atomic(
        folder / MODEL_FILE,
        {
            "kind": m.kind,
            "name": m.name,
            "calibration": m.calibrator.method,
            "best_iteration": trained.best_iteration,
            "fit_seconds": round(trained.fit_seconds, 3),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **(extra or {}),
        },
    )
    from models.io import write_csv_atomic

    write_csv_atomic(folder / "importance.csv", trained.importance)


def fit_all(
    features: pd.DataFrame, params: TrainParams, *, horizon_days: int
) -> dict[ModelKind, TrainedModel]:
    """Both models on the same feature table."""
    fitters = {"churn": fit_churn_model, "winback": fit_winback_model}
    return {kind: fitters[kind](features, params, horizon_days=horizon_days) for kind in KINDS}
