"""Honest out-of-time evaluation of a trained model against two baselines and the true probabilities.

Everything is scored on the test cutoff of the model's own time split (train.test_cutoff, or the
latest cutoff with a fully observed label window), which the model never saw: not for fitting,
early stopping, selection or calibration. The recency and logistic baselines are fitted on the same
training rows as the model; BG/NBD on every client's order history before the test cutoff.
Intervals are percentile bootstraps over test rows (``evaluate.bootstrap`` resamples);
model-minus-baseline differences use paired resamples, so their interval is about the difference
itself; ``model_minus_best_baseline`` is the one against the baseline best on the test cutoff.

With the synthetic generator's ground truth two oracles are scored (see pipeline/synthetic.py):

- ``oracle``: the observable oracle (``*_probability_observable``), the true probability given
  the client's latent parameters and its order history, with the hidden alive/dormant state since
  the last order integrated out: the fair "best possible ranking from history" bound, the one the
  targets (ROC-AUC within 0.02 / 0.03) are measured against;
- ``oracle_clairvoyant``: the true probability given the full latent state at the cutoff
  (``*_probability``), including whether the client is already secretly dormant; no model of the
  CRM history can reach it, it shows how much is unknowable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from models.baselines import fit_bgnbd_baseline, fit_logistic_rfm_baseline, fit_recency_baseline
from models.config import EvaluateParams, ModelKind
from models.dataset import SplitFrames, TimeSplit, cutoff_dates, frames_for_split
from models.metrics import (
    bootstrap_indices,
    bootstrap_interval,
    brier,
    paired_differences,
    pr_auc,
    roc_auc,
    score_all,
)
from models.scorer import LoadedModel

log = logging.getLogger(__name__)

#: Metric names that go to metrics.json (the rest of a forecast's numbers go to details.json).
HEADLINE = ("roc_auc", "pr_auc", "brier", "ece", "lift_10", "capture_10")
PROBABILITY_OF: dict[ModelKind, str] = {"churn": "churn_probability", "winback": "winback_probability"}
#: forecast name -> suffix of the ground-truth column (``churn_probability`` + suffix)
ORACLES: dict[str, str] = {"oracle": "_observable", "oracle_clairvoyant": ""}
SEGMENTS: dict[ModelKind, dict[str, tuple[str, ...]]] = {
    "churn": {"new": ("new",), "established": ("active",)},
    "winback": {"lapsed_90": ("lapsed_90",), "lapsed_180": ("lapsed_180",), "lapsed_360": ("lapsed_360",)},
}


#: The baselines, in the order reports list them.
BASELINES = ("recency", "logistic_rfm", "bgnbd")
PREDICTIONS_FILE = "predictions.parquet"
#: Columns of predictions.parquet (one row per test client and task; baselines beside the model).
PREDICTION_COLUMNS = ("client_id", "cutoff_at", "task", "probability", "label")


@dataclass
class KindEvaluation:
    """The evaluation of one model: metrics, details, the data behind the plots and the predictions."""

    kind: ModelKind
    metrics: dict[str, dict[str, float]]  # forecast -> headline metrics (metrics.json)
    details: dict[str, Any]  # every number incl. intervals, differences, segments (details.json)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)  # plot name -> data
    predictions: pd.DataFrame | None = None  # PREDICTION_COLUMNS + probability_<baseline>


def evaluate_kind(
    features: pd.DataFrame,
    model: LoadedModel,
    params: EvaluateParams,
    *,
    split: TimeSplit,
    truth: pd.DataFrame | None = None,
    importance: pd.DataFrame | None = None,
) -> KindEvaluation:
    """Score ``model`` and the baselines on the test cutoff of ``split`` (see module docstring).

    ``split`` is the model's own final split (split.json of its folder): its test cutoff, and its
    training rows on which the recency and logistic baselines are fitted. BG/NBD is fitted on every
    client's history at the test cutoff. ``truth`` is the generator's ground truth (client_id,
    cutoff_at, churn_probability, winback_probability, and their ``*_observable`` versions); when
    given, both oracles (see the module docstring) are scored on the test rows they cover.
    """
    frames = frames_for_split(features, split)
    at_test = features.loc[(cutoff_dates(features) == split.test_cutoff).to_numpy()]
    return evaluate_frames(frames, model, params, truth=truth, importance=importance, history=at_test)


def evaluate_frames(
    frames: SplitFrames,
    model: LoadedModel,
    params: EvaluateParams,
    *,
    truth: pd.DataFrame | None = None,
    importance: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
) -> KindEvaluation:
    """:func:`evaluate_kind` on an existing split; ``history`` (every row at the test cutoff) feeds
    the BG/NBD baseline, which is left out without it."""
    kind = frames.split.kind
    test = frames.test
    y = test["label"].to_numpy()
    y_train = frames.train["label"].to_numpy()
    forecasts: dict[str, np.ndarray] = {
        "model": model.predict_probability(test),
        "recency": fit_recency_baseline(frames.train, y_train).predict_probability(test),
        "logistic_rfm": fit_logistic_rfm_baseline(
            frames.train, y_train, seed=params.seed
        ).predict_probability(test),
    }
    if history is not None:
        bgnbd = fit_bgnbd_baseline(
            history,
            horizon_days=frames.split.horizon_days,
            event="purchase" if kind == "winback" else "no_purchase",
        )
        if bgnbd is not None:
            forecasts["bgnbd"] = bgnbd.predict_probability(test)
    idx = bootstrap_indices(len(y), params.bootstrap, params.seed)
    details: dict[str, Any] = {
        "split": frames.split.to_json(),
        "model_version": model.version,
        "forecasts": {},
    }
    metrics: dict[str, dict[str, float]] = {}
    for name, p in forecasts.items():
        full = score_all(y, p, ece_bins=params.ece_bins)
        full["roc_auc_ci_low"], full["roc_auc_ci_high"] = bootstrap_interval(y, p, roc_auc, idx)
        details["forecasts"][name] = full
        metrics[name] = {k: full[k] for k in HEADLINE}
    paired = {"roc_auc": roc_auc, "pr_auc": pr_auc, "brier": brier}
    baselines = [b for b in BASELINES if b in forecasts]
    details["model_minus_baseline"] = {
        base: paired_differences(y, forecasts["model"], forecasts[base], paired, idx) for base in baselines
    }
    best = max(baselines, key=lambda b: details["forecasts"][b]["roc_auc"])
    details["best_baseline"] = best
    details["model_minus_best_baseline"] = details["model_minus_baseline"][best]
    details["segments"] = _segments(kind, test, y, forecasts, params)

    if truth is not None:
        for name, suffix in ORACLES.items():
            oracle = _oracle(kind, test, truth, PROBABILITY_OF[kind] + suffix)
            if oracle is None:
                continue
            mask, p_oracle = oracle
            y_o = y[mask]
            idx_o = bootstrap_indices(len(y_o), params.bootstrap, params.seed)
            full = score_all(y_o, p_oracle, ece_bins=params.ece_bins)
            full["roc_auc_ci_low"], full["roc_auc_ci_high"] = bootstrap_interval(
                y_o, p_oracle, roc_auc, idx_o
            )
            full["coverage"] = float(mask.mean())
            details["forecasts"][name] = full
            metrics[name] = {k: full[k] for k in HEADLINE}
            # paired on the same resamples: the interval is about the gap itself
            details[f"model_minus_{name}"] = paired_differences(
                y_o, forecasts["model"][mask], p_oracle, paired, idx_o
            )
            forecasts[name] = np.full(len(y), np.nan)
            forecasts[name][mask] = p_oracle
    predictions = pd.DataFrame(
        {
            "client_id": test["client_id"].astype(str).to_numpy(),
            "cutoff_at": pd.to_datetime(test["cutoff_at"], utc=True).to_numpy(),
            "task": kind,
            "probability": forecasts["model"],
            "label": y.astype("int8"),
            **{f"probability_{b}": forecasts[b] for b in baselines},
        }
    )
    curves = _curves(y, forecasts, params.ece_bins)
    if importance is not None:
        curves["importance"] = importance.loc[:, ["feature", "gain"]].head(20).reset_index(drop=True)
    log.info(
        "%s test %s: model roc_auc %.4f [%.4f, %.4f], recency %.4f, logistic_rfm %.4f%s",
        kind,
        frames.split.test_cutoff,
        metrics["model"]["roc_auc"],
        details["forecasts"]["model"]["roc_auc_ci_low"],
        details["forecasts"]["model"]["roc_auc_ci_high"],
        metrics["recency"]["roc_auc"],
        metrics["logistic_rfm"]["roc_auc"],
        "".join(f", {name} {metrics[name]['roc_auc']:.4f}" for name in ORACLES if name in metrics),
    )
    return KindEvaluation(kind=kind, metrics=metrics, details=details, curves=curves, predictions=predictions)


def _segments(
    kind: ModelKind,
    test: pd.DataFrame,
    y: np.ndarray,
    forecasts: dict[str, np.ndarray],
    params: EvaluateParams,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    states = test["state"].to_numpy()
    for segment, members in SEGMENTS[kind].items():
        mask = np.isin(states, members)
        if mask.sum() == 0:
            out[segment] = {"rows": 0}
            continue
        out[segment] = {
            name: score_all(y[mask], p[mask], ece_bins=params.ece_bins) for name, p in forecasts.items()
        }
    return out


def _oracle(
    kind: ModelKind, test: pd.DataFrame, truth: pd.DataFrame, column: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask of test rows with a true probability in ``column``, those probabilities) or None
    without that column or without coverage."""
    if column not in truth.columns:
        log.warning(
            "ground truth has no %s column (older generator?): no oracle from it for %s", column, kind
        )
        return None
    t = truth.loc[truth[column].notna(), ["client_id", "cutoff_at", column]].copy()
    t["cutoff_at"] = pd.to_datetime(t["cutoff_at"], utc=True)
    t["client_id"] = t["client_id"].astype(str)
    keys = test[["client_id", "cutoff_at"]].copy()
    keys["cutoff_at"] = pd.to_datetime(keys["cutoff_at"], utc=True)
    keys["client_id"] = keys["client_id"].astype(str)
    merged = keys.merge(
        t.drop_duplicates(["client_id", "cutoff_at"]), on=["client_id", "cutoff_at"], how="left"
    )
    p = merged[column].to_numpy(dtype="float64", na_value=np.nan)
    mask = ~np.isnan(p)
    if mask.sum() == 0:
        log.warning("ground truth covers none of the %s test rows: no oracle", kind)
        return None
    return mask, p[mask]


