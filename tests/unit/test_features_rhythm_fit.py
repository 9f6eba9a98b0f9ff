"""The rhythm constants' likelihood and fit (features/rhythm_fit.py).

On data simulated from the model itself the fit recovers the constants (tolerances of about four
standard deviations of the estimate, measured over seeds at 10k clients); on the sample
generator's data, whose model differs, it lands near the generator's values for the reasons
stated in :func:`test_fit_on_the_sample_generator_is_near_its_values`.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special

from features.build import fit_rhythm_constants
from features.config import FeatureParams
from features.rhythm_fit import (
    BOUNDS,
    MIN_FIT_CLIENTS,
    RhythmHistory,
    fit_rhythm,
    rhythm_log_likelihood,
)
from features.tables import tables_from_frames

C = 100  # new_client_days
FIT = {"new_client_days": C, "horizon_days": 100, "lost_after_days": 730}


def simulate(n: int, a: float, b: float, mu0: float, mu1: float, seed: int) -> RhythmHistory:
    """Clients drawn from the model the features assume: gamma rate, piecewise-constant hazard."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(a, 1 / b, n)
    age = rng.uniform(1.0, 1000.0, n)
    e = rng.exponential(1.0, n)  # cumulative hazard at death
    tau = np.where(e < mu1 * C, e / mu1, C + (e - mu1 * C) / mu0)
    end = np.minimum(tau, age)
    x = rng.poisson(lam * end)
    last = np.where(x > 0, end * rng.beta(np.maximum(x, 1), 1.0), 0.0)  # the last of x uniforms
    return RhythmHistory(x, last, age)


def reference(values: tuple[float, float, float, float], x: int, tx: float, age: float) -> float:
    """The log-likelihood by adaptive quadrature (scipy.integrate.quad), for one client."""
    a, b, mu0, mu1 = values
    k = a + x

    def h(s: float) -> float:
        return mu1 * min(s, C) + mu0 * max(s - C, 0.0)

    def f(t: float) -> float:
        return (mu1 if t < C else mu0) * math.exp(-h(t)) * ((b + tx) / (b + t)) ** k

    points = [C] if tx < C < age else None
    inner = integrate.quad(f, tx, age, points=points, limit=500, epsabs=0, epsrel=1e-12)[0]
    alive = math.exp(-h(age)) * ((b + tx) / (b + age)) ** k
    return float(special.gammaln(k) - special.gammaln(a) + a * math.log(b) - k * math.log(b + tx)) + math.log(
        alive + inner
    )


CASES = [(0, 0.0, 5.0), (0, 0.0, 1000.0), (3, 50.0, 60.0), (100, 700.0, 1000.0), (300, 900.0, 1000.0)]
CASES += [(200, 300.0, 1000.0), (1, 99.0, 101.0), (10, 150.0, 900.0), (50, 80.0, 95.0), (0, 0.0, 99.9)]
VALUES = (0.8, 25.0, 0.0015, 0.006)


def _history(cases: list[tuple[int, float, float]]) -> RhythmHistory:
    x, tx, age = zip(*cases, strict=True)
    return RhythmHistory(np.array(x), np.array(tx), np.array(age))


def test_likelihood_matches_adaptive_quadrature() -> None:
    ll, _ = rhythm_log_likelihood(VALUES, _history(CASES), C)
    want = [reference(VALUES, *case) for case in CASES]
    np.testing.assert_allclose(ll, want, rtol=0, atol=1e-6)


def test_gradient_matches_finite_differences() -> None:
    h = _history(CASES)
    values = np.array(VALUES)
    _, grad = rhythm_log_likelihood(values, h, C, gradient=True)
    assert grad is not None

    def total(v: np.ndarray) -> float:
        return float(rhythm_log_likelihood(v, h, C)[0].sum())

    numeric = optimize.approx_fprime(values, total, values * 1e-7)
    np.testing.assert_allclose(grad.sum(axis=0), numeric, rtol=1e-4)


@pytest.mark.parametrize(
    "truth",
    [
        (7.0, 263.0, 0.0014, 0.0029),  # narrow rates, as on the sample (mean 1/37.6 per day)
        (0.8, 25.0, 0.002, 0.008),  # very spread rates, a strong onboarding drop-out
    ],
)
def test_fit_recovers_the_constants_of_data_simulated_from_the_model(
    truth: tuple[float, float, float, float],
) -> None:
    a, b, mu0, mu1 = truth
    fit = fit_rhythm(simulate(10_000, *truth, seed=1), **FIT)
    assert fit.method == "fit" and fit.converged
    # measured over 8 seeds at 10k clients: sd 1.2% of the mean rate, 2.5% of a, 2.7% of the hazards
    assert fit.rate_prior_orders / fit.rate_prior_days == pytest.approx(a / b, rel=0.05)
    assert fit.rate_prior_orders == pytest.approx(a, rel=0.15)
    assert fit.dormancy_hazard_per_day == pytest.approx(mu0, rel=0.12)
    assert fit.onboarding_hazard_per_day == pytest.approx(mu1, rel=0.12)


