"""Rhythm features at cutoff 2024-01-01, computed by hand from the BTYD formulas of features.rhythm."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from _features_frames import build, client, order, row
from pydantic import ValidationError

from features.config import FeatureParams
from features.contract import ContractError

RHYTHM = {
    "rate_prior_orders": 2.0,
    "rate_prior_days": 60.0,
    "dormancy_hazard_per_day": 0.001,
    "onboarding_hazard_per_day": 0.01,
    "decay_days": [30, 90, 365],
}
HORIZON = 100.0


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    orders = [
        # established: first order 300 days before D, last 40 days before D, 4 completed orders
        order("est", "2023-03-07"),
        order("est", "2023-06-05"),
        order("est", "2023-09-03"),
        order("est", "2023-11-22"),
        order("est", "2023-12-20", status="cancelled"),  # not a purchase
        order("est", "2024-01-05"),  # after D: unknown at D
        # new: first order 50 days before D, last 10 days before D
        order("new", "2023-11-12"),
        order("new", "2023-12-22"),
    ]
    return build(
        [client("est"), client("new"), client("none")], orders, horizon_days=int(HORIZON), rhythm=RHYTHM
    )


def expected(n: int, span: float, recency: float, mu: float) -> dict[str, float]:
    rate = (n - 1 + RHYTHM["rate_prior_orders"]) / (span + RHYTHM["rate_prior_days"])
    e = math.exp(-(rate + mu) * recency)
    alive = e / (e + mu / (rate + mu) * (1 - e))
    return {
        "order_rate_per_day": rate,
        "silence_probability": math.exp(-rate * recency),
        "alive_probability": alive,
        "rhythm_no_order_probability": 1
        - alive * rate / (rate + mu) * (1 - math.exp(-(rate + mu) * HORIZON)),
        "expected_orders_horizon": alive * rate / mu * (1 - math.exp(-mu * HORIZON)),
    }


def test_established_client_uses_the_dormancy_hazard(table: pd.DataFrame) -> None:
    r = row(table, "est")
    assert (r.recency_days, r.days_since_first_order) == (40.0, 300.0)
    for name, value in expected(4, 260.0, 40.0, RHYTHM["dormancy_hazard_per_day"]).items():
        assert r[name] == pytest.approx(value, rel=1e-9), name
    ages = (300.0, 210.0, 120.0, 40.0)
    for d in (30, 90, 365):
        assert r[f"decayed_orders_{d}d"] == pytest.approx(sum(math.exp(-a / d) for a in ages), rel=1e-9)


def test_new_client_uses_the_onboarding_hazard(table: pd.DataFrame) -> None:
    r = row(table, "new")
    assert (r.recency_days, r.days_since_first_order) == (10.0, 50.0)
    for name, value in expected(2, 40.0, 10.0, RHYTHM["onboarding_hazard_per_day"]).items():
        assert r[name] == pytest.approx(value, rel=1e-9), name


def test_onboarding_hazard_outweighs_a_shorter_silence(table: pd.DataFrame) -> None:
    # silent 10 days in its first 100 vs 40 days for an established client: the new client's
    # ten-times higher dormancy hazard makes it the less likely one to be alive
    new, est = row(table, "new"), row(table, "est")
    assert 0 < new.alive_probability < est.alive_probability < 1
    assert new.rhythm_no_order_probability > est.rhythm_no_order_probability


def test_client_without_orders_has_no_rhythm(table: pd.DataFrame) -> None:
    r = row(table, "none")
    for name in ("order_rate_per_day", "silence_probability", "alive_probability", "expected_orders_horizon"):
        assert pd.isna(r[name]), name
    assert pd.isna(r.rhythm_no_order_probability)
    assert (r.decayed_orders_30d, r.decayed_orders_90d, r.decayed_orders_365d) == (0.0, 0.0, 0.0)


def test_decay_days_must_match_the_contract() -> None:
    with pytest.raises(ContractError, match="decayed_orders_30d"):
        build([client("x")], [], rhythm={**RHYTHM, "decay_days": [30, 60, 365]})


def test_rhythm_params_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="hazard_per_dya"):
        FeatureParams.model_validate({"cutoffs": [], "rhythm": {"hazard_per_dya": 0.1}})
    with pytest.raises(ValidationError, match="dormancy_hazard_per_day"):
        FeatureParams.model_validate({"cutoffs": [], "rhythm": {"dormancy_hazard_per_day": 0.0}})
