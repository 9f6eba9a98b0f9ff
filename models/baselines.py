"""The baselines every model must beat.

* ``recency``: a monotone (isotonic) fit of the event rate on ``recency_days`` alone, direction
  chosen by the data: the rule of thumb "the longer since the last order, the likelier the loss".
  Fitted on the model's own training rows.
* ``logistic_rfm``: logistic regression on standardized recency, frequency and monetary features
  (counts and amounts log1p-transformed, missing values set to the training median): what a careful
  analyst would build in an afternoon. Fitted on the model's own training rows.
* ``bgnbd``: the BG/NBD buy-till-you-die model (Fader, Hardie and Lee 2005), the vendor tools'
  staple, fitted by maximum likelihood with the ``lifetimes`` library on every client's order
  history before the cutoff (no label is used), then read as the probability of at least one
  purchase within the horizon (:func:`bgnbd_purchase_probability`). lifetimes is archived but works
  on this stack and fits in seconds; its maintained successor pymc-marketing would bring PyMC and
  PyTensor (a C compiler at import, hundreds of MB) for the same four numbers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
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

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """The standardized inputs (log1p where skewed, missing at the training median)."""
        X = feature_matrix(frame, list(RFM_FEATURES))
        X = np.where(np.isnan(X), self.medians, X)
        for j, name in enumerate(RFM_FEATURES):
            if name in LOG_FEATURES:
                X[:, j] = np.sign(X[:, j]) * np.log1p(np.abs(X[:, j]))
        return np.asarray(self.scaler.transform(X))

    def predict_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Event probability per row of ``frame`` (needs the RFM_FEATURES columns)."""
        return np.asarray(self.model.predict_proba(self.design(frame))[:, 1], dtype="float64")


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


log = logging.getLogger(__name__)


def btyd_summary(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequency, recency, T) in lifetimes' sense, in days, from a feature table's rows.

    frequency = repeat completed orders (orders_total - 1), recency = age of the client at its last
    order (first to last order), T = age at the cutoff (days since the first completed order).
    Repeats within a day of the first order count as none (lifetimes counts repeat days). Rows
    without a completed order get NaN.
    """
    orders = feature_matrix(frame, ["orders_total"])[:, 0]
    since_first = feature_matrix(frame, ["days_since_first_order"])[:, 0]
    recency_days = feature_matrix(frame, [RECENCY_FEATURE])[:, 0]
    has = (orders > 0) & np.isfinite(since_first) & np.isfinite(recency_days)
    age_at_last = np.where(has, np.clip(since_first - recency_days, 0.0, None), np.nan)
    # lifetimes counts repeat purchase days: repeats within the first day (t_x < 1) are none,
    # and a repeat at t_x = 0 would make the likelihood log(0)
    frequency = np.where(has, np.where(age_at_last >= 1.0, orders - 1, 0.0), np.nan)
    age_at_last = np.where(has & (frequency == 0), 0.0, age_at_last)
    return frequency, age_at_last, np.where(has, since_first, np.nan)


@dataclass
class BgNbdBaseline:
    """A fitted BG/NBD model (lifetimes' r, alpha, a, b; days) read over ``horizon_days``."""

    fitter: object
    horizon_days: int
    event: str  # "purchase" (win-back) or "no_purchase" (churn)

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.fitter.params_.items()}  # type: ignore[attr-defined]

    def predict_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """P(event within the horizon) per row (needs orders_total, days_since_first_order, recency_days)."""
        x, t_x, age = btyd_summary(frame)
        p = bgnbd_purchase_probability(self.fitter, x, t_x, age, self.horizon_days)
        p = p if self.event == "purchase" else 1.0 - p
        return np.clip(
            np.where(np.isfinite(p), p, np.nanmean(p) if np.isfinite(p).any() else 0.5), 1e-6, 1 - 1e-6
        )


def bgnbd_purchase_probability(
    fitter: object, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray, horizon_days: float
) -> np.ndarray:
    """P(at least one purchase in (T, T + horizon]) under a fitted BG/NBD, per client.

    A client still alive at T stays alive until its next purchase (BG/NBD drops out only right
    after a purchase), and its rate given the history is Gamma(r + x, alpha + T), so
    ``P = P(alive | x, t_x, T) * (1 - ((alpha + T) / (alpha + T + h)) ** (r + x))``; P(alive)
    is lifetimes' ``conditional_probability_alive``.
    """
    params = fitter.params_  # type: ignore[attr-defined]
    r, alpha = float(params["r"]), float(params["alpha"])
    alive = np.asarray(fitter.conditional_probability_alive(frequency, recency, age), dtype="float64")  # type: ignore[attr-defined]
    some = 1.0 - ((alpha + age) / (alpha + age + horizon_days)) ** (r + frequency)
    return np.asarray(alive * some, dtype="float64")


def fit_bgnbd_baseline(history: pd.DataFrame, *, horizon_days: int, event: str) -> BgNbdBaseline | None:
    """Fit BG/NBD on ``history`` (every client's row at the cutoff: its order history before it).

    Returns None (with a warning) when the data cannot be fitted: too few repeat buyers, or the
    optimiser does not converge even with a small penalty.
    """
    from lifetimes import BetaGeoFitter

    x, t_x, age = btyd_summary(history)
    ok = np.isfinite(x) & (age > 0)
    if ok.sum() < 20 or (x[ok] > 0).sum() < 5:
        log.warning(
            "BG/NBD baseline skipped: %d clients with history, %d repeat buyers", ok.sum(), (x[ok] > 0).sum()
        )
        return None
    for penalizer in (0.0, 0.001, 0.01):
        fitter = BetaGeoFitter(penalizer_coef=penalizer)
        try:
            # lifetimes prints the optimiser's state when it fails: keep it out of the stage's output
            with (
                warnings.catch_warnings(),
                np.errstate(all="ignore"),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                fitter.fit(x[ok], t_x[ok], age[ok])
        except Exception as e:  # lifetimes raises ConvergenceError and scipy errors; try a penalty
            log.info("BG/NBD fit with penalizer %s failed: %s", penalizer, e)
            continue
        return BgNbdBaseline(fitter=fitter, horizon_days=horizon_days, event=event)
    log.warning("BG/NBD baseline skipped: the fit did not converge")
    return None