def test_fit_samples_large_histories_reproducibly() -> None:
    h = simulate(3000, 2.0, 60.0, 0.002, 0.006, seed=2)
    one = fit_rhythm(h, **FIT, max_clients=1000)
    two = fit_rhythm(h, **FIT, max_clients=1000)
    assert (one.clients, one.clients_total) == (1000, 3000)
    assert one == two
    assert fit_rhythm(h, **FIT, max_clients=1000, seed=5) != one


def test_thin_histories_fall_back_or_stay_near_the_prior() -> None:
    few = simulate(MIN_FIT_CLIENTS - 1, 2.0, 60.0, 0.002, 0.006, seed=3)
    fallback = fit_rhythm(few, **FIT)
    assert fallback.method == "fallback"
    assert fallback.values == (1.0, 100.0, 1 / 730, 1 / 730)
    no_repeat = RhythmHistory(np.zeros(500, "int64"), np.zeros(500), np.full(500, 300.0))
    assert fit_rhythm(no_repeat, **FIT).method == "fallback"
    # every client younger than two weeks: nothing says anything about a hazard, so the weak prior
    # keeps both near 1 / lost_after_days instead of at a bound; every constant finite and inside
    age = np.random.default_rng(4).uniform(1.0, 14.0, 5000)
    repeat = (np.arange(5000) % 10 == 0).astype("int64")
    young = RhythmHistory(repeat, np.where(repeat > 0, age / 2, 0.0), age)
    fit = fit_rhythm(young, **FIT)
    assert fit.method == "fit"
    for value, (lo, hi) in zip(fit.values, BOUNDS, strict=True):
        assert lo < value < hi
    assert 1 / 730 / 8 < fit.dormancy_hazard_per_day < 8 / 730
    assert fit.dormancy_hazard_per_day == pytest.approx(1 / 730, rel=0.01)  # no client past 100 days


SAMPLE_CUTOFF = dt.date(2024, 9, 23)  # the default test cutoff: 2025-01-01 - 100 days


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample generator's clients and orders (10k clients, seed 7), without the ground truth."""
    from pipeline.generate import generate_export
    from pipeline.synthetic import GenerateParams, TruthSpec

    out = tmp_path_factory.mktemp("rhythm_sample")
    generate_export(
        GenerateParams(clients=10_000, seed=7, format="parquet"), TruthSpec(cutoffs=()), out, workers=1
    )
    return out


def test_fit_on_the_sample_generator_is_near_its_values(sample: Path) -> None:
    """The issue's test: the constants fitted on the sample recover the generator's values.

    The generator is not the model. Its rates are 1/gap with lognormal gaps (median 35 days) plus
    2% weekly buyers, not gamma; it places at most one order a day; a dormant client may come back
    (about 40% do), which the model reads as an alive client with a long gap; complaints add
    hazard for days at a time; its hazards vary by client (lognormal, sd 0.6 in log). So each
    fitted constant is compared with the generator value it estimates, within a tolerance that
    covers those differences (fitted / generator value in brackets, on this sample and on the
    default 20k-client one):

    * the mean order rate a / b against the mean latent rate of the clients (0.0314 per day),
      within 20% [0.85, 0.85: lower, as returns and the one-order-a-day cap make buying look
      slower];
    * the dormancy hazard against the generator's base hazard, its mean 1/800 per day, within 35%
      [1.18, 1.15: complaints add hazard, returns and the survivors' lower hazards take some away];
    * the onboarding hazard against the generator's onboarding drop-out for good: the share of
      clients who went dormant within 100 days and never came back (clients of 2022, whose
      returns are observed), as a constant hazard (0.0030 per day), within 25% [0.99, 0.94]; the
      gross drop-out (``generate.onboarding_dropout`` 0.40, 0.0051 per day) counts the temporary
      ones too.
    """
    frames = {
        name: pd.read_parquet(sample / f"{name}.parquet") for name in ("clients", "orders", "complaints")
    }
    params = FeatureParams(cutoffs=[SAMPLE_CUTOFF])
    fit = fit_rhythm_constants(tables_from_frames(frames), [SAMPLE_CUTOFF], params)[SAMPLE_CUTOFF]
    assert fit.method == "fit" and fit.converged and fit.clients > 9000

    truth = pd.read_parquet(sample / "truth_clients.parquet")
    from pipeline.synthetic import EFFECTS

    mean_rate = float(truth["order_rate"].mean())
    assert fit.rate_prior_orders / fit.rate_prior_days == pytest.approx(mean_rate, rel=0.20)
    assert fit.dormancy_hazard_per_day == pytest.approx(EFFECTS.h0_mean, rel=0.35)
    early = truth[truth["created_at"] < pd.Timestamp("2023-01-01", tz="UTC")]
    for_good = float((early["onboarding_dropped"] & (early["times_returned"] == 0)).mean())
    onboarding = -math.log(1 - for_good) / EFFECTS.onboarding_days
    assert fit.onboarding_hazard_per_day == pytest.approx(onboarding, rel=0.25)
    # and the onboarding effect itself is recovered: new clients drop out faster
    assert fit.onboarding_hazard_per_day > 1.5 * fit.dormancy_hazard_per_day
