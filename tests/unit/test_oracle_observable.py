"""The observable oracle: P(no completed order in the window | latent parameters, the generator's
draws that fell due before the cutoff, the order history), with the hidden alive/dormant state
since the last order and every draw that falls due on or after the cutoff (win-back coins,
complaint resolutions, complaints of recent orders) integrated out. Checked against explicit sums
by hand, against Monte Carlo over the hidden state and the future draws, against realised labels,
and against the clairvoyant oracle for clients lost long ago."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

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
) -> tuple[float, float, float]:
    """(observable, alive-at-d with the drawn coins, alive-at-d in expectation over the coins of the
    contacts on or after d) P(no order in d .. d+HORIZON-1) by explicit sums over the dormancy day."""
    eff = EFFECTS
    q = math.exp(-1 / eff.return_tau_days)
    end = d + HORIZON - 1
    drawn = [last + off for off, c in zip(eff.winback_offsets_days, coins, strict=True) if c]
    past = [c for c in drawn if c < d]
    future = [last + off for off in eff.winback_offsets_days if last + off >= d]

    def hazard(t: int) -> float:
        return h0 * (onb_mult if t <= eff.onboarding_days else 1.0)

    def no_return_with(u: int, e: int, contacts: list[int]) -> float:
        """Dormant from day u: no return on days u+1 .. e (a contact is sent only if u < its day)."""
        total = 0.0
        for t in range(u + 1, e + 1):
            boosted = any(u < c <= t <= c + eff.contact_boost_days - 1 for c in contacts)
            total += q ** (t - u) * (eff.contact_boost if boosted else 1.0)
        return math.exp(-eff.return_r0 * total)

    def no_return(u: int, e: int) -> float:
        """The same with each contact on or after d sent with probability winback_probability."""
        total = 0.0
        for sent in itertools.product((False, True), repeat=len(future)):
            w = math.prod(eff.winback_probability if x else 1 - eff.winback_probability for x in sent)
            total += w * no_return_with(u, e, past + [c for c, x in zip(future, sent, strict=True) if x])
        return total

    def stay(t: int) -> float:
        return math.exp(-hazard(t) - rate)

    survive, weight, dormant_window = 1.0, 0.0, 0.0
    for u in range(last + 1, d):
        w = survive * (1 - math.exp(-hazard(u)))
        weight += w * no_return(u, d - 1)
        dormant_window += w * no_return(u, end)
        survive *= stay(u)
    forward, drawn_forward, a = 0.0, 0.0, 1.0
    for t in range(d, end + 1):
        forward += a * (1 - math.exp(-hazard(t))) * no_return(t, end)
        drawn_forward += a * (1 - math.exp(-hazard(t))) * no_return_with(t, end, drawn)
        a *= stay(t)
    forward += a
    drawn_forward += a
    return (survive * forward + dormant_window) / (survive + weight), drawn_forward, forward


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
    observable, alive, alive_expected = _by_hand(last, d, rate, h0, onb, coins)
    assert truth["p_no_order"][0] == pytest.approx(alive, rel=1e-9)
    assert truth["p_no_order_observable"][0] == pytest.approx(observable, rel=1e-8)
    if gap_days > 1:  # the hidden dormancy makes no order likelier than for a surely alive client
        assert observable > alive_expected


# -- complaints whose future is not drawn yet: explicit sums over every way they can turn out -------------

M = syn.MINUTES_PER_DAY


def _resolution_days(sev: int, cmin_lo: int, cmin_hi: int, first: int, last: int) -> tuple[np.ndarray, float]:
    """P(resolution day = t) for t in first .. last and P(later) of a resolvable complaint created at
    a minute uniform in [cmin_lo, cmin_hi], from the exponential CDF of its delay, minute by minute."""
    mean = EFFECTS.resolve_mean_days_per_severity * sev * M
    cmins = np.arange(cmin_lo, cmin_hi + 1)

    def cdf(x: np.ndarray) -> np.ndarray:  # P(delay < x): round(delay) >= a  <=>  delay >= a - 1/2
        return -np.expm1(-np.maximum(x, 0) / mean)

    probs = [
        float(np.mean(cdf((t + 1) * M - cmins - 0.5) - cdf(t * M - cmins - 0.5)))
        for t in range(first, last + 1)
    ]
    return np.asarray(probs), float(np.mean(1 - cdf((last + 1) * M - cmins - 0.5)))


Scenario = tuple[float, list[tuple[int, int | None, int, bool]]]  # weight, [(created, resolved, sev, hf)]


def _alive_forward_by_hand(
    eff: syn.Effects,
    d: int,
    end: int,
    scenarios: list[Scenario],
    contacts: list[int],
    base_last: tuple[int, bool],
) -> float:
    """E over the scenarios of P(no order in d .. end) on the alive path of the client of _one_client
    (rate 1/30, h0 1/300, onboarding x4, created on day 0), each contact sent with probability 1/2."""
    rate, h0, onb = 1 / 30, 1 / 300, 4.0
    q = math.exp(-1 / eff.return_tau_days)

    def no_return(u: int, pen: float) -> float:
        total = 0.0
        for sent in itertools.product((False, True), repeat=len(contacts)):
            s = 0.0
            for t in range(u + 1, end + 1):
                on = any(
                    u < c <= t <= c + eff.contact_boost_days - 1
                    for c, x in zip(contacts, sent, strict=True)
                    if x
                )
                s += q ** (t - u) * (eff.contact_boost if on else 1.0)
            total += 0.5 ** len(contacts) * math.exp(-eff.return_r0 * math.exp(-pen) * s)
        return total

    cache: dict[tuple[int, float], float] = {}
    result = 0.0
    for w, items in scenarios:
        a, acc = 1.0, 0.0
        for t in range(d, end + 1):
            opened = [(s, h) for c, r, s, h in items if c <= t and (r is None or t < r)]
            n_resolved = sum(1 for c, r, _, _ in items if r is not None and r <= t)
            log = sum(
                eff.open_base + eff.open_per_severity * (s - 1) + eff.open_human_factor * h for s, h in opened
            )
            log += eff.resolved_effect * n_resolved
            haz = h0 * math.exp(log) * (onb if t <= eff.onboarding_days else 1.0)
            if opened:  # the worst open complaint, else the latest one (later order first on a tie)
                sev, hf = max(s for s, _ in opened), any(h for _, h in opened)
            else:
                made = [(c, i, s, h) for i, (c, r, s, h) in enumerate(items) if c <= t]
                sev, hf = max(made)[2:] if made else base_last
            pen = eff.return_per_severity * (sev - 1) + eff.return_human_factor * hf
            if (t, pen) not in cache:
                cache[(t, pen)] = no_return(t, pen)
            acc += a * (1 - math.exp(-haz)) * cache[(t, pen)]
            a *= math.exp(-haz - rate)
        result += w * (a + acc)
    return result


def _pending_scenarios(
    eff: syn.Effects, order_day: int, d: int, end: int
) -> list[tuple[float, tuple | None]]:
    """How the complaint draw of an order on ``order_day`` can turn out, given that it created no
    complaint before d: none, or a complaint created on day c >= d of each severity, human factor
    and resolution day."""
    lo, hi = eff.complaint_delay_days
    p, per_day = eff.complaint_probability, eff.complaint_probability / (hi - lo + 1)
    z = 1 - per_day * max(0, min(d - 1, order_day + hi) - (order_day + lo) + 1)
    p_hf = 0.10 + 0.90 * eff.human_factor_probability  # category "staff" (10%) or another with 20%
    out: list[tuple[float, tuple | None]] = [((1 - p) / z, None)]
    for c in range(max(d, order_day + lo), order_day + hi + 1):
        for sev in range(1, 6):
            for hf in (False, True):
                w = per_day / z * eff.severity_probabilities[sev - 1] * (p_hf if hf else 1 - p_hf)
                pr = eff.resolve_probability_by_severity[sev - 1]
                probs, later = _resolution_days(sev, c * M, c * M + M - 1, c, end)
                out.append((w * (1 - pr + pr * later), (c, None, sev, hf)))
                out += [(w * pr * x, (c, c + j, sev, hf)) for j, x in enumerate(probs)]
    assert sum(w for w, _ in out) == pytest.approx(1, abs=1e-12)
    return out


@pytest.mark.parametrize(("sev", "hf", "days_ago"), [(1, False, 1), (3, True, 5), (5, True, 40)])
def test_observable_oracle_integrates_the_resolution_of_an_open_complaint(
    sev: int, hf: bool, days_ago: int
) -> None:
    """An open complaint: resolved some day from d on, or never, as its draw says given that it was
    not resolved before d (the oracle must not know the drawn resolution day)."""
    d, end = 300, 300 + HORIZON - 1
    sim = _one_client(1 / 30, 1 / 300, 4.0)
    sim.alive[0], sim.last_order_day[0] = True, d - 30
    cmin = (d - days_ago) * M + 700
    sim.shadow.open(np.array([0]), np.array([sev], np.int8), np.array([hf]))
    sim.clog = [
        syn._complaint_entry(
            {
                "idx": np.array([0]),
                "sev": np.array([sev], np.int8),
                "hf": np.array([hf]),
                "cmin": np.array([cmin]),
                "rday": np.array([d + 3]),
            },  # the drawn day, which must not matter
            np.array([-1]),
        )
    ]
    got = sim._expected_alive_no_order(np.array([0]), d, end)[0]
    pr = EFFECTS.resolve_probability_by_severity[sev - 1]
    probs, later = _resolution_days(sev, cmin, cmin, d, end)
    unresolved = math.exp(-(d * M - cmin - 0.5) / (EFFECTS.resolve_mean_days_per_severity * sev * M))
    z = 1 - pr + pr * unresolved
    created = cmin // M
    scenarios: list[Scenario] = [((1 - pr + pr * later) / z, [(created, None, sev, hf)])]
    scenarios += [(pr * x / z, [(created, d + j, sev, hf)]) for j, x in enumerate(probs)]
    assert sum(w for w, _ in scenarios) == pytest.approx(1, abs=1e-12)
    want = _alive_forward_by_hand(sim.eff, d, end, scenarios, [d - 30 + 95], (sev, hf))
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("days_ago", [1, 3, 9])
def test_observable_oracle_integrates_the_complaint_draw_of_a_recent_order(days_ago: int) -> None:
    eff = dataclasses.replace(EFFECTS, complaint_probability=0.5)  # often enough to weigh in
    d, end = 300, 300 + HORIZON - 1
    sim = _one_client(1 / 30, 1 / 300, 4.0)
    sim.eff = eff
    sim.alive[0], sim.last_order_day[0] = True, d - days_ago
    sim.recent = {d - days_ago: {"idx": np.array([0]), "cday": np.array([-1])}}
    got = sim._expected_alive_no_order(np.array([0]), d, end)[0]
    scenarios = [(w, [x] if x else []) for w, x in _pending_scenarios(eff, d - days_ago, d, end)]
    assert got == pytest.approx(
        _alive_forward_by_hand(eff, d, end, scenarios, [d - days_ago + 95], (1, False)), rel=1e-9
    )
    # a complaint drawn at that order and due on day d or later changes nothing: it is not known yet
    sim.recent = {d - days_ago: {"idx": np.array([0]), "cday": np.array([d + 1])}}
    assert sim._expected_alive_no_order(np.array([0]), d, end)[0] == pytest.approx(got, rel=1e-12)


@pytest.mark.slow
def test_observable_oracle_follows_two_pending_complaint_draws_and_an_open_complaint_jointly() -> None:
    """Which complaint was created last sets the return penalty once none is open; two draws and an
    open complaint interact in the hazard. A short window and delay keep the explicit sum small."""
    eff = dataclasses.replace(EFFECTS, complaint_probability=0.6, complaint_delay_days=(1, 3))
    d, end = 300, 309
    sim = _one_client(1 / 30, 1 / 300, 4.0)
    sim.eff = eff
    sim.alive[0], sim.last_order_day[0] = True, d - 1
    sim.recent = {t: {"idx": np.array([0]), "cday": np.array([-1])} for t in (d - 2, d - 1)}
    cmin = (d - 4) * M + 100
    sim.shadow.open(np.array([0]), np.array([2], np.int8), np.array([False]))
    sim.clog = [
        syn._complaint_entry(
            {
                "idx": np.array([0]),
                "sev": np.array([2], np.int8),
                "hf": np.array([False]),
                "cmin": np.array([cmin]),
                "rday": np.array([-1]),
            },
            np.array([-1]),
        )
    ]
    got = sim._expected_alive_no_order(np.array([0]), d, end)[0]
    pr = eff.resolve_probability_by_severity[1]
    probs, later = _resolution_days(2, cmin, cmin, d, end)
    z = 1 - pr + pr * math.exp(-(d * M - cmin - 0.5) / (eff.resolve_mean_days_per_severity * 2 * M))
    opened: list[tuple[float, tuple[int, int | None, int, bool]]] = [
        ((1 - pr + pr * later) / z, (d - 4, None, 2, False))
    ]
    opened += [(pr * x / z, (d - 4, d + j, 2, False)) for j, x in enumerate(probs)]
    scenarios: list[Scenario] = [
        (wo * wa * wb, [o] + [x for x in (a, b) if x])
        for (wo, o), (wa, a), (wb, b) in itertools.product(
            opened, _pending_scenarios(eff, d - 2, d, end), _pending_scenarios(eff, d - 1, d, end)
        )
    ]
    assert got == pytest.approx(_alive_forward_by_hand(eff, d, end, scenarios, [], (2, False)), rel=1e-9)


# -- Monte Carlo over the hidden state --------------------------------------------------------------------


def _simulation(clients: int, seed: int, eff: syn.Effects = EFFECTS) -> BlockSimulation:
    p = GenerateParams.model_validate({"clients": clients, "seed": seed})
    rng = np.random.Generator(np.random.PCG64(block_seeds(p.seed, 1)[0]))
    latent = draw_latent(rng, p.clients, p.n_days, eff)
    sim = BlockSimulation(latent, rng, p.n_days, onboarding_multiplier(0.4), eff)
    sim.schedule_prevention()
    return sim


def _redraw_future(sim: BlockSimulation, d: int, rng: np.random.Generator) -> None:
    """Re-draw, for every client, each draw of the generator that falls due on or after day d, from
    its prior given that it did not fall due before d (rejection sampling with the generator's own
    draws): the win-back coins of contacts from d on, whether and when the complaints open at d
    are resolved (real ones and the ghosts of the alive path), and the complaints of recent orders
    not created before d. Called at the start of day d."""
    eff = sim.eff
    # win-back coins of the contacts on or after d, scheduled by the last completed order
    cj = sim.last_order_day[None, :] + np.asarray(eff.winback_offsets_days)[:, None]
    future = cj >= d
    fresh = (rng.random(cj.shape) < eff.winback_probability) & ~sim.lat.do_not_contact
    sim.coins = np.where(future, fresh, sim.coins)
    for day in [day for day in sim.buckets["winback"] if day >= d]:
        del sim.buckets["winback"][day]
    for slot in range(cj.shape[0]):
        i = np.flatnonzero(future[slot] & sim.coins[slot])
        fields = {"idx": i, "lday": sim.last_order_day[i], "slot": np.full(i.size, slot)}
        syn._push(sim.buckets["winback"], cj[slot, i], fields)

    def resolution_day(
        sev: np.ndarray, cmin: np.ndarray, accept: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """The generator's resolution draw (-1: never), repeated where ``accept`` rejects it."""
        out = np.full(sev.size, -2, np.int64)
        todo = np.arange(sev.size)
        while todo.size:
            s = sev[todo].astype(np.int64)
            res = rng.random(todo.size) < np.asarray(eff.resolve_probability_by_severity)[s - 1]
            delay = rng.exponential(1.0, todo.size) * eff.resolve_mean_days_per_severity * s * M
            rday = np.where(res, (cmin[todo] + np.round(delay).astype(np.int64)) // M, -1)
            ok = accept(rday)
            out[todo[ok]] = rday[ok]
            todo = todo[~ok]
        return out

    # complaints open at d: resolved on or after d, or never
    for buckets in (sim.buckets, sim.ghost):
        for day in [day for day in buckets["resolve"] if day >= d]:
            del buckets["resolve"][day]
    log = syn._concat(sim.clog)
    alive_path = (log["lday"] < 0) | (log["lday"] == sim.last_order_day[log["idx"]])
    opened = alive_path & ((log["rday"] < 0) | (log["rday"] >= d))
    log["rday"][opened] = resolution_day(
        log["sev"][opened], log["cmin"][opened], lambda r: (r < 0) | (r >= d)
    )
    for ghost, buckets in ((False, sim.buckets), (True, sim.ghost)):
        sel = opened & (log["rday"] >= 0) & ((log["lday"] >= 0) == ghost)
        fields = {k: log[k][sel] for k in ("idx", "sev", "hf", "lday")}
        if not ghost:
            del fields["lday"]
        syn._push(buckets["resolve"], log["rday"][sel], fields)
    sim.clog = [log]
    # complaint draws of recent orders that created no complaint before d
    for day in [day for day in sim.buckets["create"] if day >= d]:
        del sim.buckets["create"][day]
    lo, hi = eff.complaint_delay_days
    staff = syn.COMPLAINT_CATEGORIES.index("staff")
    for order_day in range(d - hi, d):
        r = sim.recent.get(order_day)
        if r is None:
            continue
        keep = ~((r["cday"] >= 0) & (r["cday"] < d))
        cday = np.full(int(keep.sum()), -2, np.int64)
        todo = np.arange(cday.size)
        while todo.size:
            has = rng.random(todo.size) < eff.complaint_probability
            c = order_day + rng.integers(lo, hi + 1, todo.size)
            ok = ~has | (c >= d)
            cday[todo[ok]] = np.where(has[ok], c[ok], -1)
            todo = todo[~ok]
        r["cday"][keep] = cday
        made = cday >= 0
        idx, cday = r["idx"][keep][made], cday[made]
        m = idx.size
        cmin = cday * M + rng.integers(0, M, m)
        sev = (syn._draw(rng, eff.severity_probabilities, m) + 1).astype(np.int8)
        cat = syn._draw(rng, eff.category_probabilities, m).astype(np.int8)
        hf = (cat == staff) | (rng.random(m) < eff.human_factor_probability)
        rday = resolution_day(sev, cmin, lambda r: np.ones(r.size, bool))
        rmin = np.where(rday >= 0, rday * M, -1)  # only the day is used by the simulation
        fields = {"idx": idx, "sev": sev, "hf": hf, "cat": cat, "cmin": cmin, "rmin": rmin, "rday": rday}
        syn._push(sim.buckets["create"], cday, fields)


@pytest.mark.slow
@pytest.mark.parametrize("gap_days", [5, 45, 140])
def test_observable_oracle_matches_monte_carlo_over_the_hidden_state(gap_days: int) -> None:
    """Copies of clients who ordered yesterday, re-simulated: among the copies that then place no
    completed order for ``gap_days``, the oracle is the same for all (it sees no hidden state), it
    does not change when every draw that falls due from the cutoff on is drawn again, and it equals
    the share without an order in the following window when each copy has its own such draws."""
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
    opened, pending = rep._uncertain_complaints(np.flatnonzero(quiet.ravel()), d)
    assert opened["idx"].size > 100  # the quiet copies do meet complaints open at d
    if gap_days <= syn.EFFECTS.complaint_delay_days[1]:
        assert pending["idx"].size > 1000  # and draws of their last order not yet due
    _redraw_future(rep, d, np.random.default_rng(11))
    again = rep.truth_at(d, HORIZON)
    np.testing.assert_allclose(again["p_no_order_observable"], truth["p_no_order_observable"], rtol=1e-12)
    assert np.abs(again["p_no_order"] - truth["p_no_order"]).max() > 0.05  # the clairvoyant one does see them
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
