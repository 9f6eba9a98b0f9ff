"""The BG/NBD baseline: fitted with lifetimes on the history, read as P(a purchase within the horizon)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.baselines import btyd_summary, fit_bgnbd_baseline


def simulate_bgnbd(n: int, *, r: float, alpha: float, a: float, b: float, seed: int) -> pd.DataFrame:
    """Clients of a BG/NBD world: first order at 0, observed for T days, then 100 days ahead.

    Returns the feature-table columns the baseline reads at the cutoff and whether each client
    bought within the next 100 days.
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(60, 600, n)
    orders, last, future = np.ones(n), np.zeros(n), np.zeros(n, dtype=int)
    for i in range(n):
        t, alive = 0.0, True
        while alive:
            t += rng.exponential(1 / lam[i])
            if t > T[i] + 100:
                break
            if t <= T[i]:
                orders[i] += 1
                last[i] = t
            else:
                future[i] = 1
                break
            alive = rng.random() >= p[i]
    return pd.DataFrame(
        {
            "orders_total": orders,
            "days_since_first_order": T,
            "recency_days": T - last,
            "bought": future,
        }
    )


def test_bgnbd_recovers_its_parameters_and_forecasts_purchases() -> None:
    world = simulate_bgnbd(4000, r=1.0, alpha=30.0, a=1.0, b=4.0, seed=1)
    x, t_x, age = btyd_summary(world)
    repeats = np.where(t_x >= 1, world["orders_total"] - 1, 0)  # a repeat within the first day is none
    assert np.all(x == repeats) and np.all(t_x <= age) and (x > 0).mean() > 0.5
    fitted = fit_bgnbd_baseline(world, horizon_days=100, event="purchase")
    assert fitted is not None
    params = fitted.params
    assert abs(params["r"] / params["alpha"] - 1 / 30) / (1 / 30) < 0.25  # mean purchase rate per day
    assert abs(params["a"] / (params["a"] + params["b"]) - 0.2) < 0.07  # mean drop-out probability
    p = fitted.predict_probability(world)
    # calibrated in the large, and it ranks: buyers get the higher probabilities
    assert abs(p.mean() - world["bought"].mean()) < 0.03
    assert p[world["bought"] == 1].mean() > p[world["bought"] == 0].mean() + 0.1
    churn = fit_bgnbd_baseline(world, horizon_days=100, event="no_purchase")
    assert churn is not None
    np.testing.assert_allclose(churn.predict_probability(world), 1 - p, atol=1e-9)


def test_bgnbd_is_skipped_when_nobody_repeats() -> None:
    world = pd.DataFrame(
        {"orders_total": [1.0] * 50, "days_since_first_order": [30.0] * 50, "recency_days": [30.0] * 50}
    )
    assert fit_bgnbd_baseline(world, horizon_days=100, event="purchase") is None


def test_repeats_on_the_first_day_are_no_repeat_purchase() -> None:
    """Olist has clients with two orders minutes apart: lifetimes would take log(0) on them."""
    rows = pd.DataFrame(
        {
            "orders_total": [3.0, 3.0, 0.0],
            "days_since_first_order": [50.0, 50.0, np.nan],
            "recency_days": [50.0, 10.0, np.nan],
        }
    )
    x, t_x, age = btyd_summary(rows)
    assert x[0] == 0 and t_x[0] == 0 and age[0] == 50
    assert x[1] == 2 and t_x[1] == 40
    assert np.isnan(x[2])
