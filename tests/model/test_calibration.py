"""Calibrators map log-odds to probabilities monotonically and survive a JSON round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.calibration import Calibrator, fit_calibrator


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_fit_round_trip_and_monotone(tmp_path: Path, method: str) -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 2, 5000)
    # true probability = sigmoid(0.5 * raw - 1): the raw score is over-confident and shifted
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.5 * raw - 1))))
    cal = fit_calibrator(raw, y, method)  # type: ignore[arg-type]
    grid = np.linspace(-6, 6, 200)
    p = cal(grid)
    assert np.all(np.diff(p) >= -1e-12)
    assert np.all((p > 0) & (p < 1))
    # mean predicted probability matches the observed rate on the fitting rows
    assert abs(cal(raw).mean() - y.mean()) < 0.01
    cal.save(tmp_path / "calibration.json")
    again = Calibrator.load(tmp_path / "calibration.json")
    np.testing.assert_allclose(again(grid), p)


def test_platt_recovers_slope_and_intercept() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 2, 20000)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.5 * raw - 1))))
    cal = fit_calibrator(raw, y, "platt")
    assert cal.a == pytest.approx(0.5, abs=0.05)
    assert cal.b == pytest.approx(-1.0, abs=0.08)


def test_unknown_method_in_json_is_named() -> None:
    with pytest.raises(ValueError, match="beta"):
        Calibrator.from_json({"method": "beta"})
