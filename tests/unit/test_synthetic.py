"""Unit tests of the synthetic CRM generator: its pieces by hand, its oracle by Monte Carlo."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline import synthetic as syn
from pipeline.synthetic import (
    EFFECTS,
    BlockSimulation,
    ComplaintState,
    GenerateParams,
    block_seeds,
    draw_latent,
    loss_episodes,
    onboarding_multiplier,
    repeat_purchase_rates,
    return_rates_by_time,
)

UTC = "UTC"


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz=UTC)


# -- params ----------------------------------------------------------------------------------------


def test_params_defaults_and_bounds() -> None:
    p = GenerateParams()
    assert (p.clients, p.seed, p.format, p.onboarding_dropout) == (20_000, 7, "csv", 0.40)
    assert p.n_days == (dt.date(2025, 1, 1) - dt.date(2022, 1, 1)).days
    with pytest.raises(ValidationError, match="onboarding_dropout"):
        GenerateParams(onboarding_dropout=0.9)
    with pytest.raises(ValidationError, match="clients"):
        GenerateParams(clients=0)
    with pytest.raises(ValidationError, match="extra"):
        GenerateParams.model_validate({"clinets": 10})
    with pytest.raises(ValidationError, match="180 days"):
        GenerateParams(start=dt.date(2024, 10, 1), export_date=dt.date(2025, 1, 1))


# -- small pure pieces -----------------------------------------------------------------------------


def test_geom_is_the_explicit_sum() -> None:
    q = math.exp(-1 / 200)
    lo, hi = np.array([3, 10, 7]), np.array([8, 9, 7])
    got = syn._geom(q, lo, hi)
    want = [sum(q**t for t in range(a, b + 1)) for a, b in zip(lo, hi, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(syn._geom(q, lo, hi, start=lo), [sum(q**s for s in range(6)), 0.0, 1.0])


def test_events_are_grouped_by_day_and_popped_once() -> None:
    buckets: dict[int, list[syn.Events]] = {}
    syn._push(buckets, np.array([5, 3, 5]), {"idx": np.array([0, 1, 2])})
    syn._push(buckets, 5, {"idx": np.array([7])})
    assert sorted(buckets) == [3, 5]
    ev = syn._pop(buckets, 5)
    assert ev is not None and ev["idx"].tolist() == [0, 2, 7]
    assert syn._pop(buckets, 5) is None


def test_complaint_state_effects_by_hand() -> None:
    eff = EFFECTS
    c = ComplaintState.empty(3)
    # client 0: an open severity-3 staff complaint; client 1: a resolved severity-5; client 2: none
    c.open(np.array([0, 1]), np.array([3, 5], np.int8), np.array([True, False]))
    c.resolve(np.array([1]), np.array([5], np.int8), np.array([False]))
    got = c.log_effect(np.arange(3), np.array([False, False, False]), eff)
    want0 = eff.open_base + 2 * eff.open_per_severity + eff.open_human_factor
    np.testing.assert_allclose(got, [want0, eff.resolved_effect, 0.0])
    returned = c.log_effect(np.array([0]), np.array([True]), eff)
    np.testing.assert_allclose(returned, [eff.returned_sensitivity * want0])
    # loss penalty: worst open complaint, else the last one, else nothing
    pen = c.loss_penalty(np.arange(3), eff)
    np.testing.assert_allclose(
        pen, [2 * eff.return_per_severity + eff.return_human_factor, 4 * eff.return_per_severity, 0.0]
    )
    c.open(np.array([0]), np.array([1], np.int8), np.array([False]))  # a milder one does not lower it
    assert c.loss_penalty(np.array([0]), eff)[0] == pytest.approx(pen[0])
    c.expire(np.array([1]))
    assert c.log_effect(np.array([1]), np.array([False]), eff)[0] == 0.0


def test_onboarding_multiplier_is_monotone_and_sized() -> None:
    m = [onboarding_multiplier(t) for t in (0.2, 0.4, 0.7)]
    assert m[0] < m[1] < m[2]
    # without complaints the 40% target alone would need E[1 - exp(-100 h0 M)] ~ 0.3
    assert 2 < m[1] < 10


def test_block_seeds_do_not_depend_on_the_number_of_blocks() -> None:
    a = block_seeds(7, 2)[1].generate_state(4)
    b = block_seeds(7, 9)[1].generate_state(4)
    assert a.tolist() == b.tolist()


# -- measurement helpers on hand-made frames -------------------------------------------------------


def _orders(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"client_id": [c for c, _ in rows], "ordered_at": [ts(t) for _, t in rows], "status": "completed"}
    )


def test_repeat_purchase_groups_by_hand() -> None:
    orders = _orders(
        [
            ("A", "2023-01-01"),  # no complaint before it; next order 30 days later -> repeat
            ("A", "2023-01-31"),  # its complaint (resolved 2023-02-10) comes after it -> none, repeat
            ("A", "2023-03-01"),  # after a resolution within 365 days -> resolved, repeat
            ("A", "2023-04-01"),  # resolved, no next order
            ("B", "2023-01-01"),  # none, next order 212 days later -> no repeat
            ("B", "2023-08-01"),  # after a never-resolved complaint -> unresolved, no repeat
        ]
    )
    complaints = pd.DataFrame(
        {
            "client_id": ["A", "B"],
            "created_at": [ts("2023-02-05"), ts("2023-02-01")],
            "resolved_at": [ts("2023-02-10"), pd.NaT],
        }
    )
    complaints["resolved_at"] = pd.to_datetime(complaints["resolved_at"], utc=True)
    got = repeat_purchase_rates(orders.iloc[[0, 1, 2, 4, 5, 3]], complaints, ts("2024-06-01"))
    assert got["n_none"] == 3 and got["none"] == pytest.approx(2 / 3)
    assert got["n_resolved"] == 2 and got["resolved"] == pytest.approx(1 / 2)
    assert got["n_unresolved"] == 1 and got["unresolved"] == 0.0


def test_loss_episodes_and_return_rates_by_hand() -> None:
    orders = _orders(
        [
            ("A", "2023-01-01"),
            ("A", "2023-06-01"),  # 151 days later: loss at 2023-04-01, back 61 days after it
            ("A", "2023-07-01"),  # then nothing: loss at 2023-09-29
            ("B", "2023-01-01"),
            ("B", "2023-02-01"),
        ]
    )
    losses = loss_episodes(orders, ts("2024-06-01"))
    assert losses["client_id"].tolist() == ["A", "A", "B"]
    assert losses["loss_number"].tolist() == [1, 2, 1]
    assert losses["return_days"].iloc[0] == pytest.approx(61)
    assert losses["return_days"].iloc[1:].isna().all()
    rates = return_rates_by_time(losses, edges=(0, 90, 180))
    assert rates[0] == {"from_days": 0, "to_days": 90, "at_risk": 3, "rate": pytest.approx(1 / 3)}
    assert rates[1]["at_risk"] == 2 and rates[1]["rate"] == 0.0


# -- the oracle against Monte Carlo re-simulation from the same latent state ------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cutoff_day", [250, 760])
def test_oracle_matches_monte_carlo_from_the_latent_state(cutoff_day: int) -> None:
    """Re-simulate 300 clients 1500 times from their state at a cutoff: the share without a completed
    order in the window must match the oracle client by client (chi-square per client ~ 1)."""
    p = GenerateParams(clients=3000, seed=21)
    horizon = 100
    rng = np.random.Generator(np.random.PCG64(block_seeds(p.seed, 1)[0]))
    sim = BlockSimulation(draw_latent(rng, p.clients, p.n_days), rng, p.n_days, onboarding_multiplier(0.4))
    sim.schedule_prevention()
    sim.run_until(cutoff_day)
    truth = sim.truth_at(cutoff_day, horizon)
    pick = np.random.default_rng(0)
    alive = truth["alive"]
    sub = np.sort(
        np.concatenate(
            [
                pick.choice(np.flatnonzero(alive), 150, replace=False),
                pick.choice(np.flatnonzero(~alive), min(150, int((~alive).sum())), replace=False),
            ]
        )
    )
    reps = 1500
    rep = sim.replicate(sub, reps, np.random.default_rng(99))
    rep.run_until(cutoff_day + horizon)
    none = (rep.completed_orders(cutoff_day * syn.MINUTES_PER_DAY).reshape(sub.size, reps) == 0).mean(axis=1)
    oracle = truth["p_no_order"][sub]
    se = np.sqrt(np.clip(oracle * (1 - oracle), 1e-6, None) / reps)
    z = (none - oracle) / se
    assert np.mean(z**2) < 1.5, np.mean(z**2)
    assert abs(np.mean(z)) < 4 / math.sqrt(sub.size)
    assert np.max(np.abs(z)) < 5
    # and the oracle spreads: some clients nearly surely buy, some nearly surely do not
    assert oracle.min() < 0.1 and oracle.max() > 0.9
