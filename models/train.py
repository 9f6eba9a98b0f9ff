"""Fit the calibrated churn and win-back models chosen by rolling-origin model selection.

``fit_churn_model`` / ``fit_winback_model`` take the feature table (a DataFrame) and the typed
``train:`` params and return a :class:`TrainedModel`: the selected candidate written as one LightGBM
booster, its calibrator, the final split, the metrics on the calibration rows and on the test
cutoff, and the selection record (models/selection.py: folds, candidates, search, guard). Nothing
here reads files, params.yaml or the environment.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.calibration import fit_calibrator
from models.config import KINDS, CalibrationMethod, ModelKind, TrainParams
from models.dataset import TimeSplit
from models.io import write_csv_atomic, write_json_atomic, write_text_atomic
from models.metrics import ece, score_all
from models.scorer import (
    BOOSTER_FILE,
    CALIBRATION_FILE,
    FEATURES_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SELECTION_FILE,
    SPLIT_FILE,
    LoadedModel,
    registered_name,
)
from models.selection import select_model

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
    selection: dict[str, Any] = field(default_factory=dict)  # selection.json (models/selection.py)

    @property
    def kind(self) -> ModelKind:
        return self.model.kind

    @property
    def guard_passed(self) -> bool:
        """Whether the model may be registered as challenger (models.selection.guard_verdict)."""
        return bool(self.selection.get("guard", {}).get("passed", True))


def fit_churn_model(features: pd.DataFrame, params: TrainParams, *, horizon_days: int) -> TrainedModel:
    """Churn model: active and new clients; event = no completed order within ``horizon_days`` days."""
    return fit_model(features, "churn", params, horizon_days=horizon_days)


def fit_winback_model(features: pd.DataFrame, params: TrainParams, *, horizon_days: int) -> TrainedModel:
    """Win-back model: lapsed clients (90/180/360); event = a completed order within ``horizon_days``."""
    return fit_model(features, "winback", params, horizon_days=horizon_days)


def fit_model(
    features: pd.DataFrame, kind: ModelKind, params: TrainParams, *, horizon_days: int
) -> TrainedModel:
    """Select and fit the ``kind`` model (models/selection.py), then score it on validation and test."""
    started = time.perf_counter()
    sel = select_model(features, kind, params, horizon_days=horizon_days)
    fit_seconds = time.perf_counter() - started
    frames = sel.frames
    model = LoadedModel(
        kind=kind,
        name=registered_name(kind),
        version="local",
        booster=sel.booster,
        calibrator=sel.calibrator,
        feature_names=list(sel.feature_names),
        num_threads=params.num_threads,
    )
    p_valid = sel.calibrator(sel.calibration_raw)
    p_test = model.predict_probability(frames.test)
    y_test = frames.test["label"].to_numpy()
    metrics = {"valid": score_all(sel.calibration_y, p_valid), "test": score_all(y_test, p_test)}
    model.metrics = dict(metrics["test"])
    importance = pd.DataFrame(
        {
            "feature": list(sel.feature_names),
            "gain": sel.booster.feature_importance(importance_type="gain"),
            "split": sel.booster.feature_importance(importance_type="split"),
        }
    ).sort_values("gain", ascending=False, kind="stable", ignore_index=True)
    log.info(
        "%s: %s, %d trees, valid roc_auc %.4f, test roc_auc %.4f ece %.4f (%.1f s)",
        kind,
        sel.winner,
        sel.booster.num_trees(),
        metrics["valid"]["roc_auc"],
        metrics["test"]["roc_auc"],
        metrics["test"]["ece"],
        fit_seconds,
    )
    return TrainedModel(
        model=model,
        split=frames.split,
        best_iteration=int(sel.booster.num_trees()),
        fit_seconds=fit_seconds,
        metrics=metrics,
        calibration_check=compare_calibrations(sel.calibration_raw, sel.calibration_y, seed=params.seed),
        importance=importance,
        train_frame=frames.train,
        input_example=frames.test[list(sel.feature_names)].head(5).reset_index(drop=True),
        selection=sel.record,
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
    write_json_atomic(folder / SELECTION_FILE, trained.selection)
    write_json_atomic(
        folder / MODEL_FILE,
        {
            "kind": m.kind,
            "name": m.name,
            "candidate": trained.selection.get("winner", "lightgbm"),
            "calibration": m.calibrator.method,
            "trees": trained.best_iteration,
            "fit_seconds": round(trained.fit_seconds, 3),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "guard": trained.selection.get("guard", {"passed": True, "reasons": []}),
            **(extra or {}),
        },
    )
    write_csv_atomic(folder / "importance.csv", trained.importance)


def fit_all(
    features: pd.DataFrame, params: TrainParams, *, horizon_days: int
) -> dict[ModelKind, TrainedModel]:
    """Both models on the same feature table."""
    fitters = {"churn": fit_churn_model, "winback": fit_winback_model}
    return {kind: fitters[kind](features, params, horizon_days=horizon_days) for kind in KINDS}