def _curves(y: np.ndarray, forecasts: dict[str, np.ndarray], bins: int) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall, reliability and cumulative-gains points per forecast (long format)."""
    roc, pr, rel, gains = [], [], [], []
    for name, p_all in forecasts.items():
        ok = ~np.isnan(p_all)
        yy, p = y[ok], p_all[ok]
        fpr, tpr, _ = roc_curve(yy, p)
        keep = _thin(len(fpr))
        roc.append(pd.DataFrame({"forecast": name, "fpr": fpr[keep], "tpr": tpr[keep]}))
        precision, recall, _ = precision_recall_curve(yy, p)
        keep = _thin(len(recall))
        pr.append(pd.DataFrame({"forecast": name, "recall": recall[keep], "precision": precision[keep]}))
        order = np.argsort(p, kind="stable")
        for chunk in np.array_split(order, bins):
            rel.append(
                pd.DataFrame(
                    {
                        "forecast": [name],
                        "mean_probability": [float(p[chunk].mean())],
                        "observed_rate": [float(yy[chunk].mean())],
                        "rows": [len(chunk)],
                    }
                )
            )
        desc = np.argsort(-p, kind="stable")
        captured = np.cumsum(yy[desc]) / max(yy.sum(), 1)
        share = np.arange(1, len(yy) + 1) / len(yy)
        keep = np.unique(np.linspace(0, len(yy) - 1, 101).round().astype(int))
        gains.append(
            pd.DataFrame(
                {"forecast": name, "share_contacted": share[keep], "share_of_events_captured": captured[keep]}
            )
        )
    return {
        "roc": pd.concat(roc, ignore_index=True),
        "precision_recall": pd.concat(pr, ignore_index=True),
        "calibration": pd.concat(rel, ignore_index=True),
        "gains": pd.concat(gains, ignore_index=True),
    }


def _thin(n: int, points: int = 200) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))
