"""Rhythm features at cutoff 2024-01-01, computed by hand from the BTYD formulas of features.rhythm,
with the population constants handed in (as the stage hands in the fitted ones) or fitted."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from _features_frames import EXPORT, client, frame, order, row
from pydantic import ValidationError

from features.build import build_feature_table
from features.config import FeatureParams
from features.rhythm_fit import RhythmConstants, fallback_constants
from features.tables import connect, tables_from_frames

D = dt.date(2024, 1, 1)
CONSTANTS = RhythmConstants(2.0, 60.0, 0.001, 0.01, "fit", 3, 3)
HORIZON = 100.0

CLIENTS = [client("est"), client("new"), client("none")]
ORDERS = [
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


def build_table(
    cutoffs: list[dt.date], rhythm: dict[dt.date, RhythmConstants] | None, orders: list[dict] = ORDERS
) -> pd.DataFrame:
    frames = {
        "clients": frame("clients", CLIENTS),
        "orders": frame("orders", orders),
        "complaints": frame("complaints", []),
    }
    con = connect("duckdb", threads=1, memory_limit="512MB")
    params = FeatureParams(cutoffs=cutoffs, horizon_days=int(HORIZON))
    expr = build_feature_table(
        con, tables_from_frames(frames), cutoffs, params, export_date=EXPORT, rhythm=rhythm
    )
    return con.to_pandas(expr)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return build_table([D], {D: CONSTANTS})


def expected(
    n: int, span: float, recency: float, mu: float, c: RhythmConstants = CONSTANTS
) -> dict[str, float]:
    rate = (n - 1 + c.rate_prior_orders) / (span + c.rate_prior_days)
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
    for name, value in expected(4, 260.0, 40.0, CONSTANTS.dormancy_hazard_per_day).items():
        assert r[name] == pytest.approx(value, rel=1e-9), name
    ages = (300.0, 210.0, 120.0, 40.0)
    for d in (30, 90, 365):
        assert r[f"decayed_orders_{d}d"] == pytest.approx(sum(math.exp(-a / d) for a in ages), rel=1e-9)


def test_new_client_uses_the_onboarding_hazard(table: pd.DataFrame) -> None:
    r = row(table, "new")
    assert (r.recency_days, r.days_since_first_order) == (10.0, 50.0)
    for name, value in expected(2, 40.0, 10.0, CONSTANTS.onboarding_hazard_per_day).items():
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


def test_each_cutoff_reads_its_own_constants() -> None:
    # the constants are columns of the cutoffs table: two cutoffs in one query, two sets
    later = dt.date(2024, 1, 2)
    other = RhythmConstants(0.5, 10.0, 0.004, 0.02, "fit", 3, 3)
    t = build_table([D, later], {D: CONSTANTS, later: other})
    at_d, at_later = row(t, "est", D.isoformat()), row(t, "est", later.isoformat())
    assert at_d.order_rate_per_day == pytest.approx(expected(4, 260.0, 40.0, 0.001)["order_rate_per_day"])
    for name, value in expected(4, 260.0, 41.0, other.dormancy_hazard_per_day, other).items():
        assert at_later[name] == pytest.approx(value, rel=1e-9), name


def test_without_constants_the_table_fits_them() -> None:
    # three clients are too few to fit: the documented fallback, from the params' own definitions
    t = build_table([D], None)
    fb = fallback_constants(horizon_days=int(HORIZON), lost_after_days=730)
    assert (fb.rate_prior_orders, fb.rate_prior_days, fb.dormancy_hazard_per_day) == (1.0, HORIZON, 1 / 730)
    for name, value in expected(4, 260.0, 40.0, fb.dormancy_hazard_per_day, fb).items():
        assert row(t, "est")[name] == pytest.approx(value, rel=1e-9), name


def test_missing_constants_are_refused() -> None:
    with pytest.raises(ValueError, match="no rhythm constants for cutoff"):
        build_table([D, dt.date(2024, 2, 1)], {D: CONSTANTS})


def test_the_rhythm_section_is_gone_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match=r"features\.rhythm is no longer a setting"):
        FeatureParams.model_validate({"cutoffs": [], "rhythm": {"decay_days": [30, 90, 365]}})
