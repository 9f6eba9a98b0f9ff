"""The logistic RFM model as LightGBM trees, so that every candidate serves through one booster.

Model selection (``models.selection``) weighs three candidates: the LightGBM booster, the logistic
regression on RFM features (``models.baselines.LogisticRfmBaseline``, the analyst's afternoon
model) and a blend of the two. Serving reads a native ``lightgbm.Booster`` everywhere: the batch's
leaf pass, the API's single-row C API, path attribution for the reasons, the MLflow pyfunc. So the
linear part is written as trees instead of as a second kind of artefact:

* the logistic raw score (log-odds) is a sum of one term per input,
  ``beta_j * (g_j(x_j) - mean_j) / scale_j`` (``g`` = signed log1p for counts and money, missing
  values at the training median), plus the intercept;
* each term is a function of one feature, so it is written as one regression tree on that feature
  alone (:func:`encode_linear`): up to ``LEAVES`` leaves over LightGBM's quantile bins, each leaf the
  mean of the term over the training rows in it. The intercept rides on the first tree;
* :func:`merge_boosters` appends such trees to a booster through LightGBM's own ``LGBM_BoosterMerge``
  (what ``lgb.train(init_model=...)`` uses), so the merged model predicts the sum of both.

The trees reproduce the term within a bin exactly at the bin means; the error sits in the widest
(tail) bins and is reported by :func:`encoding_error` (``model.json`` keeps it). Path attribution on
a one-feature tree gives that feature its term minus the term's training mean: the linear model's
own explanation. Hand-written because no library writes a linear model as LightGBM trees; the tree
fitting itself is LightGBM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.baselines import LOG_FEATURES, RFM_FEATURES, LogisticRfmBaseline, fit_logistic_rfm_baseline
from models.dataset import feature_matrix

#: Leaves (and bins) of the one-feature tree that encodes a linear term.
LEAVES = 511


@dataclass(frozen=True)
class LinearTerms:
    """A fitted logistic RFM model, readable as one additive term per input feature."""

    model: LogisticRfmBaseline
    features: tuple[str, ...]

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """The standardized design matrix (one column per feature of :data:`features`)."""
        return self.model.design(frame)

    def terms(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, features) log-odds terms ``beta_j * z_j``; row sum plus the intercept = the raw score."""
        return self.design(frame) * self.model.model.coef_[0][None, :]

    @property
    def intercept(self) -> float:
        return float(self.model.model.intercept_[0])

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The logistic raw score (log-odds) per row."""
        return self.terms(frame).sum(axis=1) + self.intercept


def fit_linear_terms(train: pd.DataFrame, y: np.ndarray, *, seed: int = 0) -> LinearTerms:
    """Fit the logistic RFM model on ``train`` rows with 0/1 labels ``y``."""
    return LinearTerms(model=fit_logistic_rfm_baseline(train, y, seed=seed), features=tuple(RFM_FEATURES))


def encode_linear(
    linear: LinearTerms,
    frame: pd.DataFrame,
    feature_names: list[str],
    *,
    scale: float = 1.0,
    num_threads: int = 1,
    seed: int = 0,
) -> lgb.Booster:
    """``scale`` x the logistic raw score as one regression tree per RFM feature on ``frame``'s rows.

    ``feature_names`` is the full input list of the booster the trees will be merged into (every
    RFM feature must be in it); each tree sees only its own feature (the others are missing, so
    LightGBM never splits on them).
    """
    missing = [f for f in linear.features if f not in feature_names]
    if missing:
        raise ValueError(f"linear terms need input column(s) {missing} in the model's feature list")
    terms = linear.terms(frame) * scale
    terms[:, 0] += linear.intercept * scale
    raw_x = feature_matrix(frame, feature_names)
    merged: lgb.Booster | None = None
    params = {
        "objective": "regression",
        "num_leaves": LEAVES,
        "max_bin": LEAVES,
        "min_data_in_bin": 1,
        "min_data_in_leaf": 1,
        "min_sum_hessian_in_leaf": 0.0,
        "lambda_l2": 0.0,
        "learning_rate": 1.0,
        "feature_pre_filter": False,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }
    X = np.full_like(raw_x, np.nan)  # one buffer: each tree sees only its own column
    for j, name in enumerate(linear.features):
        col = feature_names.index(name)
        # the logistic model reads a missing value as the training median: so does its tree
        X[:, col] = np.where(np.isnan(raw_x[:, col]), linear.model.medians[j], raw_x[:, col])
        tree = lgb.train(params, lgb.Dataset(X, terms[:, j], feature_name=list(feature_names)), 1)
        X[:, col] = np.nan
        merged = tree if merged is None else merge_boosters(merged, tree)
    assert merged is not None
    return merged


def merge_boosters(first: lgb.Booster, second: lgb.Booster) -> lgb.Booster:
    """One booster whose raw score is ``first``'s plus ``second``'s (trees of ``second`` first).

    Both must have the same inputs. The result is a new booster read back from the merged model
    text, so neither argument is modified and the result is self-contained.
    """
    from lightgbm.basic import _LIB, _safe_call  # the C library lightgbm already loaded

    if first.num_feature() != second.num_feature():
        raise ValueError(
            f"cannot merge boosters with {first.num_feature()} and {second.num_feature()} inputs"
        )
    target = lgb.Booster(model_str=first.model_to_string())
    _safe_call(_LIB.LGBM_BoosterMerge(target._handle, second._handle))
    return lgb.Booster(model_str=target.model_to_string())


def encoding_error(linear: LinearTerms, encoded: lgb.Booster, frame: pd.DataFrame, *, scale: float) -> float:
    """Largest |trees - scale x logistic raw score| over ``frame``'s rows (log-odds units)."""
    X = feature_matrix(frame, list(encoded.feature_name()))
    got = np.asarray(encoded.predict(X, raw_score=True, num_threads=1), dtype="float64")
    return float(np.max(np.abs(got - scale * linear.raw(frame)))) if len(frame) else 0.0


__all__ = ["LEAVES", "LOG_FEATURES", "LinearTerms", "encode_linear", "fit_linear_terms", "merge_boosters"]
