"""Seeded synthetic CRM: clients, orders, complaints and contacts with a known generative truth.

The generator is a discrete daily simulation, vectorised with numpy over the clients of a block.
Each client has latent parameters (order rate, value, margin, payer type, base dormancy hazard,
manager) and a latent state, ALIVE or DORMANT. On every day ``t`` of the history, in this order:

0. scheduled events of day t: win-back contacts (sent only to dormant clients whose last
   completed order is still the one that scheduled them), the end of a contact's 30-day boost,
   prevention contacts (alive clients, no effect), complaints that were drawn at an order and fall
   due today (they only materialise if the client is alive), complaint resolutions and the end of
   a resolution's loyalty effect;
1. an ALIVE client goes dormant with probability ``1 - exp(-H)``, ``H = h0 * exp(onboarding +
   complaints)``; if it stays alive it places a completed order with probability ``1 - exp(-rate)``;
2. a DORMANT client (dormant at the start of day t) returns, placing a completed order, with
   probability ``1 - exp(-R)``, ``R = r0 * exp(-s/tau) * exp(-penalty at loss) * relapse * boost``
   where s = t - (day it went dormant) >= 1.

Complaints only arise after orders and win-back contacts are scheduled from the date of the last
order, so along the path "no completed order from the cutoff on" every hazard is a known function
of the day. That makes the ground truth exact: :meth:`BlockSimulation.truth_at` computes the
probability of no completed order in ``[D, D + horizon_days)`` by a forward recursion over the
window with the closed-form no-return survival of a dormancy that starts on each day of it.

truth.parquet carries two oracles per (client, cutoff D):

- ``churn_probability`` / ``winback_probability`` (clairvoyant): conditioned on the client's FULL
  latent state at D, including whether it is secretly DORMANT already and since when. No model of
  the CRM history can reach it (on the default sample ~16% of observably active clients are
  already dormant, and nothing in the data says which).
- ``churn_probability_observable`` / ``winback_probability_observable`` (the fair bound):
  conditioned on the latent PARAMETERS (order rate, base hazard, value, ...), the latent state at
  the last completed order L (complaint counts, earlier losses and returns), the generator's
  draws that fell due BEFORE D (the complaints drawn at orders and created before D, their
  resolutions before D, the win-back coins of contacts before D) and the completed-order history
  up to D; the alive/dormant path since L is integrated out, and so is every draw that falls due
  on or after D, with its known distribution given that it did not fall due before D: whether
  and when an open complaint is resolved (never, or an exponential delay: a geometric day from D
  on), whether the complaint draw of an order of the last ``complaint_delay_days`` days creates a
  complaint on day D or later (day, severity, human factor, resolution), and the win-back coins
  of contacts on or after D. No one could know those at D, so conditioning on them (as this
  oracle did before) let it rank by the future. Along "no completed order since L" every hazard
  is a known function of the day and of those complaints, so with ``S_t`` the probability of
  staying alive without ordering through day t and ``w_u = S_{u-1} (1 - exp(-H_u))`` the
  probability of going dormant on day u,
  ``P(no order in [D, D+h) | history)``
  ``= (S_{D-1} E[A_D] + sum_u w_u E[N_u(D+h-1)]) / (S_{D-1} + sum_u w_u N_u(D-1))``
  where ``N_u(E)`` is the no-return survival from u through day E (win-back contacts included when
  they fall after u; the expectation is over the coins of contacts on or after D) and ``E[A_D]``
  the alive forward recursion in expectation over the uncertain complaints: a Markov chain on
  their joint state (one axis per complaint, see :func:`_forward_chain`), exact except that when
  three or more pending complaint draws all create a complaint only the two earliest are
  followed (the error is below the prior weight of that event: 4e-4 for orders on each of the
  last three days, 2.4e-3 on each of the last five; 34 of the 8 651 active clients of the default
  test cutoff ordered three or more times in its last ten days). The sums over u in (L, D) are
  accumulated during the simulation as power-series moments in ``c_u q**-u``
  (:meth:`BlockSimulation._track_observable`), exact to ~1e-9 with no look-back cap. Complaints
  created after L on the alive path count in its hazards whether or not they really arose (they
  do not arise while the client is dormant: conditioning on that would leak the hidden state);
  the same holds for win-back contacts. So this oracle does not use two things a model can see (a
  complaint or a win-back contact after L proves the client alive, respectively dormant, on that
  day); it is the best ranking from the order history given the parameters, not a strict upper
  bound for every feature set.

Clients are simulated in fixed blocks of :data:`BLOCK_CLIENTS`, each from its own child of
``numpy.random.SeedSequence(seed)``; so the output of a block never depends on how many blocks
are processed together, and memory stays bounded for any number of clients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.config import FeatureParams, resolve_cutoff_schedule
from features.contract import COMPLAINT_CATEGORIES, CONTACT_CAMPAIGNS, ORDER_STATUSES

if TYPE_CHECKING:
    import pandas as pd

MINUTES_PER_DAY = 1440
BLOCK_CLIENTS = 100_000  # clients per seeded block; part of the output's definition, never tuned
_NEVER = -(10**9)  # a day long before any history
OBS_TERMS = 10  # power-series terms of the observable oracle; |x| <= 0.5 so the error is < 3e-10

SEGMENTS = ("retail", "wholesale", "online")
WINBACK_OFFERS = ("we_miss_you_10", "comeback_20", "vip_call_30")


class GenerateParams(BaseModel):
    """The ``generate:`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid")

    clients: int = Field(20_000, gt=0, description="number of clients to simulate")
    seed: int = Field(7, ge=0, description="root seed; same seed and params give byte-identical tables")
    start: dt.date = Field(dt.date(2022, 1, 1), description="first day of simulated history")
    export_date: dt.date = Field(
        dt.date(2025, 1, 1), description="export taken at 00:00 UTC of this day (exclusive end of history)"
    )
    format: Literal["csv", "parquet"] = "csv"
    onboarding_dropout: float = Field(
        0.40, ge=0.2, le=0.7, description="share of new clients that go dormant within their first 100 days"
    )

    @model_validator(mode="after")
    def _check_dates(self) -> GenerateParams:
        if (self.export_date - self.start).days < 180:
            raise ValueError("generate.export_date must be at least 180 days after generate.start")
        return self

    @property
    def n_days(self) -> int:
        return (self.export_date - self.start).days


@dataclass(frozen=True)
class Effects:
    """Effect sizes of the generative model. Fixed: the tests and the README quote their effects."""

    # order rate: lognormal gap around 35 days plus 2% frequent buyers (weekly); mean rate ~1/32 per day
    gap_median_days: float = 35.0
    gap_sigma: float = 0.15  # narrow: a regular buyer rarely stays silent for 180 days while alive
    frequent_share: float = 0.02
    frequent_gap_days: float = 7.0
    # value and margin
    amount_median: float = 120.0
    amount_client_sigma: float = 0.9
    amount_order_sigma: float = 0.45
    segment_amount_factor: tuple[float, float, float] = (1.0, 4.0, 0.7)  # retail, wholesale, online
    margin_mean: float = 0.22
    margin_sd: float = 0.12
    margin_order_sd: float = 0.05
    bad_payer_share: float = 0.08
    bad_payer_never_pays: float = 0.15
    do_not_contact_share: float = 0.03
    n_managers: int = 40
    # dormancy hazard
    h0_mean: float = 1 / 800
    h0_sigma: float = 0.6
    onboarding_days: int = 100
    # complaints (drawn at a completed order, created 1..10 days later if the client is alive)
    complaint_probability: float = 0.08
    complaint_delay_days: tuple[int, int] = (1, 10)
    severity_probabilities: tuple[float, ...] = (0.40, 0.25, 0.17, 0.12, 0.06)
    category_probabilities: tuple[float, ...] = (0.30, 0.20, 0.22, 0.10, 0.10, 0.08)
    human_factor_probability: float = 0.2
    resolve_probability_by_severity: tuple[float, ...] = (0.80, 0.75, 0.68, 0.58, 0.50)
    resolve_mean_days_per_severity: float = 3.0
    # log-hazard effect of an OPEN complaint: base + per_severity*(sev-1) + human_factor*hf
    open_base: float = 3.2
    open_per_severity: float = 0.45
    open_human_factor: float = 0.8
    returned_sensitivity: float = 1.6  # open-complaint effect multiplier once a client has returned
    resolved_effect: float = -0.8  # log-hazard effect for resolved_effect_days after resolution
    resolved_effect_days: int = 365
    # return from dormancy
    return_r0: float = 0.0025
    return_tau_days: float = 200.0
    return_per_severity: float = 0.3
    return_human_factor: float = 0.5
    relapse_factor: float = 0.03  # times_lost >= 2
    contact_boost: float = 3.0
    contact_boost_days: int = 30
    winback_offsets_days: tuple[int, int, int] = (95, 185, 365)
    winback_probability: float = 0.5
    prevention_per_day: float = 0.02 / 30
    # extra non-completed orders, next to completed ones
    cancelled_probability: float = 0.03
    returned_probability: float = 0.03
    extra_order_max_delay_days: int = 3
    # payment
    payment_terms_days: int = 30
    good_payer_delay_mean_days: float = -4.0
    good_payer_delay_sd_days: float = 5.0
    bad_payer_delay_days: tuple[float, float] = (20.0, 120.0)


EFFECTS = Effects()


@dataclass(frozen=True)
class TruthSpec:
    """Where the oracle is written: cutoff days (as dates), horizon and the active/lapsed threshold."""

    cutoffs: tuple[dt.date, ...]
    horizon_days: int = 100
    active_days: int = 90  # features.lapse_tiers_days[0]

    @classmethod
    def for_features(cls, features: FeatureParams, params: GenerateParams) -> TruthSpec:
        """The truth at the cutoffs the features stage will build on this export.

        The schedule is resolved by the features' own ``resolve_cutoff_schedule``, before any clean
        table exists: ``end: null`` from ``generate.export_date``, ``start: null`` from
        ``generate.start`` (where the simulated history, and so its first completed order, begins)
        plus one step. The schedule counts back from its end, so the features stage, which counts
        from the first completed order of the clean orders (on or after ``generate.start``), builds
        these dates or a subset of them. Raises features.config.CutoffError.
        """
        resolved = resolve_cutoff_schedule(
            features.cutoffs,
            export_date=params.export_date,
            horizon_days=features.horizon_days,
            first_order=params.start,
            export_key="generate.export_date",
            first_order_source="generate.start",
        )
        return cls(
            cutoffs=resolved.dates,
            horizon_days=features.horizon_days,
            active_days=features.lapse_tiers_days[0],
        )


def onboarding_multiplier(target: float, eff: Effects = EFFECTS) -> float:
    """Hazard multiplier of the first ``onboarding_days`` so that ~``target`` of clients go dormant then.

    Without complaints the share is ``E[1 - exp(-days * h0 * M)]`` over the lognormal h0 (quantile
    grid). An open complaint in the first days multiplies that hazard again, so complaints add an
    extra drop-out ``c`` among the clients who would have stayed: target = base + (1 - base) * c.
    ``c`` grows with the base share; its values below were measured on 50k-client runs.
    """
    base_grid = np.linspace(0.0, 0.95, 400)
    extra = np.interp(base_grid, (0.059, 0.294, 0.647), (0.092, 0.145, 0.176))
    reached = base_grid + (1 - base_grid) * extra
    goal = float(np.interp(target, reached, base_grid))
    qs = (np.arange(4000) + 0.5) / 4000
    z = np.sqrt(2) * _erfinv(2 * qs - 1)
    mu = math.log(eff.h0_mean) - eff.h0_sigma**2 / 2
    h0 = np.exp(mu + eff.h0_sigma * z)
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        share = float(np.mean(-np.expm1(-eff.onboarding_days * h0 * mid)))
        lo, hi = (mid, hi) if share < goal else (lo, mid)
    return (lo + hi) / 2


def _erfinv(y: np.ndarray) -> np.ndarray:
    """Inverse error function by Newton steps (numpy has none; scipy is not a dependency)."""
    x = np.zeros_like(y)
    erf = np.vectorize(math.erf)
    for _ in range(60):
        x = x - (erf(x) - y) / (2 / math.sqrt(math.pi) * np.exp(-(x**2)))
    return x


# ---------------------------------------------------------------------------------------------
# latent parameters of a block
# ---------------------------------------------------------------------------------------------


@dataclass
class Latent:
    """Per-client latent parameters of one block, sorted by created day."""

    created_day: np.ndarray  # int64, day index from params.start
    created_minute: np.ndarray  # int64, minute of that day
    manager: np.ndarray  # int64, 0..n_managers-1
    do_not_contact: np.ndarray  # bool
    order_rate: np.ndarray  # float, per day
    amount_scale: np.ndarray  # float
    margin_rate: np.ndarray  # float
    bad_payer: np.ndarray  # bool
    h0: np.ndarray  # float, base dormancy hazard per day

    def take(self, idx: np.ndarray) -> Latent:
        return Latent(**{k: v[idx] for k, v in self.__dict__.items()})


def manager_segments(eff: Effects = EFFECTS) -> np.ndarray:
    """Segment index of each manager: M001 retail, M002 wholesale, M003 online, M004 retail..."""
    return np.arange(eff.n_managers) % len(SEGMENTS)


def draw_latent(rng: np.random.Generator, n: int, n_days: int, eff: Effects = EFFECTS) -> Latent:
    """Draw the latent parameters of ``n`` clients arriving uniformly over the first n_days - 30 days."""
    created_day = np.sort(rng.integers(0, n_days - 30, n))
    created_minute = rng.integers(0, MINUTES_PER_DAY, n)
    manager = rng.integers(0, eff.n_managers, n)
    segment = manager_segments(eff)[manager]
    dnc = rng.random(n) < eff.do_not_contact_share
    gap = eff.gap_median_days * np.exp(eff.gap_sigma * rng.standard_normal(n))
    frequent = rng.random(n) < eff.frequent_share
    gap_frequent = eff.frequent_gap_days * np.exp(0.4 * rng.standard_normal(n))
    order_rate = 1.0 / np.where(frequent, gap_frequent, gap)
    factor = np.asarray(eff.segment_amount_factor)[segment]
    amount_scale = eff.amount_median * factor * np.exp(eff.amount_client_sigma * rng.standard_normal(n))
    margin_rate = eff.margin_mean + eff.margin_sd * rng.standard_normal(n)
    bad_payer = rng.random(n) < eff.bad_payer_share
    mu = math.log(eff.h0_mean) - eff.h0_sigma**2 / 2
    h0 = np.exp(mu + eff.h0_sigma * rng.standard_normal(n))
    return Latent(
        created_day, created_minute, manager, dnc, order_rate, amount_scale, margin_rate, bad_payer, h0
    )


# ---------------------------------------------------------------------------------------------
# complaint state: counts, so sums and maxima are exact and removals are cheap
# ---------------------------------------------------------------------------------------------


@dataclass
class ComplaintState:
    """Per-client counts of open complaints by severity, open human-factor ones, active resolutions."""

    open_by_severity: np.ndarray  # (5, n) int32
    open_human: np.ndarray  # int32
    resolved_active: np.ndarray  # int32, resolved within the last resolved_effect_days
    last_severity: np.ndarray  # int8, 0 = never complained
    last_human: np.ndarray  # bool

    @classmethod
    def empty(cls, n: int) -> ComplaintState:
        return cls(
            np.zeros((5, n), np.int32),
            np.zeros(n, np.int32),
            np.zeros(n, np.int32),
            np.zeros(n, np.int8),
            np.zeros(n, bool),
        )

    def take(self, idx: np.ndarray) -> ComplaintState:
        return ComplaintState(
            self.open_by_severity[:, idx].copy(),
            self.open_human[idx].copy(),
            self.resolved_active[idx].copy(),
            self.last_severity[idx].copy(),
            self.last_human[idx].copy(),
        )

    def open(self, idx: np.ndarray, sev: np.ndarray, hf: np.ndarray) -> None:
        np.add.at(self.open_by_severity, (sev - 1, idx), 1)
        np.add.at(self.open_human, idx, hf.astype(np.int32))
        self.last_severity[idx] = sev
        self.last_human[idx] = hf

    def resolve(self, idx: np.ndarray, sev: np.ndarray, hf: np.ndarray) -> None:
        np.add.at(self.open_by_severity, (sev - 1, idx), -1)
        np.add.at(self.open_human, idx, -hf.astype(np.int32))
        np.add.at(self.resolved_active, idx, 1)

    def expire(self, idx: np.ndarray) -> None:
        np.add.at(self.resolved_active, idx, -1)

    def log_effect(self, idx: np.ndarray, returned: np.ndarray, eff: Effects) -> np.ndarray:
        """complaint term of the log dormancy hazard for clients ``idx`` (returned: times_returned > 0)."""
        counts = self.open_by_severity[:, idx]
        n_open = counts.sum(axis=0)
        sev_excess = (np.arange(5)[:, None] * counts).sum(axis=0)
        open_term = eff.open_base * n_open + eff.open_per_severity * sev_excess
        open_term = open_term + eff.open_human_factor * self.open_human[idx]
        mult = np.where(returned, eff.returned_sensitivity, 1.0)
        return mult * open_term + eff.resolved_effect * self.resolved_active[idx]

    def loss_penalty(self, idx: np.ndarray, eff: Effects) -> np.ndarray:
        """Return-rate penalty of the worst open complaint, else of the last one (0 if none)."""
        counts = self.open_by_severity[:, idx]
        any_open = counts.sum(axis=0) > 0
        worst = 5 - np.argmax(counts[::-1] > 0, axis=0)
        sev = np.where(any_open, worst, np.maximum(self.last_severity[idx], 1))
        hf = np.where(any_open, self.open_human[idx] > 0, self.last_human[idx])
        return eff.return_per_severity * (sev - 1) + eff.return_human_factor * hf


Events = dict[str, np.ndarray]


def _push(buckets: dict[int, list[Events]], day: np.ndarray | int, fields: Events) -> None:
    """Schedule events: one row per element of ``day`` (or all on one day), grouped by day."""
    if isinstance(day, int):
        if fields["idx"].size:
            buckets.setdefault(day, []).append(fields)
        return
    if day.size == 0:
        return
    order = np.argsort(day, kind="stable")
    day_sorted = day[order]
    cuts = np.flatnonzero(np.diff(day_sorted)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [day_sorted.size]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        sel = order[s:e]
        buckets.setdefault(int(day_sorted[s]), []).append({k: v[sel] for k, v in fields.items()})


def _pop(buckets: dict[int, list[Events]], day: int) -> Events | None:
    parts = buckets.pop(day, None)
    return _concat(parts) if parts else None


def _peek(buckets: dict[int, list[Events]], day: int) -> Events | None:
    parts = buckets.get(day)
    return _concat(parts) if parts else None


def _concat(parts: list[Events]) -> Events:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _before_export(
    parts: list[Events], empty: Events, stamp: str, sort_keys: tuple[str, ...], export_min: int
) -> Events:
    """The recorded events stamped before the export minute, sorted by ``sort_keys``.

    ``sort_keys`` go to ``np.lexsort``: the last key is the primary one. ``empty`` is the result
    when nothing was recorded (it fixes the columns and their dtypes).
    """
    events = _concat(parts) if parts else empty
    events = {k: v[events[stamp] < export_min] for k, v in events.items()}
    order = np.lexsort(tuple(events[k] for k in sort_keys))
    return {k: v[order] for k, v in events.items()}


EVENT_KINDS = ("winback", "boost_end", "prevention", "create", "resolve", "expire")


# ---------------------------------------------------------------------------------------------
# the simulation of one block
# ---------------------------------------------------------------------------------------------


class BlockSimulation:
    """Daily simulation of one block of clients; also computes the exact oracle at a cutoff day."""

    def __init__(
        self,
        latent: Latent,
        rng: np.random.Generator,
        n_days: int,
        onboarding_mult: float,
        eff: Effects = EFFECTS,
    ) -> None:
        n = latent.created_day.size
        self.lat, self.rng, self.n_days, self.eff = latent, rng, n_days, eff
        self.onb_mult = onboarding_mult
        self.q = math.exp(-1.0 / eff.return_tau_days)
        self.no_order = np.exp(-latent.order_rate)  # P(no order | alive, not going dormant) per day
        self.alive = np.zeros(n, bool)
        self.dormant_since = np.full(n, _NEVER, np.int64)
        self.times_lost = np.zeros(n, np.int32)
        self.times_returned = np.zeros(n, np.int32)
        self.last_order_day = np.full(n, _NEVER, np.int64)
        self.last_order_minute = np.zeros(n, np.int64)
        self.coins = np.zeros((3, n), bool)  # win-back contacts scheduled by the last completed order
        self.last_contact_day = np.full(n, _NEVER, np.int64)
        self.comp = ComplaintState.empty(n)
        self.hz = latent.h0.copy()  # h0 * exp(complaint term)
        self.rbq = np.zeros(n)  # dormant: r0 * exp(-penalty) * relapse * q**(-dormant_since)
        self.rb_eff = np.zeros(n)  # rbq * contact boost; 0 while alive
        self.first_dormant_day = np.full(n, -1, np.int64)
        self.onboarding_dropped = np.zeros(n, bool)
        self.buckets: dict[str, dict[int, list[Events]]] = {k: {} for k in EVENT_KINDS}
        self.rec: dict[str, list[Events]] = {"orders": [], "complaints": [], "contacts": [], "spells": []}
        self.day = 0
        # the observable oracle: the complaint state along the "alive, no order since the last
        # order" path (real state plus ghost complaints that did not arise because the client was
        # dormant), its hazard and loss penalty, and the running posterior sums (see truth_at)
        self.shadow = ComplaintState.empty(n)
        self.shz = latent.h0.copy()  # alive-path h0 * exp(complaint term)
        self.spen = np.zeros(n)  # alive-path loss penalty
        self.ghost: dict[str, dict[int, list[Events]]] = {"resolve": {}, "expire": {}}
        self.obs_s = np.ones(n)  # P(alive and no order on days L+1 .. t-1 | alive at the end of day L)
        # posterior moments (see _track_observable): obs_cur for the dormancy days after the last
        # win-back contact day passed so far, obs_done[j] for those before contact day j
        self.obs_cur = np.zeros((OBS_TERMS, n))
        self.obs_done = np.zeros((len(eff.winback_offsets_days), OBS_TERMS, n))
        # what the observable oracle needs to integrate the draws that fall due on or after a cutoff:
        # every complaint created so far on a possible alive path (lday -1: real; else a ghost of the
        # order on lday) and, per day of the last complaint_delay_days[1] days, the completed orders
        # with the creation day of the complaint drawn at them (-1: none drawn)
        self.clog: list[Events] = []
        self.recent: dict[int, Events] = {}

    # -- one day ---------------------------------------------------------------------------------

    def run_until(self, day: int) -> None:
        """Simulate days self.day .. day-1."""
        while self.day < day:
            self._step(self.day)
            self.day += 1

    def _step(self, t: int) -> None:
        cd = self.lat.created_day
        nbp = int(np.searchsorted(cd, t, "left"))  # clients created before day t
        nb = int(np.searchsorted(cd, t, "right"))
        self._scheduled_events(t)
        self._track_observable(t, nbp)
        buyers = np.zeros(0, np.int64)
        if nbp:
            # u < 1 - exp(-x)  <=>  E < x with E = -log(1 - u) ~ Exp(1): compare hazards, no exp needed.
            # Alive: dormant if E < H, else an order if E < H + rate (prob. exp(-H) * (1 - exp(-rate))).
            e = self.rng.standard_exponential(nbp)
            haz = self.hz[:nbp].copy()
            i0 = int(np.searchsorted(cd, t - self.eff.onboarding_days, "left"))
            haz[i0:nbp] *= self.onb_mult
            alive = self.alive[:nbp]
            x = np.where(alive, haz + self.lat.order_rate[:nbp], self.rb_eff[:nbp] * self.q**t)
            hit = np.flatnonzero(e < x)
            if hit.size:
                a = alive[hit]
                ha = hit[a]
                dorm = e[ha] < haz[ha]
                gone, ordered, back = ha[dorm], ha[~dorm], hit[~a]
                self._go_dormant(gone, t)
                self._come_back(back, t)
                buyers = np.sort(np.concatenate((ordered, back)))
        minute = self.rng.integers(0, MINUTES_PER_DAY, buyers.size)
        if nb > nbp:  # clients created today place their first order after being created
            born = np.arange(nbp, nb)
            self.alive[born] = True
            cm = self.lat.created_minute[born]
            first = cm + np.floor(self.rng.random(born.size) * (MINUTES_PER_DAY - cm)).astype(np.int64)
            buyers = np.concatenate((buyers, born))
            minute = np.concatenate((minute, first))
        self._place_orders(buyers, t, minute)

    def _scheduled_events(self, t: int) -> None:
        eff = self.eff
        ev = _pop(self.buckets["boost_end"], t)
        if ev is not None:
            i = ev["idx"][(self.last_contact_day[ev["idx"]] == ev["day"]) & ~self.alive[ev["idx"]]]
            self.rb_eff[i] = self.rbq[i]
        ev = _pop(self.buckets["winback"], t)
        if ev is not None:
            ok = (self.last_order_day[ev["idx"]] == ev["lday"]) & ~self.alive[ev["idx"]]
            i, slot = ev["idx"][ok], ev["slot"][ok]
            if i.size:
                self.last_contact_day[i] = t
                self.rb_eff[i] = self.rbq[i] * eff.contact_boost
                _push(
                    self.buckets["boost_end"],
                    t + eff.contact_boost_days,
                    {"idx": i, "day": np.full(i.size, t)},
                )
                shift = self.rng.integers(1, eff.n_managers, i.size)  # a manager other than the client's
                self.rec["contacts"].append(
                    {
                        "idx": i,
                        "minute": t * MINUTES_PER_DAY + self.rng.integers(540, 1080, i.size),
                        "campaign": np.full(i.size, CONTACT_CAMPAIGNS.index("winback"), np.int8),
                        "offer": slot.astype(np.int8),
                        "manager": (self.lat.manager[i] + shift) % eff.n_managers,
                    }
                )
        ev = _pop(self.buckets["prevention"], t)
        if ev is not None:
            i = ev["idx"][self.alive[ev["idx"]]]
            if i.size:
                self.rec["contacts"].append(
                    {
                        "idx": i,
                        "minute": t * MINUTES_PER_DAY + self.rng.integers(540, 1080, i.size),
                        "campaign": np.full(i.size, CONTACT_CAMPAIGNS.index("prevention"), np.int8),
                        "offer": np.full(i.size, -1, np.int8),
                        "manager": self.lat.manager[i],
                    }
                )
        touched = []
        ev = _pop(self.buckets["create"], t)
        if ev is not None:
            ok = self.alive[ev["idx"]]
            c = {k: v[ok] for k, v in ev.items()}
            if c["idx"].size:
                self.comp.open(c["idx"], c["sev"], c["hf"])
                self._schedule_resolution(self.buckets, c)
                self.rec["complaints"].append(c)
                self.clog.append(_complaint_entry(c, np.full(c["idx"].size, -1, np.int64)))
                touched.append(c["idx"])
            # on the alive path the complaints of dormant clients arise too (ghosts, shadow only)
            self.shadow.open(ev["idx"], ev["sev"], ev["hf"])
            g = {k: v[~ok] for k, v in ev.items()}
            g["lday"] = self.last_order_day[g["idx"]]
            if g["idx"].size:
                self.clog.append(_complaint_entry(g, g["lday"]))
            res = g["rday"] >= 0
            gr = {k: g[k][res] for k in ("idx", "sev", "hf", "lday")}
            _push(self.ghost["resolve"], g["rday"][res], gr)
            _push(
                self.ghost["expire"],
                g["rday"][res] + eff.resolved_effect_days,
                {"idx": gr["idx"], "lday": gr["lday"]},
            )
            shadow_touched = [ev["idx"]]
        else:
            shadow_touched = []
        ev = _pop(self.buckets["resolve"], t)
        if ev is not None:
            self.comp.resolve(ev["idx"], ev["sev"], ev["hf"])
            self.shadow.resolve(ev["idx"], ev["sev"], ev["hf"])
            touched.append(ev["idx"])
        ev = _pop(self.buckets["expire"], t)
        if ev is not None:
            self.comp.expire(ev["idx"])
            self.shadow.expire(ev["idx"])
            touched.append(ev["idx"])
        if touched:
            i = np.unique(np.concatenate(touched))
            self.hz[i] = self.lat.h0[i] * np.exp(self.comp.log_effect(i, self.times_returned[i] > 0, eff))
        # ghost resolutions count only while the order that scheduled their complaint is the last one
        for kind in ("resolve", "expire"):
            ev = _pop(self.ghost[kind], t)
            if ev is None:
                continue
            ok = self.last_order_day[ev["idx"]] == ev["lday"]
            i = ev["idx"][ok]
            if kind == "resolve":
                self.shadow.resolve(i, ev["sev"][ok], ev["hf"][ok])
            else:
                self.shadow.expire(i)
            shadow_touched.append(i)
        shadow_touched.extend(touched)
        if shadow_touched:
            i = np.unique(np.concatenate(shadow_touched))
            returned = self.times_returned[i] > 0
            self.shz[i] = self.lat.h0[i] * np.exp(self.shadow.log_effect(i, returned, eff))
            self.spen[i] = self.shadow.loss_penalty(i, eff)

    def _schedule_resolution(self, buckets: dict[str, dict[int, list[Events]]], c: Events) -> None:
        res = c["rday"] >= 0
        idx, sev, hf, rday = c["idx"][res], c["sev"][res], c["hf"][res], c["rday"][res]
        _push(buckets["resolve"], rday, {"idx": idx, "sev": sev, "hf": hf})
        _push(buckets["expire"], rday + self.eff.resolved_effect_days, {"idx": idx})

    def _go_dormant(self, i: np.ndarray, t: int) -> None:
        if not i.size:
            return
        eff = self.eff
        self.alive[i] = False
        self.dormant_since[i] = t
        self.times_lost[i] += 1
        self.last_contact_day[i] = _NEVER
        pen = self.comp.loss_penalty(i, eff)
        relapse = np.where(self.times_lost[i] >= 2, eff.relapse_factor, 1.0)
        self.rbq[i] = eff.return_r0 * np.exp(-pen) * relapse * self.q ** (-t)
        self.rb_eff[i] = self.rbq[i]
        first = self.first_dormant_day[i] < 0
        self.first_dormant_day[i[first]] = t
        self.onboarding_dropped[i] |= (t - self.lat.created_day[i]) <= eff.onboarding_days
        self.rec["spells"].append({"idx": i, "day": np.full(i.size, t), "back": np.zeros(i.size, bool)})

    def _come_back(self, i: np.ndarray, t: int) -> None:
        if not i.size:
            return
        self.alive[i] = True
        self.times_returned[i] += 1
        self.rec["spells"].append({"idx": i, "day": np.full(i.size, t), "back": np.ones(i.size, bool)})
        self.rb_eff[i] = 0.0
        self.last_contact_day[i] = _NEVER
        self.hz[i] = self.lat.h0[i] * np.exp(self.comp.log_effect(i, self.times_returned[i] > 0, self.eff))

    def _place_orders(self, i: np.ndarray, t: int, minute: np.ndarray) -> None:
        """Completed orders of clients ``i`` on day t, with what they schedule."""
        k = i.size
        self.recent.pop(t - self.eff.complaint_delay_days[1], None)
        if not k:
            return
        eff, rng = self.eff, self.rng
        self.last_order_day[i] = t
        self.last_order_minute[i] = t * MINUTES_PER_DAY + minute
        self._reset_observable(i)
        self.rec["orders"].append(
            {"idx": i, "minute": t * MINUTES_PER_DAY + minute, "status": np.zeros(k, np.int8)}
        )
        # win-back contacts at 95/185/365 days, sent later only if the client is then dormant
        coins = (rng.random((3, k)) < eff.winback_probability) & ~self.lat.do_not_contact[i]
        self.coins[:, i] = coins
        for slot, off in enumerate(eff.winback_offsets_days):
            sel = i[coins[slot]]
            _push(
                self.buckets["winback"],
                t + off,
                {"idx": sel, "lday": np.full(sel.size, t), "slot": np.full(sel.size, slot)},
            )
        # a complaint about this order, created 1..10 days later if the client is still alive then
        has = rng.random(k) < eff.complaint_probability
        c = i[has]
        m = c.size
        if m:
            lo, hi = eff.complaint_delay_days
            cday = t + rng.integers(lo, hi + 1, m)
            cmin = cday * MINUTES_PER_DAY + rng.integers(0, MINUTES_PER_DAY, m)
            sev = (_draw(rng, eff.severity_probabilities, m) + 1).astype(np.int8)
            cat = _draw(rng, eff.category_probabilities, m).astype(np.int8)
            hf = (cat == COMPLAINT_CATEGORIES.index("staff")) | (rng.random(m) < eff.human_factor_probability)
            resolved = rng.random(m) < np.asarray(eff.resolve_probability_by_severity)[sev - 1]
            delay = rng.exponential(1.0, m) * eff.resolve_mean_days_per_severity * sev * MINUTES_PER_DAY
            rmin = np.where(resolved, cmin + np.round(delay).astype(np.int64), -1)
            rday = np.where(resolved, rmin // MINUTES_PER_DAY, -1)
            drawn_day = np.full(k, -1, np.int64)
            drawn_day[has] = cday
            self.recent[t] = {"idx": i, "cday": drawn_day}
            _push(
                self.buckets["create"],
                cday,
                {"idx": c, "sev": sev, "hf": hf, "cat": cat, "cmin": cmin, "rmin": rmin, "rday": rday},
            )
        else:
            self.recent[t] = {"idx": i, "cday": np.full(k, -1, np.int64)}
        # cancelled and returned orders next to this one; they change nothing latent
        u = rng.random(k)
        extra = u < eff.cancelled_probability + eff.returned_probability
        if extra.any():
            x = i[extra]
            status = np.where(u[extra] < eff.cancelled_probability, 1, 2).astype(np.int8)
            xday = t + rng.integers(0, eff.extra_order_max_delay_days + 1, x.size)
            xmin = xday * MINUTES_PER_DAY + rng.integers(0, MINUTES_PER_DAY, x.size)
            self.rec["orders"].append({"idx": x, "minute": xmin, "status": status})

    def _reset_observable(self, i: np.ndarray) -> None:
        """Clients ``i`` placed a completed order today: the alive path restarts from their real state."""
        self.obs_s[i] = 1.0
        self.obs_cur[:, i] = 0.0
        self.obs_done[:, :, i] = 0.0
        sh, co = self.shadow, self.comp
        sh.open_by_severity[:, i] = co.open_by_severity[:, i]
        sh.open_human[i] = co.open_human[i]
        sh.resolved_active[i] = co.resolved_active[i]
        sh.last_severity[i] = co.last_severity[i]
        sh.last_human[i] = co.last_human[i]
        self.shz[i] = self.hz[i]
        self.spen[i] = co.loss_penalty(i, self.eff)

    def _track_observable(self, t: int, nbp: int) -> None:
        """Add day t to the posterior sums of the clients created before day t (see :meth:`truth_at`).

        Along the alive, no-order path since the last order L, a dormancy starting on day t has the
        weight ``w = S_{t-1} * (1 - exp(-H_t))`` and then no return through day E with probability
        ``exp(-c_t q/(1-q)) * exp(g_t * Z_m(E))``, ``g_t = c_t q**-t``, where only ``Z_m(E)`` depends on
        E and on which of the win-back contacts are still ahead (m of them passed). The moments
        ``sum_t w exp(-c_t q/(1-q)) g_t**k / k!`` per m are therefore enough for any later cutoff.
        A dormancy starting on a contact day itself has that contact behind it (the client was alive
        at the start of the day, so the contact was not sent).
        """
        if not nbp:
            return
        eff, q = self.eff, self.q
        cd = self.lat.created_day
        haz = self.shz[:nbp].copy()
        i0 = int(np.searchsorted(cd, t - eff.onboarding_days, "left"))
        haz[i0:nbp] *= self.onb_mult
        relapse = np.where(self.times_returned[:nbp] >= 1, eff.relapse_factor, 1.0)
        c = eff.return_r0 * relapse * np.exp(-self.spen[:nbp])
        s = self.obs_s[:nbp]
        term = s * -np.expm1(-haz) * np.exp(-c * q / (1 - q))
        g = c * q ** (-t)
        since = t - self.last_order_day[:nbp]
        for j, off in enumerate(eff.winback_offsets_days):
            i = np.flatnonzero(since == off)  # contact day j reached: close the moments before it
            if i.size:
                self.obs_done[j][:, i] = self.obs_cur[:, i]
                self.obs_cur[:, i] = 0.0
        cur = self.obs_cur[:, :nbp]
        for k in range(OBS_TERMS):
            cur[k] += term
            term *= g / (k + 1)
        s *= np.exp(-haz - self.lat.order_rate[:nbp])

    def schedule_prevention(self) -> None:
        """Prevention contacts: a Poisson schedule per client, sent only on days the client is alive."""
        n = self.lat.created_day.size
        life = self.n_days - self.lat.created_day
        count = self.rng.poisson(life * self.eff.prevention_per_day)
        idx = np.repeat(np.arange(n), count)
        day = (
            self.lat.created_day[idx]
            + 1
            + np.floor(self.rng.random(idx.size) * (life[idx] - 1)).astype(np.int64)
        )
        _push(self.buckets["prevention"], day, {"idx": idx})

    # -- the oracle --------------------------------------------------------------------------------

    def truth_at(self, d: int, horizon: int) -> dict[str, np.ndarray]:
        """Exact P(no completed order in days d .. d+horizon-1) for clients created before day d.

        ``p_no_order`` is the clairvoyant oracle (given the full latent state at d),
        ``p_no_order_observable`` the observable one (the hidden state since the last completed
        order integrated out; see the module docstring). Must be called at the start of day d
        (after days < d were simulated, before day d).
        """
        eff, q = self.eff, self.q
        cd = self.lat.created_day
        nb = int(np.searchsorted(cd, d, "left"))
        end = d + horizon - 1
        p = np.empty(nb)
        alive = self.alive[:nb]
        offs = np.asarray(eff.winback_offsets_days)[:, None]

        # already dormant: no-return survival over the whole window, closed form
        dm = np.flatnonzero(~alive)
        if dm.size:
            total = _geom(q, np.full(dm.size, d), np.full(dm.size, end))
            lc = self.last_contact_day[dm]
            boost = _geom(q, np.maximum(lc, d), np.minimum(lc + eff.contact_boost_days - 1, end))
            cj = self.last_order_day[dm][None, :] + offs
            valid = self.coins[:, dm] & (cj >= d) & (cj <= end)
            future = _geom(q, cj, np.minimum(cj + eff.contact_boost_days - 1, end)) * valid
            sum_r = self.rbq[dm] * (total + (eff.contact_boost - 1) * (boost + future.sum(axis=0)))
            p[dm] = np.exp(-sum_r)

        # alive: forward recursion along the no-order path with the generator's own draws
        al = np.flatnonzero(alive)
        if al.size:
            p[al] = self._alive_no_order(al, d, end)
        # observable: the same recursion in expectation over the draws that fall due on or after d,
        # on the alive path of every client whose alive weight is not negligible
        self._prune_observable_logs(d)
        s, dormant_before, dormant_window = self._observable_sums(nb, d, end)
        weight = s + dormant_before
        need = np.flatnonzero(alive | (s > 1e-9 * weight))
        expected = np.zeros(nb)  # where the alive weight is below 1e-9 its forward value does not matter
        if need.size:
            expected[need] = self._expected_alive_no_order(need, d, end)
        p_observable = np.clip((s * expected + dormant_window) / weight, 0.0, 1.0)
        return {
            "idx": np.arange(nb),
            "p_no_order": p,
            "p_no_order_observable": p_observable,
            "alive": alive.copy(),
            "last_order_minute": self.last_order_minute[:nb].copy(),
        }

    def _observable_sums(self, nb: int, d: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pieces of P(no completed order in days d .. end | latent parameters, scheduled draws,
        order history) for the clients created before d.

        The hidden state since the last completed order L is integrated out: the client is either
        still alive at d (weight ``S_{d-1}``, returned first; then the alive forward recursion) or
        went dormant on a day u in (L, d). Returned second: the total weight of the dormancies that
        saw no return through day d-1; third: of those that see no return through day ``end``
        either (the moments of :meth:`_track_observable` evaluated at E = d-1 and E = end).
        """
        eff, q = self.eff, self.q
        s = self.obs_s[:nb]
        cj = self.last_order_day[:nb][None, :] + np.asarray(eff.winback_offsets_days)[:, None]
        coins = self.coins[:, :nb]
        passed = (cj <= d - 1).sum(axis=0)
        n_sets = cj.shape[0] + 1
        zeros = np.zeros((OBS_TERMS, nb))
        mom = [np.where(m < passed, self.obs_done[m][:, :nb], zeros) for m in range(n_sets - 1)] + [zeros]
        mom = [np.where(m == passed, self.obs_cur[:, :nb], mm) for m, mm in enumerate(mom)]

        def dormant_mass(e: int, coins: np.ndarray) -> np.ndarray:
            span = _geom(q, cj, np.minimum(cj + eff.contact_boost_days - 1, e)) * coins  # (3, nb)
            ahead = np.cumsum(span[::-1], axis=0)[::-1]  # contacts j >= m
            z = q ** (e + 1) / (1 - q) - (eff.contact_boost - 1) * np.vstack((ahead, np.zeros((1, nb))))
            total = np.zeros(nb)
            for m in range(n_sets):
                acc = np.zeros(nb)
                for k in range(OBS_TERMS - 1, -1, -1):  # Horner: sum_k mom[k] z**k
                    acc = acc * z[m] + mom[m][k]
                total += acc
            return total

        # win-back contacts on or after d: their coins are future draws, so average over them
        # (independent Bernoulli(winback_probability), none for do-not-contact clients)
        future = cj >= d
        pi = np.where(self.lat.do_not_contact[:nb], 0.0, eff.winback_probability)
        window = np.zeros(nb)
        for bits in itertools.product((False, True), repeat=cj.shape[0]):
            b = np.asarray(bits)[:, None]
            w = np.prod(np.where(future, np.where(b, pi, 1.0 - pi), b == coins), axis=0)
            if w.any():
                window += w * dormant_mass(end, np.broadcast_to(b, coins.shape))
        return s.copy(), dormant_mass(d - 1, coins), window

    def _alive_no_order(self, al: np.ndarray, d: int, end: int) -> np.ndarray:
        """P(no order in d .. end) for clients ``al`` had they stayed alive since their last order.

        The alive-path state (complaints incl. ghosts, hazard) is the real state of a client alive
        at d; for a dormant one it is the state it would have had, had it not gone dormant.
        """
        eff, q = self.eff, self.q
        n = al.size
        pos = np.full(self.lat.created_day.size, -1, np.int64)
        pos[al] = np.arange(n)
        comp = self.shadow.take(al)
        returned = self.times_returned[al] > 0
        h0 = self.lat.h0[al]
        hz = self.shz[al].copy()
        pen = comp.loss_penalty(np.arange(n), eff)
        cd = self.lat.created_day[al]
        no_order = self.no_order[al]
        # on the alive path times_lost equals times_returned (every earlier loss ended in a return,
        # which is an order); the real times_lost also counts a hidden dormancy since the last order
        relapse = np.where(self.times_returned[al] >= 1, eff.relapse_factor, 1.0)
        # win-back contacts scheduled by the last order, as seen from a dormancy starting before them
        cj = self.last_order_day[al][None, :] + np.asarray(eff.winback_offsets_days)[:, None]
        valid = self.coins[:, al] & (cj >= d) & (cj <= end)
        cj = np.where(valid, cj, d)
        span = _geom(q, cj, np.minimum(cj + eff.contact_boost_days - 1, end), start=cj)
        a_j = np.where(valid, q ** (cj - d).astype(float) * span, 0.0)
        local: dict[str, dict[int, list[Events]]] = {"resolve": {}, "expire": {}}
        a = np.ones(n)
        acc = np.zeros(n)
        base_r = eff.return_r0 * relapse
        for k in range(end - d + 1):
            t = d + k
            touched = []
            ev = _peek(self.buckets["create"], t)
            if ev is not None:
                c = _localise(ev, pos)
                if c["idx"].size:
                    comp.open(c["idx"], c["sev"], c["hf"])
                    self._schedule_resolution(local, c)
                    touched.append(c["idx"])
            for kind in ("resolve", "expire"):
                found = _peek(self.buckets[kind], t)
                parts = [_localise(found, pos)] if found is not None else []
                ghost = _peek(self.ghost[kind], t)
                if ghost is not None:
                    ghost = _localise(ghost, pos)
                    ok = self.last_order_day[al][ghost["idx"]] == ghost["lday"]
                    parts.append({k: v[ok] for k, v in ghost.items()})
                mine = _pop(local[kind], t)  # scheduled in this window: already local indices
                if mine is not None:
                    parts.append(mine)
                for e in parts:
                    if not e["idx"].size:
                        continue
                    if kind == "resolve":
                        comp.resolve(e["idx"], e["sev"], e["hf"])
                    else:
                        comp.expire(e["idx"])
                    touched.append(e["idx"])
            if touched:
                i = np.unique(np.concatenate(touched))
                hz[i] = h0[i] * np.exp(comp.log_effect(i, returned[i], eff))
                pen[i] = comp.loss_penalty(i, eff)
            haz = np.where(t - cd <= eff.onboarding_days, hz * self.onb_mult, hz)
            stay = np.exp(-haz)
            csum = np.where(cj > t, a_j, 0.0).sum(axis=0)
            g = q * (1 - q ** (end - t)) / (1 - q)
            sum_r = base_r * np.exp(-pen) * (g + (eff.contact_boost - 1) * q ** (-k) * csum)
            acc += a * (1.0 - stay) * np.exp(-sum_r)
            a *= stay * no_order
        return a + acc

    # -- the observable oracle's expectation over the draws that fall due on or after the cutoff ----

    def _prune_observable_logs(self, d: int) -> None:
        """Forget complaints that can no longer be open on an alive path at d or later."""
        if not self.clog:
            return
        log = _concat(self.clog)
        resolved = (log["rday"] >= 0) & (log["rday"] < d)
        stale = (log["lday"] >= 0) & (self.last_order_day[log["idx"]] != log["lday"])
        keep = ~(resolved | stale)
        self.clog = [{k: v[keep] for k, v in log.items()}]

    def _uncertain_complaints(self, al: np.ndarray, d: int) -> tuple[Events, Events]:
        """The complaints of clients ``al`` whose future is not drawn yet at the start of day d.

        Open: complaints open at d on the alive path since the last order (real ones, and ghosts
        created after it), with P(resolvable | not resolved before d). Pending: completed orders of
        the last complaint_delay_days[1] days whose complaint draw has not fallen due before d
        (no complaint drawn, or one created on day d or later), with P(a complaint is created on a
        day >= d | it was not created before d). Indices are positions in ``al``.
        """
        eff = self.eff
        pos = np.full(self.lat.created_day.size, -1, np.int64)
        pos[al] = np.arange(al.size)
        last = self.last_order_day[al]
        empty = {"idx": np.zeros(0, np.int64)}
        opened: Events = empty
        if self.clog:
            c = _localise(_concat(self.clog), pos)
            ok = ((c["rday"] < 0) | (c["rday"] >= d)) & ((c["lday"] < 0) | (c["lday"] == last[c["idx"]]))
            c = {k: v[ok] for k, v in c.items()}
            sev = c["sev"].astype(np.int64)
            p_res = np.asarray(eff.resolve_probability_by_severity)[sev - 1]
            lam = 1.0 / (eff.resolve_mean_days_per_severity * sev * MINUTES_PER_DAY)  # per minute
            # P(round(delay) >= m) = exp(-lam (m - 1/2)) for m >= 1; m = minutes from creation to d
            unresolved = np.exp(-lam * (d * MINUTES_PER_DAY - c["cmin"] - 0.5))
            pi = p_res * unresolved / (p_res * unresolved + 1.0 - p_res)
            opened = {"idx": c["idx"], "sev": sev, "hf": c["hf"].astype(bool), "p_resolvable": pi}
        lo, hi = eff.complaint_delay_days
        parts = []
        for t_o in range(d - hi, d):
            r = self.recent.get(t_o)
            if r is None:
                continue
            e = _localise(r, pos)
            due = (e["cday"] >= 0) & (e["cday"] < d)
            idx = e["idx"][~due]
            before = max(0, min(d - 1, t_o + hi) - (t_o + lo) + 1)  # days already passed
            after = t_o + hi - max(d, t_o + lo) + 1
            per_day = eff.complaint_probability / (hi - lo + 1)
            p = per_day * after / (1.0 - per_day * before)
            parts.append({"idx": idx, "t_o": np.full(idx.size, t_o), "p_created": np.full(idx.size, p)})
        pending = _concat(parts) if parts else {**empty, "t_o": empty["idx"], "p_created": np.zeros(0)}
        return opened, pending

    def _expected_alive_no_order(self, al: np.ndarray, d: int, end: int) -> np.ndarray:
        """E[P(no order in d .. end | alive path)] over the draws that fall due on or after d.

        :meth:`_alive_no_order` with the generator's own future draws replaced by their
        distribution given what has happened before d: whether an open complaint will ever be
        resolved and when (exponential delay: from day to day a geometric hazard), whether the
        complaint draw of a recent order creates a complaint on day d or later (day, severity,
        human factor, resolution) and the win-back coins of contacts on or after d. The
        expectation is exact: a forward recursion over the joint state of these complaints (see
        :func:`_forward_chain`). Only when three or more pending draws all create a complaint are
        the draws after the second ignored (the error is below the prior weight of that event;
        module docstring).
        """
        eff, q = self.eff, self.q
        n = al.size
        horizon = end - d + 1
        pos = np.full(self.lat.created_day.size, -1, np.int64)
        pos[al] = np.arange(n)
        last = self.last_order_day[al]
        days = np.arange(d, end + 1)
        # the certain part of the hazard: h0, onboarding, resolutions before d and their known expiries
        dec = np.zeros((n, horizon))
        for k, t in enumerate(days.tolist()):
            for kind, buckets in (("real", self.buckets["expire"]), ("ghost", self.ghost["expire"])):
                ev = _peek(buckets, t)
                if ev is None:
                    continue
                e = _localise(ev, pos)
                i = e["idx"] if kind == "real" else e["idx"][last[e["idx"]] == e["lday"]]
                np.add.at(dec, (i, np.full(i.size, k)), 1.0)
        resolved = self.shadow.resolved_active[al][:, None] - np.cumsum(dec, axis=1)
        onb = np.where(
            days[None, :] - self.lat.created_day[al][:, None] <= eff.onboarding_days, self.onb_mult, 1.0
        )
        certain = self.lat.h0[al][:, None] * onb * np.exp(eff.resolved_effect * resolved)  # (n, horizon)
        # no-return survival after going dormant on day t, in expectation over the win-back coins
        relapse = np.where(self.times_returned[al] >= 1, eff.relapse_factor, 1.0)
        base_r = eff.return_r0 * relapse
        cj = last[None, :] + np.asarray(eff.winback_offsets_days)[:, None]
        valid = (cj >= d) & (cj <= end)
        cjv = np.where(valid, cj, d)
        span = _geom(q, cjv, np.minimum(cjv + eff.contact_boost_days - 1, end), start=cjv)
        a_j = np.where(valid, q ** (cjv - d).astype(float) * span, 0.0)  # (3, n)
        pi = np.where(self.lat.do_not_contact[al], 0.0, eff.winback_probability)
        g = q * (1 - q ** (end - days)) / (1 - q)  # (horizon,)
        boost = np.stack(
            [(eff.contact_boost - 1) * q ** (-k) * np.where(cj > t, a_j, 0.0) for k, t in enumerate(days)],
            axis=2,
        )  # (3, n, horizon)
        chain = _complaint_chain(eff)
        opened, pending = self._uncertain_complaints(al, d)
        last_sev = np.maximum(self.shadow.last_severity[al].astype(np.int64), 1)
        base_combo = 2 * (last_sev - 1) + self.shadow.last_human[al]
        rows = _chain_rows(n, opened, pending)
        out = np.zeros(n)
        for (m, o), grp in rows.items():
            r = grp["row"]
            if not r.size:
                continue
            a_row = _forward_chain(
                chain,
                m,
                o,
                grp,
                d,
                certain=certain[r],
                no_order=self.no_order[al][r],
                mult=np.where(self.times_returned[al][r] > 0, eff.returned_sensitivity, 1.0),
                base_r=base_r[r],
                base_combo=base_combo[r],
                g=g,
                boost=boost[:, r],
                pi=pi[r],
            )
            np.add.at(out, r, grp["weight"] * a_row)
        return out

    # -- replicas for Monte Carlo checks ----------------------------------------------------------

    def replicate(self, idx: np.ndarray, reps: int, rng: np.random.Generator) -> BlockSimulation:
        """A new simulation of ``reps`` copies of clients ``idx`` (sorted), from the current state.

        Copy r of client idx[j] is client j * reps + r, so created days stay sorted. Records are empty.
        """
        idx = np.sort(idx)
        take = np.repeat(idx, reps)
        pos = np.full(self.lat.created_day.size, -1, np.int64)
        pos[idx] = np.arange(idx.size)
        sim = BlockSimulation(self.lat.take(take), rng, self.n_days, self.onb_mult, self.eff)
        for name in (
            "alive",
            "dormant_since",
            "times_lost",
            "times_returned",
            "last_order_day",
            "last_order_minute",
            "last_contact_day",
            "hz",
            "rbq",
            "rb_eff",
            "first_dormant_day",
            "onboarding_dropped",
            "shz",
            "spen",
            "obs_s",
        ):
            setattr(sim, name, getattr(self, name)[take].copy())
        sim.coins = self.coins[:, take].copy()
        sim.comp = self.comp.take(take)
        sim.shadow = self.shadow.take(take)
        sim.obs_cur = self.obs_cur[:, take].copy()
        sim.obs_done = self.obs_done[:, :, take].copy()
        sim.day = self.day

        def tile(ev: Events) -> Events:
            e = _localise(ev, pos)
            tiled = {k: np.repeat(v, reps) for k, v in e.items()}
            tiled["idx"] = np.repeat(e["idx"] * reps, reps) + np.tile(np.arange(reps), e["idx"].size)
            return tiled

        sim.clog = [tile(e) for e in self.clog]
        sim.recent = {day: tile(e) for day, e in self.recent.items()}
        pairs = [(sim.buckets[k], b) for k, b in self.buckets.items()]
        pairs += [(sim.ghost[k], b) for k, b in self.ghost.items()]
        for target, buckets in pairs:
            for day, parts in buckets.items():
                for ev in parts:
                    e = _localise(ev, pos)
                    if e["idx"].size:
                        tiled = {k: np.repeat(v, reps) for k, v in e.items()}
                        tiled["idx"] = np.repeat(e["idx"] * reps, reps) + np.tile(
                            np.arange(reps), e["idx"].size
                        )
                        target.setdefault(day, []).append(tiled)
        return sim

    def completed_orders(self, since_minute: int) -> np.ndarray:
        """Completed orders per client recorded at or after ``since_minute``."""
        counts = np.zeros(self.lat.created_day.size, np.int64)
        for r in self.rec["orders"]:
            sel = (r["status"] == 0) & (r["minute"] >= since_minute)
            np.add.at(counts, r["idx"][sel], 1)
        return counts


def _draw(rng: np.random.Generator, probabilities: tuple[float, ...], size: int) -> np.ndarray:
    """Category indices with the given probabilities (inverse CDF; cheaper than Generator.choice)."""
    cdf = np.cumsum(probabilities)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(size), "right"), len(probabilities) - 1)


def _localise(ev: Events, pos: np.ndarray) -> Events:
    p = pos[ev["idx"]]
    ok = p >= 0
    out = {k: v[ok] for k, v in ev.items()}
    out["idx"] = p[ok]
    return out


def _complaint_entry(c: Events, lday: np.ndarray) -> Events:
    """A row of BlockSimulation.clog: a complaint created on a (possible) alive path."""
    return {
        "idx": c["idx"],
        "sev": c["sev"],
        "hf": c["hf"],
        "cmin": c["cmin"],
        "rday": c["rday"],
        "lday": lday,
    }


# ---------------------------------------------------------------------------------------------
# the observable oracle: complaints whose future is not drawn yet, as a Markov chain per complaint
# ---------------------------------------------------------------------------------------------

N_COMBOS = 10  # severity 1..5 x human factor; combo k: severity k // 2 + 1, human factor k % 2
PENDING_STATES = 1 + 3 * N_COMBOS  # not created yet; open, never resolved; open, resolvable; resolved
OPEN_STATES = 3  # open, never resolved; open, resolvable; resolved
MAX_PENDING = 2  # pending draws followed jointly per client (see _expected_alive_no_order)


@dataclass(frozen=True)
class _Chain:
    """Per-combo constants of a complaint drawn at an order (Effects), for the observable oracle.

    A resolvable complaint created on day c resolves on day c with probability ``1 - kappa*rho``
    and, still open on a later day, resolves that day with probability ``1 - rho``: the delay is
    exponential in minutes from a uniform minute of day c, rounded to the minute, so
    P(resolution day >= c + j) = kappa * rho**j for j >= 1 exactly.
    """

    sev: np.ndarray
    hf: np.ndarray
    p_combo: np.ndarray
    p_resolvable: np.ndarray
    rho: np.ndarray
    kappa: np.ndarray
    open_term: np.ndarray
    pen: np.ndarray
    eff: Effects

    def penalty(self, sev: np.ndarray, hf: np.ndarray) -> np.ndarray:
        return self.eff.return_per_severity * (sev - 1) + self.eff.return_human_factor * hf

    def rho_of(self, sev: np.ndarray) -> np.ndarray:
        return np.exp(-1.0 / (self.eff.resolve_mean_days_per_severity * sev))

    def open_term_of(self, sev: np.ndarray, hf: np.ndarray) -> np.ndarray:
        eff = self.eff
        return eff.open_base + eff.open_per_severity * (sev - 1) + eff.open_human_factor * hf


def _complaint_chain(eff: Effects) -> _Chain:
    k = np.arange(N_COMBOS)
    sev = k // 2 + 1
    hf = k % 2
    p_sev = np.asarray(eff.severity_probabilities) / sum(eff.severity_probabilities)
    p_cat = np.asarray(eff.category_probabilities) / sum(eff.category_probabilities)
    staff = p_cat[COMPLAINT_CATEGORIES.index("staff")]
    p_hf = staff + (1 - staff) * eff.human_factor_probability
    lam = 1.0 / (eff.resolve_mean_days_per_severity * sev * MINUTES_PER_DAY)  # per minute
    kappa = np.exp(0.5 * lam) * np.expm1(MINUTES_PER_DAY * lam) / (MINUTES_PER_DAY * np.expm1(lam))
    base = _Chain(
        sev,
        hf,
        p_sev[sev - 1] * np.where(hf == 1, p_hf, 1 - p_hf),
        np.asarray(eff.resolve_probability_by_severity)[sev - 1],
        np.exp(-MINUTES_PER_DAY * lam),
        kappa,
        np.zeros(N_COMBOS),
        np.zeros(N_COMBOS),
        eff,
    )
    return dataclasses.replace(base, open_term=base.open_term_of(sev, hf), pen=base.penalty(sev, hf))


def _chain_rows(n: int, opened: Events, pending: Events) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Rows of the forward recursion, grouped by (pending draws followed, open complaints).

    A client without uncertain complaints is one row of weight 1. A client with pending draws is
    one row per set S of draws that create a complaint (weight prod p_created over S times
    prod (1 - p_created) over the others); sets of more than MAX_PENDING draws are evaluated with
    their MAX_PENDING earliest draws (see _expected_alive_no_order).
    """
    n_open = np.bincount(opened["idx"], minlength=n)
    n_pend = np.bincount(pending["idx"], minlength=n)
    rows: dict[tuple[int, int], dict[str, list]] = {}

    def add(
        key: tuple[int, int], r: int, w: float, t_o: list[int], op: list[tuple[int, bool, float]]
    ) -> None:
        g = rows.setdefault(
            key, {"row": [], "weight": [], "t_o": [], "sev": [], "hf": [], "p_resolvable": []}
        )
        g["row"].append(r)
        g["weight"].append(w)
        g["t_o"].append(t_o)
        g["sev"].append([x[0] for x in op])
        g["hf"].append([x[1] for x in op])
        g["p_resolvable"].append([x[2] for x in op])

    oo = np.argsort(opened["idx"], kind="stable")
    po = np.lexsort((pending["t_o"], pending["idx"]))
    o_start = np.concatenate(([0], np.cumsum(n_open)))
    p_start = np.concatenate(([0], np.cumsum(n_pend)))
    out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    plain = np.flatnonzero((n_open == 0) & (n_pend == 0))
    out[(0, 0)] = {
        "row": plain,
        "weight": np.ones(plain.size),
        "t_o": np.zeros((plain.size, 0), np.int64),
        "sev": np.zeros((plain.size, 0), np.int64),
        "hf": np.zeros((plain.size, 0), bool),
        "p_resolvable": np.zeros((plain.size, 0)),
    }
    for r in np.flatnonzero((n_open > 0) | (n_pend > 0)).tolist():
        oi = oo[o_start[r] : o_start[r + 1]]
        op = [(int(opened["sev"][j]), bool(opened["hf"][j]), float(opened["p_resolvable"][j])) for j in oi]
        pi = po[p_start[r] : p_start[r + 1]]
        t_o = pending["t_o"][pi].tolist()
        p = pending["p_created"][pi].tolist()
        weights: dict[tuple[int, ...], float] = {}
        for chosen in itertools.product((False, True), repeat=len(p)):
            w = math.prod(pj if c else 1.0 - pj for pj, c in zip(p, chosen, strict=True))
            key = tuple(j for j, c in enumerate(chosen) if c)[:MAX_PENDING]
            weights[key] = weights.get(key, 0.0) + w
        for key, w in weights.items():
            if w > 0:
                add((len(key), len(op)), r, w, [t_o[j] for j in key], op)
    for key, g in rows.items():
        m, o = key
        grp = {
            "row": np.asarray(g["row"], np.int64),
            "weight": np.asarray(g["weight"]),
            "t_o": np.asarray(g["t_o"], np.int64).reshape(len(g["row"]), m),
            "sev": np.asarray(g["sev"], np.int64).reshape(len(g["row"]), o),
            "hf": np.asarray(g["hf"], bool).reshape(len(g["row"]), o),
            "p_resolvable": np.asarray(g["p_resolvable"], float).reshape(len(g["row"]), o),
        }
        if key in out:
            out[key] = {k: np.concatenate((out[key][k], v)) for k, v in grp.items()}
        else:
            out[key] = grp
    return out


def _forward_chain(
    chain: _Chain,
    m: int,
    o: int,
    grp: dict[str, np.ndarray],
    d: int,
    *,
    certain: np.ndarray,
    no_order: np.ndarray,
    mult: np.ndarray,
    base_r: np.ndarray,
    base_combo: np.ndarray,
    g: np.ndarray,
    boost: np.ndarray,
    pi: np.ndarray,
) -> np.ndarray:
    """P(no order in the window) on the alive path of each row, in expectation over its complaints.

    The state of a row is a tensor: one axis per pending draw (PENDING_STATES), one per open
    complaint (OPEN_STATES) and a last axis L saying which pending draw created the latest
    complaint (size max(m, 1)), which sets the return penalty when nothing is open.
    ``certain`` (rows, days) is the hazard without the uncertain complaints, ``boost`` (3, rows,
    days) the win-back boost terms of :meth:`BlockSimulation._alive_no_order` for coins of 1.
    """
    eff = chain.eff
    rows = grp["row"].size
    dims = [PENDING_STATES] * m + [OPEN_STATES] * o + [max(m, 1)]
    nd = len(dims)

    def along(ax: int, values: np.ndarray) -> np.ndarray:
        """values (states,) or (rows, states) shaped to broadcast along tensor axis ``ax``."""
        shape = [1] * (nd + 1)
        shape[ax + 1] = values.shape[-1]
        if values.ndim == 2:
            shape[0] = rows
        return values.reshape(shape)

    def rows_b(values: np.ndarray) -> np.ndarray:
        return values.reshape((rows,) + (1,) * nd)

    def sl(ax: int, sel: slice | int, last: slice | int | None = None) -> tuple[slice | int, ...]:
        idx: list[slice | int] = [slice(None)] * (nd + 1)
        idx[ax + 1] = sel
        if last is not None:
            idx[nd] = last
        return tuple(idx)

    nc = N_COMBOS
    zero1 = np.zeros(1)
    p_open = np.concatenate((zero1, np.ones(2 * nc), np.zeros(nc)))
    p_term = np.concatenate((zero1, chain.open_term, chain.open_term, np.zeros(nc)))
    p_res = np.concatenate((np.zeros(1 + 2 * nc), np.ones(nc)))
    p_sev = np.concatenate((zero1, chain.sev, chain.sev, np.zeros(nc))) * p_open
    p_hf = np.concatenate((zero1, chain.hf, chain.hf, np.zeros(nc))) * p_open
    p_combo = np.concatenate((zero1, np.tile(np.arange(nc, dtype=float), 3)))
    term = np.zeros((rows,) + (1,) * nd)
    resolved = np.zeros((rows,) + (1,) * nd)
    worst = np.zeros((rows,) + (1,) * nd)
    any_hf = np.zeros((rows,) + (1,) * nd, bool)
    for j in range(m):
        term = term + along(j, p_term)
        resolved = resolved + along(j, p_res)
        worst = np.maximum(worst, along(j, p_sev))
        any_hf = any_hf | (along(j, p_hf) > 0)
    sev_o, hf_o = grp["sev"], grp["hf"]
    o_open = np.array([1.0, 1.0, 0.0])
    for i in range(o):
        ax = m + i
        t_i = chain.open_term_of(sev_o[:, i], hf_o[:, i])[:, None] * o_open
        term = term + along(ax, t_i)
        resolved = resolved + along(ax, np.array([0.0, 0.0, 1.0]))
        worst = np.maximum(worst, along(ax, sev_o[:, i][:, None] * o_open))
        any_hf = any_hf | along(ax, (hf_o[:, i][:, None] & (o_open > 0)))
    # L = j: draw j created the latest complaint, or, while draw j is still pending, none of the
    # draws has created one yet (a creation moves L to its draw) and the last complaint before d
    # sets the penalty
    if m == 0:
        last_combo = rows_b(base_combo.astype(float))
    else:
        last_combo = np.zeros((rows,) + (1,) * nd)
        for j in range(m):
            pending_j = along(j, (np.arange(PENDING_STATES) == 0).astype(float))
            own = along(j, p_combo) + pending_j * rows_b(base_combo.astype(float))
            last_combo = last_combo + own * along(nd - 1, np.eye(1, m, j)[0])
    # the return penalty is one of the N_COMBOS values of a (severity, human factor) pair: keep its
    # index, so the no-return survival is a (rows, N_COMBOS) table per day instead of a tensor
    pen_combo = np.where(worst > 0, 2 * (worst - 1) + any_hf, last_combo).astype(np.intp)
    factor = np.exp(rows_b(mult) * term + eff.resolved_effect * resolved)
    full = (rows, *dims)
    factor = np.broadcast_to(factor, full).reshape(rows, -1)
    pen_combo = np.broadcast_to(pen_combo, full).reshape(rows, -1)
    c_ret = base_r[:, None] * np.exp(-chain.pen)[None, :]  # (rows, N_COMBOS)

    a = np.zeros(full)
    init = np.ones((rows,) + (1,) * nd)
    for i in range(o):
        p = grp["p_resolvable"][:, i]
        init = init * along(m + i, np.stack((1 - p, p, np.zeros(rows)), axis=1))
    a[(slice(None),) + (0,) * m + (slice(None),) * o + (0,)] = init.reshape((rows,) + (OPEN_STATES,) * o)
    lo, hi = eff.complaint_delay_days
    t_o = grp["t_o"]
    rho_o = chain.rho_of(sev_o)
    coef = (
        chain.p_combo * (1 - chain.p_resolvable),
        chain.p_combo * chain.p_resolvable * chain.kappa * chain.rho,
        chain.p_combo * chain.p_resolvable * (1 - chain.kappa * chain.rho),
    )
    acc = np.zeros(rows)
    for k in range(certain.shape[1]):
        t = d + k
        # resolutions today of complaints open since an earlier day
        for j in range(m):
            moved = a[sl(j, slice(1 + nc, 1 + 2 * nc))] * along(j, 1 - chain.rho)
            a[sl(j, slice(1 + nc, 1 + 2 * nc))] -= moved
            a[sl(j, slice(1 + 2 * nc, 1 + 3 * nc))] += moved
        for i in range(o):
            ax = m + i
            moved = a[sl(ax, 1)] * (1 - rho_o[:, i]).reshape((rows,) + (1,) * (nd - 1))
            a[sl(ax, 1)] -= moved
            a[sl(ax, 2)] += moved
        # complaints of pending draws created today (in order of their orders: the later one is last)
        for j in range(m):
            due = (t >= np.maximum(d, t_o[:, j] + lo)) & (t <= t_o[:, j] + hi)
            if not due.any():
                continue
            pc = np.where(due, 1.0 / np.maximum(t_o[:, j] + hi - t + 1, 1), 0.0)
            src = a[sl(j, slice(0, 1))]
            mass = src.sum(axis=nd, keepdims=True) * rows_b(pc)
            a[sl(j, slice(0, 1))] = src * rows_b(1 - pc)
            for s, cf in enumerate(coef):
                a[sl(j, slice(1 + s * nc, 1 + (s + 1) * nc), slice(j, j + 1))] += mass * along(j, cf)
        table = np.exp(-c_ret * g[k])
        for jj in range(boost.shape[0]):
            x = boost[jj, :, k]
            if x.any():
                table *= 1 - pi[:, None] + pi[:, None] * np.exp(-c_ret * x[:, None])
        flat = a.reshape(rows, -1)
        stay = np.exp(-certain[:, k][:, None] * factor)
        acc += (flat * (1.0 - stay) * np.take_along_axis(table, pen_combo, axis=1)).sum(axis=1)
        stay *= no_order[:, None]
        flat *= stay
    return a.reshape(rows, -1).sum(axis=1) + acc


def _geom(q: float, lo: np.ndarray, hi: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """sum_{t=lo}^{hi} q**(t - start) elementwise (start = 0 by default); 0 where hi < lo."""
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    s = 0.0 if start is None else np.asarray(start, float)
    n = np.maximum(hi - lo + 1, 0)
    return np.where(n > 0, q ** (lo - s) * (1 - q**n) / (1 - q), 0.0)


# ---------------------------------------------------------------------------------------------
# blocks -> Arrow tables
# ---------------------------------------------------------------------------------------------


@dataclass
class BlockTables:
    """The rows one block contributes to each output table."""

    clients: pa.Table
    orders: pa.Table
    complaints: pa.Table
    contacts: pa.Table
    truth: pa.Table
    truth_clients: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class IdCounters:
    """Running id counters across blocks (orders, complaints, contacts are numbered in write order)."""

    orders: int = 0
    complaints: int = 0
    contacts: int = 0


def block_seeds(seed: int, n_blocks: int) -> list[np.random.SeedSequence]:
    """Child seed of each block; child b is the same whatever the number of blocks."""
    return np.random.SeedSequence(seed).spawn(n_blocks)


def simulate_block(
    params: GenerateParams,
    truth: TruthSpec,
    block: int,
    n_clients: int,
    onboarding_mult: float,
    eff: Effects = EFFECTS,
) -> tuple[BlockSimulation, list[tuple[int, dict[str, np.ndarray]]]]:
    """Simulate block ``block`` (``n_clients`` clients) over the whole history; return it and its truth."""
    seq = block_seeds(params.seed, block + 1)[block]
    rng = np.random.Generator(np.random.PCG64(seq))
    latent = draw_latent(rng, n_clients, params.n_days, eff)
    sim = BlockSimulation(latent, rng, params.n_days, onboarding_mult, eff)
    sim.schedule_prevention()
    cut_days = sorted({(c - params.start).days for c in truth.cutoffs})
    cut_days = [c for c in cut_days if 0 < c < params.n_days]
    out = []
    for c in cut_days:
        sim.run_until(c)
        out.append((c, sim.truth_at(c, truth.horizon_days)))
    sim.run_until(params.n_days)
    return sim, out


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _ts(params: GenerateParams, minutes: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Minutes since params.start -> timestamp[us, UTC]; null where not valid."""
    epoch = int(dt.datetime.combine(params.start, dt.time(), dt.UTC).timestamp())
    us = (epoch + minutes.astype(np.int64) * 60) * 1_000_000
    mask = None if valid is None else ~valid
    return pa.array(us, pa.timestamp("us", tz="UTC"), mask=mask)


def _rng_for_rows(params: GenerateParams, block: int) -> np.random.Generator:
    """A second stream per block for row attributes (amounts, payments), independent of the dynamics."""
    seq = np.random.SeedSequence(params.seed, spawn_key=(block, 1))
    return np.random.Generator(np.random.PCG64(seq))


def block_tables(
    sim: BlockSimulation,
    truth_rows: list[tuple[int, dict[str, np.ndarray]]],
    params: GenerateParams,
    truth: TruthSpec,
    *,
    first_client: int,
    ids: IdCounters,
) -> BlockTables:
    """Turn a simulated block into rows of the four raw tables and the two truth tables."""
    eff, lat = sim.eff, sim.lat
    export_min = params.n_days * MINUTES_PER_DAY
    block = first_client // BLOCK_CLIENTS
    rng = _rng_for_rows(params, block)
    n = lat.created_day.size
    client_ids = _ids("C", np.arange(first_client + 1, first_client + n + 1), 7)
    managers = _ids("M", np.arange(1, eff.n_managers + 1), 3)
    seg_names = pa.array(SEGMENTS)
    segment_idx = manager_segments(eff)[lat.manager]
    created_min = lat.created_day * MINUTES_PER_DAY + lat.created_minute
    clients = pa.table(
        {
            "client_id": client_ids,
            "created_at": _ts(params, created_min),
            "manager_id": managers.take(pa.array(lat.manager)),
            "segment": seg_names.take(pa.array(segment_idx)),
            "do_not_contact": pa.array(lat.do_not_contact),
        }
    )

    # orders
    empty: Events = {
        "idx": np.zeros(0, np.int64),
        "minute": np.zeros(0, np.int64),
        "status": np.zeros(0, np.int8),
    }
    o = _before_export(sim.rec["orders"], empty, "minute", ("status", "idx", "minute"), export_min)
    m = o["idx"].size
    amount = lat.amount_scale[o["idx"]] * np.exp(
        eff.amount_order_sigma * rng.standard_normal(m) - eff.amount_order_sigma**2 / 2
    )
    amount = np.maximum(np.round(amount, 2), 0.01)
    rate = lat.margin_rate[o["idx"]] + eff.margin_order_sd * rng.standard_normal(m)
    completed = o["status"] == 0
    margin = np.where(completed, amount * rate, np.where(o["status"] == 1, 0.0, -0.05 * amount))
    margin = np.round(margin, 2)
    due = o["minute"] + eff.payment_terms_days * MINUTES_PER_DAY
    bad = lat.bad_payer[o["idx"]]
    good_delay = np.clip(
        eff.good_payer_delay_mean_days + eff.good_payer_delay_sd_days * rng.standard_normal(m),
        -(eff.payment_terms_days - 1),
        None,
    )
    lo, hi = eff.bad_payer_delay_days
    bad_delay = rng.uniform(lo, hi, m)
    never = bad & (rng.random(m) < eff.bad_payer_never_pays)
    delay_min = np.round(np.where(bad, bad_delay, good_delay) * MINUTES_PER_DAY).astype(np.int64)
    paid = due + delay_min
    paid_valid = completed & ~never & (paid < export_min)
    orders = pa.table(
        {
            "order_id": _ids("O", np.arange(ids.orders + 1, ids.orders + m + 1), 9),
            "client_id": client_ids.take(pa.array(o["idx"])),
            "ordered_at": _ts(params, o["minute"]),
            "amount": pa.array(amount),
            "margin": pa.array(margin),
            "status": pa.array(ORDER_STATUSES).take(pa.array(o["status"])),
            "due_at": _ts(params, due, completed),
            "paid_at": _ts(params, paid, paid_valid),
        }
    )
    ids.orders += m

    # complaints
    c = _before_export(
        sim.rec["complaints"],
        {k: np.zeros(0, np.int64) for k in ("idx", "cmin", "rmin", "sev", "cat", "hf")},
        "cmin",
        ("idx", "cmin"),
        export_min,
    )
    k = c["idx"].size
    resolved_ok = (c["rmin"] >= 0) & (c["rmin"] < export_min)
    complaints = pa.table(
        {
            "complaint_id": _ids("K", np.arange(ids.complaints + 1, ids.complaints + k + 1), 8),
            "client_id": client_ids.take(pa.array(c["idx"])),
            "created_at": _ts(params, c["cmin"]),
            "severity": pa.array(c["sev"].astype(np.int64)),
            "category": pa.array(COMPLAINT_CATEGORIES).take(pa.array(c["cat"].astype(np.int64))),
            "human_factor": pa.array(c["hf"].astype(bool)),
            "resolved_at": _ts(params, np.maximum(c["rmin"], 0), resolved_ok),
        }
    )
    ids.complaints += k

    # contacts
    t = _before_export(
        sim.rec["contacts"],
        {kk: np.zeros(0, np.int64) for kk in ("idx", "minute", "campaign", "offer", "manager")},
        "minute",
        ("idx", "minute"),
        export_min,
    )
    j = t["idx"].size
    offer_idx = t["offer"].astype(np.int64)
    contacts = pa.table(
        {
            "contact_id": _ids("T", np.arange(ids.contacts + 1, ids.contacts + j + 1), 8),
            "client_id": client_ids.take(pa.array(t["idx"])),
            "contacted_at": _ts(params, t["minute"]),
            "campaign": pa.array(CONTACT_CAMPAIGNS).take(pa.array(t["campaign"].astype(np.int64))),
            "offer": pa.array(WINBACK_OFFERS).take(pa.array(np.maximum(offer_idx, 0), mask=offer_idx < 0)),
            "manager_id": managers.take(pa.array(t["manager"].astype(np.int64))),
        }
    )
    ids.contacts += j

    truth_table = _truth_table(sim, truth_rows, params, truth, client_ids)
    tc = pa.table(
        {
            "client_id": client_ids,
            "created_at": _ts(params, created_min),
            "order_rate": pa.array(lat.order_rate),
            "h0": pa.array(lat.h0),
            "amount_scale": pa.array(lat.amount_scale),
            "margin_rate": pa.array(lat.margin_rate),
            "bad_payer": pa.array(lat.bad_payer),
            "onboarding_dropped": pa.array(sim.onboarding_dropped),
            "first_dormant_at": _ts(
                params, sim.first_dormant_day * MINUTES_PER_DAY, sim.first_dormant_day >= 0
            ),
            "times_lost": pa.array(sim.times_lost.astype(np.int64)),
            "times_returned": pa.array(sim.times_returned.astype(np.int64)),
            "alive_at_export": pa.array(sim.alive.copy()),
        }
    )
    counts = {
        "clients": n,
        "orders": m,
        "complaints": k,
        "contacts": j,
        "truth": truth_table.num_rows,
        "truth_clients": n,
    }
    return BlockTables(clients, orders, complaints, contacts, truth_table, tc, counts)


def _truth_table(
    sim: BlockSimulation,
    truth_rows: list[tuple[int, dict[str, np.ndarray]]],
    params: GenerateParams,
    truth: TruthSpec,
    client_ids: pa.Array,
) -> pa.Table:
    """One row per (client created before the cutoff, cutoff), from the oracle and the order history."""
    parts = []
    for d, r in truth_rows:
        idx = r["idx"]
        recency = (d * MINUTES_PER_DAY - r["last_order_minute"]) / MINUTES_PER_DAY
        # active/lapsed as the features' tiers count it: whole days since the last order's day
        active = d - r["last_order_minute"] // MINUTES_PER_DAY < truth.active_days
        p = r["p_no_order"]
        p_obs = r["p_no_order_observable"]
        parts.append(
            pa.table(
                {
                    "client_id": client_ids.take(pa.array(idx)),
                    "cutoff_at": _ts(params, np.full(idx.size, d * MINUTES_PER_DAY)),
                    "state": pa.array(np.where(active, "active", "lapsed")),
                    "recency_days": pa.array(recency),
                    "churn_probability": pa.array(p, mask=~active),
                    "winback_probability": pa.array(1.0 - p, mask=active),
                    "label_complete": pa.array(np.full(idx.size, d + truth.horizon_days <= params.n_days)),
                    "latent_alive": pa.array(r["alive"]),
                    "churn_probability_observable": pa.array(p_obs, mask=~active),
                    "winback_probability_observable": pa.array(1.0 - p_obs, mask=active),
                }
            )
        )
    if not parts:
        return TRUTH_SCHEMA.empty_table()
    return pa.concat_tables(parts)


TRUTH_SCHEMA = pa.schema(
    [
        ("client_id", pa.string()),
        ("cutoff_at", pa.timestamp("us", tz="UTC")),
        ("state", pa.string()),
        ("recency_days", pa.float64()),
        ("churn_probability", pa.float64()),
        ("winback_probability", pa.float64()),
        ("label_complete", pa.bool_()),
        ("latent_alive", pa.bool_()),
        ("churn_probability_observable", pa.float64()),
        ("winback_probability_observable", pa.float64()),
    ]
)


# ---------------------------------------------------------------------------------------------
# planted effects, measured from the written tables (what an analyst of the export would see)
# ---------------------------------------------------------------------------------------------


def repeat_purchase_rates(
    orders: pd.DataFrame, complaints: pd.DataFrame, export_at: pd.Timestamp, window_days: int = 180
) -> dict[str, float]:
    """Share of completed orders followed by another completed order within ``window_days``, by the
    client's complaint status when the order was placed:

    - ``unresolved``: a complaint made before the order was never resolved;
    - ``resolved``: no complaint open at the order and one resolved within the 365 days before it;
    - ``none``: no complaint at all before the order.

    Orders less than ``window_days`` before the export are left out (their window is incomplete).
    """
    import pandas as pd

    o = orders.loc[orders["status"] == "completed", ["client_id", "ordered_at"]].sort_values(
        ["client_id", "ordered_at"], kind="stable"
    )
    nxt = o.groupby("client_id", sort=False)["ordered_at"].shift(-1)
    o = o.assign(repeat=(nxt - o["ordered_at"]) <= pd.Timedelta(days=window_days))
    o = o[o["ordered_at"] <= export_at - pd.Timedelta(days=window_days)]
    c = complaints
    year = pd.Timedelta(days=365)
    ev = pd.concat(
        [
            pd.DataFrame(
                {"client_id": c["client_id"], "at": c["created_at"], "open": 1, "recent": 0, "never": 0}
            ),
            pd.DataFrame(
                {
                    "client_id": c["client_id"],
                    "at": c["created_at"],
                    "open": 0,
                    "recent": 0,
                    "never": c["resolved_at"].isna().astype(int),
                }
            ),
            pd.DataFrame(
                {"client_id": c["client_id"], "at": c["resolved_at"], "open": -1, "recent": 1, "never": 0}
            ).dropna(subset=["at"]),
            pd.DataFrame(
                {
                    "client_id": c["client_id"],
                    "at": c["resolved_at"] + year,
                    "open": 0,
                    "recent": -1,
                    "never": 0,
                }
            ).dropna(subset=["at"]),
        ],
        ignore_index=True,
    )
    ev = ev.sort_values(["client_id", "at"], kind="stable")
    g = ev.groupby("client_id", sort=False)
    ev = ev.assign(
        n_open=g["open"].cumsum(), n_recent=g["recent"].cumsum(), n_never=g["never"].cumsum(), any=1
    )
    o = o.sort_values("ordered_at", kind="stable")
    ev = ev.sort_values("at", kind="stable")
    m = pd.merge_asof(
        o,
        ev[["client_id", "at", "n_open", "n_recent", "n_never", "any"]],
        left_on="ordered_at",
        right_on="at",
        by="client_id",
        allow_exact_matches=False,
    )
    never = m["n_never"].fillna(0) > 0
    resolved = ~never & (m["n_open"].fillna(0) == 0) & (m["n_recent"].fillna(0) > 0)
    none = m["any"].isna()
    return {
        "resolved": float(m.loc[resolved, "repeat"].mean()),
        "none": float(m.loc[none, "repeat"].mean()),
        "unresolved": float(m.loc[never, "repeat"].mean()),
        "n_resolved": int(resolved.sum()),
        "n_none": int(none.sum()),
        "n_unresolved": int(never.sum()),
    }


def loss_episodes(orders: pd.DataFrame, export_at: pd.Timestamp, lapse_days: int = 90) -> pd.DataFrame:
    """Observed losses: a completed order followed by no completed order for ``lapse_days``.

    One row per loss: ``loss_at`` (last order + lapse_days), ``return_days`` (days from the loss to
    the next completed order, NaN if none before the export), ``observed_days`` (loss to export) and
    ``loss_number`` (1 for the client's first observed loss, 2 after one return, ...).
    """
    import pandas as pd

    o = orders.loc[orders["status"] == "completed", ["client_id", "ordered_at"]].sort_values(
        ["client_id", "ordered_at"], kind="stable"
    )
    nxt = o.groupby("client_id", sort=False)["ordered_at"].shift(-1)
    lapse = pd.Timedelta(days=lapse_days)
    loss_at = o["ordered_at"] + lapse
    lost = (nxt.isna() | ((nxt - o["ordered_at"]) >= lapse)) & (loss_at <= export_at)
    out = pd.DataFrame(
        {
            "client_id": o["client_id"][lost],
            "loss_at": loss_at[lost],
            "return_days": (nxt[lost] - loss_at[lost]).dt.total_seconds() / 86400,
            "observed_days": (export_at - loss_at[lost]).dt.total_seconds() / 86400,
        }
    )
    out["loss_number"] = out.groupby("client_id", sort=False).cumcount() + 1
    return out.reset_index(drop=True)


def return_rates_by_time(
    losses: pd.DataFrame, edges: tuple[int, ...] = (0, 90, 180, 270, 365)
) -> list[dict[str, float]]:
    """Per interval since the loss: P(return in it | not returned before it), among losses observed
    through the whole interval (life table; censoring comes only from the export date)."""
    rows = []
    for lo, hi in itertools.pairwise(edges):
        seen = losses[losses["observed_days"] >= hi]
        at_risk = seen[~(seen["return_days"] < lo)]
        back = at_risk["return_days"] < hi
        rows.append({"from_days": lo, "to_days": hi, "at_risk": len(at_risk), "rate": float(back.mean())})
    return rows


def return_within(losses: pd.DataFrame, days: int = 365) -> float:
    """Share of losses, observed for ``days``, that end in a completed order within ``days``."""
    seen = losses[losses["observed_days"] >= days]
    return float((seen["return_days"] < days).mean())
