"""Probability calibration of a LightGBM raw score (log-odds), stored as plain numbers.

Both methods map the booster's raw score to a probability and are fitted on the validation cutoff
(rows the trees never saw). They are kept as a few numpy arrays in ``calibration.json`` so serving
applies them with ``np.interp`` or one sigmoid: no sklearn object on the request path.

* isotonic: a monotone step function (sklearn's IsotonicRegression, then its breakpoints), flexible
  but can overfit a small validation set;
* platt: a logistic fit ``p = 1 / (1 + exp(-(a * raw + b)))``, two numbers, smooth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.config import CalibrationMethod
from models.io import write_json_atomic

#: Calibrated probabilities are clipped here so a log-loss never sees 0 or 1.
EPS = 1e-6


@dataclass(frozen=True)
class Calibrator:
    """A fitted map raw score (log-odds) -> calibrated probability."""

    method: CalibrationMethod
    x: np.ndarray = field(default_factory=lambda: np.empty(0))  # isotonic breakpoints (raw score)
    y: np.ndarray = field(default_factory=lambda: np.empty(0))  # isotonic probabilities at x
    a: float = 1.0  # Platt slope
    b: float = 0.0  # Platt intercept

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw scores ``raw`` (any shape)."""
        if self.method == "isotonic":
            p = np.interp(raw, self.x, self.y)
        else:
            p = 1.0 / (1.0 + np.exp(-(self.a * raw + self.b)))
        return np.clip(p, EPS, 1.0 - EPS)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``from_json`` reads it back)."""
        if self.method == "isotonic":
            return {"method": "isotonic", "x": self.x.tolist(), "y": self.y.tolist()}
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        """Inverse of ``to_json``; raises ValueError naming an unknown method."""
        method = data.get("method")
        if method == "isotonic":
            return cls(
                "isotonic", x=np.asarray(data["x"], dtype="float64"), y=np.asarray(data["y"], dtype="float64")
            )
        if method == "platt":
            return cls("platt", a=float(data["a"]), b=float(data["b"]))
        raise ValueError(f"calibration.json: unknown method {method!r} (expected isotonic or platt)")

    def save(self, path: Path) -> None:
        """Write ``calibration.json`` atomically."""
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        """Read ``calibration.json``."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: CalibrationMethod) -> Calibrator:
    """Fit ``method`` on raw scores ``raw`` (log-odds) and 0/1 labels ``y`` of held-out rows."""
    raw = np.asarray(raw, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        iso.fit(raw, y)
        return Calibrator("isotonic", x=np.asarray(iso.X_thresholds_), y=np.asarray(iso.y_thresholds_))
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(raw.reshape(-1, 1), y)
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
