"""The observable oracle: P(no completed order in the window | latent parameters, the generator's
scheduled draws, the order history), with the hidden alive/dormant state since the last order
integrated out. Checked against an explicit sum by hand, against Monte Carlo over the hidden state,
against realised labels, and against the clairvoyant oracle for clients lost long ago."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from pipeline import synthetic as syn
from pipeline.synthetic import (
    EFFECTS,
    BlockSimulation,
    GenerateParams,
    Latent,
    TruthSpec,
    block_seeds,
    block_tables,
    draw_latent,
    onboarding_multiplier,
    simulate_block,
)

HORIZON = 100


# -- a hand-checkable client: no complaints, constant hazards, chosen win-back contacts -------------------


def _one_client(order_rate: float, h0: float, onb_mult: float) -> BlockSimulation:
    eff = dataclasses.replace(EFFECTS, complaint_probability=0.0)
    lat = Latent(
        created_day=np.array([0]),
        created_minute=np.array([0]),
        manager=np.array([0]),
        do_not_contact=np.array([False]),
        order_rate=np.array([order_rate]),
        amount_scale=np.array([100.0]),
        margin_rate=np.array([0.2]),
        bad_payer=np.array([False]),
        h0=np.array([h0]),
    )
    return BlockSimulation(lat, np.random.default_rng(0), 2000, onb_mult, eff)


def _by_hand(
    last: int, d: int, rate: float, h0: float, onb_mult: float, coins: list[bool]
) -> tuple[float, float]:
    """(observable, alive-at-d) P(no order in d .. d+HORIZON-1) by explicit sums over the dormancy day."""
    eff = EFFECTS
    q = math.exp(-1 / eff.return_tau_days)
    end = d + HORIZON - 1
    contacts = [last + off for off, c in zip(eff.winback_offsets_days, coins, strict=True) if c]

    def hazard(t: int) -> float:
        return h0 * (onb_mult if t <= eff.onboarding_days else 1.0)

    def no_return(u: int, e: int) -> float:
        """Dormant from day u: no return on days u+1 .. e (a contact is sent only if u < its day)."""
        total = 0.0
        for t in range(u + 1, e + 1):
            boosted = any(u < c <= t <= c + eff.contact_boost_days - 1 for c in contacts)
            total += q ** (t - u) * (eff.contact_boost if boosted else 1.0)
        return math.exp(-eff.return_r0 * total)

    def stay(t: int) -> float:
        return math.exp(-hazard(t) - rate)

    survive, weight, dormant_window = 1.0, 0.0, 0.0
    for u in range(last + 1, d):
        w = survive * (1 - math.exp(-hazard(u)))
        weight += w * no_return(u, d - 1)
        dormant_window += w * no_return(u, end)
        survive *= stay(u)
    forward, a = 0.0, 1.0
    for t in range(d, end + 1):
        forward += a * (1 - math.exp(-hazard(t))) * no_return(t, end)
        a *= stay(t)
    forward += a
    return (survive * forward + dormant_window) / (survive + weight), forward


@pytest.mark.parametrize(
    ("gap_days", "coins"),
    [
        (1, [True, True, True]),
        (30, [False, False, False]),
        (150, [True, True, False]),
        (150, [False, True, True]),
        (420, [True, False, True]),
    ],
)
def test_observable_oracle_equals_the_explicit_sum_over_the_dormancy_day(
    gap_days: int, coins: list[bool]
) -> None:
    rate, h0, onb = 1 / 30, 1 / 300, 4.0
    last = 60  # inside onboarding: the hazard changes on day 101
    d = last + gap_days
    sim = _one_client(rate, h0, onb)
    sim.alive[0] = True
    sim.last_order_day[0] = last
    sim.last_order_minute[0] = last * syn.MINUTES_PER_DAY
    sim.coins[:, 0] = coins
    for t in range(last + 1, d):
        sim._track_observable(t, 1)
    truth = sim.truth_at(d, HORIZON)
    observable, alive = _by_hand(last, d, rate, h0, onb, coins)
    assert truth["p_no_order"][0] == pytest.approx(alive, rel=1e-9)
    assert truth["p_no_order_observable"][0] == pytest.approx(observable, rel=1e-8)
    if gap_days > 1:  # the hidden dormancy makes no order likelier than for a surely alive client
        assert observable > alive


# -- Monte Carlo over the hidden state --------------------------------------------------------------------


def _simulation(clients: int, seed: int, eff: syn.Effects = EFFECTS) -> BlockSimulation:
    p = GenerateParams.model_validate({"clients": clients, "seed": seed})
    rng = np.random.Generator(np.random.PCG64(block_seeds(p.seed, 1)[0]))
    latent = draw_latent(rng, p.clients, p.n_days, eff)
    sim = BlockSimulation(latent, rng, p.n_days, onboarding_multiplier(0.4), eff)
    sim.schedule_prevention()
    return sim


@pytest.mark.slow
@pytest.mark.parametrize("gap_days", [45, 140])
def test_observable_oracle_matches_monte_carlo_over_the_hidden_state(gap_days: int) -> None:
    """Copies of clients who ordered yesterday, re-simulated: among the copies that then place no
    completed order for ``gap_days``, the oracle is the same for all (it sees no hidden state) and
    equals the share without an order in the following window."""
    d0, reps = 400, 1200
    # complaints three times as often as by default, so that many of the copies meet complaints that
    # would arise only on the alive path (the ghosts of the oracle's bookkeeping)
    sim = _simulation(5000, 31, dataclasses.replace(EFFECTS, complaint_probability=0.25))
    sim.run_until(d0)
    fresh = np.flatnonzero(sim.last_order_day == d0 - 1)
    pending = syn._concat([e for day in range(d0, d0 + 11) for e in sim.buckets["create"].get(day, [])])
    with_complaint = np.intersect1d(fresh, pending["idx"])  # a complaint due on the alive path: ghosts
    pick = np.random.default_rng(1)
    others = np.setdiff1d(fresh, with_complaint)
    sub = np.sort(
        np.concatenate((with_complaint[:20], pick.choice(others, 50 - min(20, with_complaint.size))))
    )
    assert with_complaint.size >= 5
    rep = sim.replicate(sub, reps, np.random.default_rng(7))
    d = d0 + gap_days
    rep.run_until(d)
    quiet = (rep.completed_orders(d0 * syn.MINUTES_PER_DAY) == 0).reshape(sub.size, reps)
    truth = rep.truth_at(d, HORIZON)
    observable = truth["p_no_order_observable"].reshape(sub.size, reps)
    clairvoyant = truth["p_no_order"].reshape(sub.size, reps)
    rep.run_until(d + HORIZON)
    none = (rep.completed_orders(d * syn.MINUTES_PER_DAY) == 0).reshape(sub.size, reps)
    z, spread = [], []
    for j in range(sub.size):
        q = quiet[j]
        if q.sum() < 40:
            continue
        p = observable[j, q]
        assert np.ptp(p) < 1e-9, (j, np.ptp(p))  # no hidden state leaks into it
        spread.append(np.ptp(clairvoyant[j, q]))
        n = int(q.sum())
        z.append((none[j, q].mean() - p[0]) / math.sqrt(max(p[0] * (1 - p[0]), 1e-4) / n))
    z_arr = np.asarray(z)
    assert z_arr.size >= 25
    assert np.mean(z_arr**2) < 1.6, np.mean(z_arr**2)
    assert abs(np.mean(z_arr)) < 4 / math.sqrt(z_arr.size)
    assert np.max(np.abs(z_arr)) < 4.5
    assert max(spread) > 0.3  # while the clairvoyant oracle does see the hidden state


# -- realised labels and the clairvoyant oracle on a small generated sample --------------------------------


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """Truth rows with complete labels of 4000 clients, with the realised label (no completed order)."""
    params = GenerateParams.model_validate({"clients": 4000, "seed": 11})
    spec = TruthSpec(cutoffs=tuple(pd.date_range("2023-01-01", "2024-09-01", freq="60D").date))
    sim, rows = simulate_block(params, spec, 0, params.clients, onboarding_multiplier(0.4))
    bt = block_tables(sim, rows, params, spec, first_client=0, ids=syn.IdCounters())
    truth = bt.truth.to_pandas()
    truth = truth[truth["label_complete"]].reset_index(drop=True)
    orders = bt.orders.to_pandas()
    done = orders[orders["status"] == "completed"]
    horizon = pd.Timedelta(days=spec.horizon_days)
    y = np.zeros(len(truth), bool)
    for d, g in truth.groupby("cutoff_at"):
        window = done[(done["ordered_at"] >= d) & (done["ordered_at"] < d + horizon)]
        y[g.index] = ~g["client_id"].isin(window["client_id"]).to_numpy()
    truth["no_order"] = y
    truth["p_clairvoyant"] = truth["churn_probability"].fillna(1 - truth["winback_probability"])
    truth["p_observable"] = truth["churn_probability_observable"].fillna(
        1 - truth["winback_probability_observable"]
    )
    return truth


@pytest.mark.slow
def test_observable_oracle_is_calibrated_against_realised_labels(sample: pd.DataFrame) -> None:
    a = sample
    assert a["p_observable"].between(0, 1).all()
    assert (a["churn_probability_observable"].isna() == a["churn_probability"].isna()).all()
    for d, g in a.groupby("cutoff_at"):
        p = g["p_observable"]
        z = (g["no_order"].sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
        assert abs(z) < 4.5, (d, z)
    for state, g in a.groupby("state"):
        g = g.assign(decile=pd.qcut(g["p_observable"].rank(method="first"), 10, labels=False))
        cal = g.groupby("decile").agg(
            p=("p_observable", "mean"), y=("no_order", "mean"), n=("no_order", "size")
        )
        se = np.sqrt(cal["p"].clip(0.01, 0.99) * (1 - cal["p"].clip(0.01, 0.99)) / cal["n"])
        assert (abs(cal["p"] - cal["y"]) < 4.5 * se + 0.005).all(), (state, cal)


@pytest.mark.slow
def test_observable_oracle_ranks_between_history_and_the_clairvoyant_oracle(sample: pd.DataFrame) -> None:
    from sklearn.metrics import roc_auc_score

    for state, g in sample.groupby("state"):
        y = g["no_order"].to_numpy()
        clairvoyant = roc_auc_score(y, g["p_clairvoyant"])
        observable = roc_auc_score(y, g["p_observable"])
        recency = roc_auc_score(y, g["recency_days"])
        assert recency < observable < clairvoyant, (state, recency, observable, clairvoyant)


@pytest.mark.slow
def test_observable_oracle_approaches_the_clairvoyant_one_for_clients_lost_long_ago(
    sample: pd.DataFrame,
) -> None:
    gap = (sample["p_observable"] - sample["p_clairvoyant"]).abs()
    # the hidden state is most uncertain soon after a loss; from then on the gap only shrinks
    bands = pd.cut(sample["recency_days"], [90, 180, 365, 730, 10_000], right=False)
    mean_gap = gap.groupby(bands, observed=True).mean()
    assert mean_gap.is_monotonic_decreasing, mean_gap
    long_ago = sample["recency_days"] >= 730
    assert long_ago.sum() > 100
    assert gap[long_ago].max() < 0.02
    # and the mean stays calibrated where the two differ most (recently lapsed)
    recent = sample["recency_days"].between(90, 180)
    assert abs(sample.loc[recent, "p_observable"].mean() - sample.loc[recent, "p_clairvoyant"].mean()) < 0.02
