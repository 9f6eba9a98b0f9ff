"""The two baselines every model must beat, fitted on the model's own training rows.

* ``recency``: a monotone (isotonic) fit of the event rate on ``recency_days`` alone, direction
  chosen by the data: the rule of thumb "the longer since the last order, the likelier the loss".
* ``logistic_rfm``: logistic regression on standardized recency, frequency and monetary features
  (counts and amounts log1p-transformed, missing values set to the training median): what a careful
  analyst would build in an afternoon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.dataset import feature_matrix

RECENCY_FEATURE = "recency_days"
#: Recency, frequency, monetary (and tenure) inputs of the logistic baseline.
RFM_FEATURES = (
    "recency_days",
    "tenure_days",
    "orders_90d",
    "orders_365d",
    "orders_total",
    "amount_90d",
    "amount_365d",
    "amount_total",
    "avg_order_amount",
)
#: RFM inputs that are counts or money: heavy right tails, so log1p before standardizing.
LOG_FEATURES = frozenset(RFM_FEATURES) - {"recency_days", "tenure_days"}


@dataclass
class RecencyBaseline:
    """Isotonic event rate as a function of recency_days (days since the last completed order)."""

    iso: IsotonicRegression
    fill: float

    def predict_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Event probability per row of ``frame`` (needs ``recency_days``)."""
        x = feature_matrix(frame, [RECENCY_FEATURE])[:, 0]
        x = np.where(np.isnan(x), self.fill, x)
        return np.clip(np.asarray(self.iso.predict(x), dtype="float64"), 1e-6, 1 - 1e-6)


@dataclass
class LogisticRfmBaseline:
    """Logistic regression on standardized (log1p where skewed) RFM features."""

    model: LogisticRegression
    scaler: StandardScaler
    medians: np.ndarray

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        X = feature_matrix(frame, list(RFM_FEATURES))
        X = np.where(np.isnan(X), self.medians, X)
        for j, name in enumerate(RFM_FEATURES):
            if name in LOG_FEATURES:
                X[:, j] = np.sign(X[:, j]) * np.log1p(np.abs(X[:, j]))
        return np.asarray(self.scaler.transform(X))

    def predict_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Event probability per row of ``frame`` (needs the RFM_FEATURES columns)."""
        return np.asarray(self.model.predict_proba(self._design(frame))[:, 1], dtype="float64")


def fit_recency_baseline(train: pd.DataFrame, y: np.ndarray) -> RecencyBaseline:
    """Fit the monotone recency baseline on training rows ``train`` with 0/1 labels ``y``."""
    x = feature_matrix(train, [RECENCY_FEATURE])[:, 0]
    fill = float(np.nanmedian(x)) if np.isfinite(x).any() else 0.0
    x = np.where(np.isnan(x), fill, x)
    iso = IsotonicRegression(increasing="auto", out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(x, np.asarray(y, dtype="float64"))
    return RecencyBaseline(iso=iso, fill=fill)


def fit_logistic_rfm_baseline(train: pd.DataFrame, y: np.ndarray, *, seed: int = 0) -> LogisticRfmBaseline:
    """Fit the standardized logistic RFM baseline on training rows ``train`` with 0/1 labels ``y``."""
    X = feature_matrix(train, list(RFM_FEATURES))
    medians = np.nanmedian(X, axis=0)
    medians = np.where(np.isnan(medians), 0.0, medians)
    X = np.where(np.isnan(X), medians, X)
    for j, name in enumerate(RFM_FEATURES):
        if name in LOG_FEATURES:
            X[:, j] = np.sign(X[:, j]) * np.log1p(np.abs(X[:, j]))
    scaler = StandardScaler().fit(X)
    model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(scaler.transform(X), np.asarray(y))
    return LogisticRfmBaseline(model=model, scaler=scaler, medians=medians)
