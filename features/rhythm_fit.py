"""Population constants of the rhythm features, fitted on the history before each cutoff.

The rhythm features (:mod:`features.rhythm`) read a client's (orders, first order, last order)
through a buy-till-you-die model with four population constants: the gamma prior of the order
rate (shape ``a`` = ``rate_prior_orders``, rate ``b`` = ``rate_prior_days``), the dormancy hazard
``mu0`` per day and the onboarding hazard ``mu1`` per day, used while the client is younger than
``c`` = ``new_client_days`` days since its first order. This module fits those constants on the
history known at a cutoff D, so a real export never carries the simulator's values.

The model and its likelihood
----------------------------
A client is born at its first completed order (age 0). While alive it orders as a Poisson process
at its own rate ``lam ~ Gamma(a, b)`` (mean ``a / b`` orders per day). Its lifetime ``tau`` (days
of age until it goes dormant for good) has the piecewise-constant hazard ``mu(s) = mu1`` for
``s < c`` and ``mu0`` after, so its survival is ``S(s) = exp(-H(s))`` with
``H(s) = mu1 * min(s, c) + mu0 * max(s - c, 0)``. At D the client shows ``x`` repeat orders (orders
after the first), the age ``t_x`` of its last order and its age ``T``: the per-client summary the
features themselves use (``orders_total - 1``, first-to-last span, ``days_since_first_order``).

Given ``lam`` and ``tau`` the order times are a Poisson process on ``(0, min(tau, T)]``, whose
density is ``lam**x * exp(-lam * min(tau, T))``; ``tau`` must exceed ``t_x``. Integrating ``tau``
over its density ``mu(tau) S(tau)`` on ``(t_x, T]`` and its survival beyond ``T``:

    L(lam) = lam**x * [ S(T) exp(-lam T) + int_{t_x}^{T} mu(tau) S(tau) exp(-lam tau) dtau ]

and ``lam`` over its gamma prior, with ``E[lam**x exp(-lam s)] = G(a+x)/G(a) b**a / (b+s)**(a+x)``:

    L = G(a+x)/G(a) b**a [ S(T) (b+T)**-(a+x) + int_{t_x}^{T} mu(tau) S(tau) (b+tau)**-(a+x) dtau ]

This is the Pareto/NBD likelihood (Schmittlein, Morrison and Colombo 1987) with the gamma-mixed
exponential lifetime replaced by one piecewise-constant hazard, which is what the features
assume. The integral has no closed form in scipy's special functions for a non-integer ``a + x``
(an upper incomplete gamma of negative order), so it is a Gauss-Legendre quadrature
(``scipy.special.roots_legendre``, :data:`QUAD_NODES` nodes) on each constant-hazard piece, in
the variable ``u = log(b + tau)``, on which the power part is an exponential and ``H`` smooth,
vectorised over clients, in log space relative to ``(b + t_x)**-(a+x)``; each piece is cut where
its integrand has fallen by ``exp(-QUAD_DROP)``, beyond which nothing of it counts (against
adaptive quadrature the result is within 1e-6 nats per client). The log-likelihood and its
analytic gradient (softmax weights of the terms), plus a weak log-normal prior on each hazard
(:func:`fit_rhythm`), go to ``scipy.optimize.minimize`` (L-BFGS-B) in log parameters, within
:data:`BOUNDS`.

Why not lifetimes: its ParetoNBDFitter mixes the hazard over clients (gamma) and has no onboarding
piece, its BetaGeoFitter drops clients at purchases rather than per day; neither gives the two
per-day hazards the features use. Hand-written, with scipy doing the optimisation, the special
functions and the quadrature nodes.

Cheap by construction: the fit reads one row per client (never the orders), on at most
:data:`FIT_MAX_CLIENTS` clients drawn with a fixed seed when there are more; the constants it
returns are a function of the completed orders before D alone, so every feature stays point in
time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special

#: At most this many clients enter the fit at one cutoff (a seeded sample when there are more):
#: four constants need far fewer, and the fit's cost grows linearly with them.
FIT_MAX_CLIENTS = 50_000
#: Seed of that sample (numpy's default_rng over the clients sorted by id).
FIT_SEED = 0
#: Below this many clients with a completed order before D the constants are not fitted
#: (see :func:`fallback_constants`).
MIN_FIT_CLIENTS = 100
#: Standard deviation (in log) of the weak prior on each hazard, centred on 1 / lost_after_days.
HAZARD_PRIOR_SD = 2.0
#: Gauss-Legendre nodes per constant-hazard piece of the lifetime integral.
QUAD_NODES = 10
#: A piece of the integral is cut where its integrand fell by exp(-QUAD_DROP) from its start.
QUAD_DROP = 20.0
#: Bounds of (a, b, mu0, mu1): orders, days, per day, per day. Wide enough for any CRM, narrow
#: enough that no feature becomes 0, 1 or infinite for lack of data.
BOUNDS = ((1e-2, 1e3), (1e-1, 1e5), (1e-6, 1.0), (1e-6, 1.0))


@dataclass(frozen=True)
class RhythmHistory:
    """Per-client summary at one cutoff: repeat orders x, first-to-last span t_x and age T (days).

    One entry per client with at least one completed order before the cutoff, in client-id order.
    """

    repeat_orders: np.ndarray
    span_days: np.ndarray
    age_days: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.repeat_orders)
        if len(self.span_days) != n or len(self.age_days) != n:
            raise ValueError("rhythm history: repeat_orders, span_days and age_days differ in length")

    def __len__(self) -> int:
        return len(self.repeat_orders)

    def take(self, idx: np.ndarray) -> RhythmHistory:
        return RhythmHistory(self.repeat_orders[idx], self.span_days[idx], self.age_days[idx])


@dataclass(frozen=True)
class RhythmConstants:
    """The rhythm features' population constants at one cutoff, and how they were obtained.

    ``rate_prior_orders`` a and ``rate_prior_days`` b: gamma prior of the order rate (mean a / b
    orders per day, worth a orders over b days); ``dormancy_hazard_per_day`` mu0 and
    ``onboarding_hazard_per_day`` mu1: the chance per day that an alive client goes dormant, past
    and within ``new_client_days`` of its first order. ``method`` is ``fit`` (:func:`fit_rhythm`)
    or ``fallback`` (too few clients, :func:`fallback_constants`); ``clients`` the clients the fit
    read (after sampling), ``clients_total`` those with a completed order before the cutoff.
    """

    rate_prior_orders: float
    rate_prior_days: float
    dormancy_hazard_per_day: float
    onboarding_hazard_per_day: float
    method: Literal["fit", "fallback"]
    clients: int
    clients_total: int
    converged: bool = True
    log_likelihood_per_client: float | None = None

    @property
    def values(self) -> tuple[float, float, float, float]:
        """(a, b, mu0, mu1)."""
        return (
            self.rate_prior_orders,
            self.rate_prior_days,
            self.dormancy_hazard_per_day,
            self.onboarding_hazard_per_day,
        )

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict, with the prior's mean rate (orders per day) added for reading."""
        out: dict[str, object] = asdict(self)
        out["rate_prior_mean_per_day"] = self.rate_prior_orders / self.rate_prior_days
        return out


def fallback_constants(*, horizon_days: int, lost_after_days: int, clients_total: int = 0) -> RhythmConstants:
    """The constants used where the data is too thin to fit them (documented rule, not a fit).

    A prior worth one order per horizon (a = 1, b = ``horizon_days``) and one hazard, for both
    ages, of ``1 / lost_after_days`` per day (a client silent that long is lost by definition).
    Both come from the user's own definitions in params.yaml, never from the sample generator.
    """
    mu = 1.0 / lost_after_days
    return RhythmConstants(1.0, float(horizon_days), mu, mu, "fallback", 0, clients_total)


@dataclass(frozen=True)
class _Piece:
    """The clients whose (t_x, T] overlaps one constant-hazard piece: their index, the piece's start
    on their age axis (days) and its length (days)."""

    idx: np.ndarray
    start: np.ndarray
    length: np.ndarray


def _split(history: RhythmHistory, new_client_days: float) -> tuple[_Piece, _Piece]:
    """(t_x, T] cut at age ``new_client_days``: the onboarding piece, then the established one."""
    tx = history.span_days.astype("float64")
    big_t = history.age_days.astype("float64")
    c = float(new_client_days)
    pieces = []
    for s, e in ((tx, np.minimum(big_t, c)), (np.maximum(tx, c), big_t)):
        idx = np.flatnonzero(e > s)
        pieces.append(_Piece(idx, s[idx], e[idx] - s[idx]))
    return pieces[0], pieces[1]


def rhythm_log_likelihood(
    values: tuple[float, float, float, float] | np.ndarray,
    history: RhythmHistory,
    new_client_days: float,
    *,
    gradient: bool = False,
    nodes: int = QUAD_NODES,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-client log-likelihood of (a, b, mu0, mu1) (module docstring), and its gradient.

    Returns ``(loglik, grad)``: ``loglik`` has one value per client (nats); ``grad`` (when asked)
    has shape (clients, 4), the derivatives with respect to (a, b, mu0, mu1). ``nodes``:
    Gauss-Legendre nodes per piece of the lifetime integral.
    """
    return _log_likelihood(
        values, history, _split(history, new_client_days), new_client_days, gradient, nodes
    )


def _log_likelihood(
    values: tuple[float, float, float, float] | np.ndarray,
    history: RhythmHistory,
    pieces: tuple[_Piece, _Piece],
    new_client_days: float,
    gradient: bool,
    nodes: int = QUAD_NODES,
) -> tuple[np.ndarray, np.ndarray | None]:
    a, b, mu0, mu1 = (float(v) for v in values)
    c = float(new_client_days)
    z_nodes, z_weights = _legendre(nodes)
    x = history.repeat_orders.astype("float64")
    tx = history.span_days.astype("float64")
    big_t = history.age_days.astype("float64")
    k = a + x
    log_btx = np.log(b + tx)
    # the survival term (alive through T), then each piece's nodes, all relative to (b + t_x)**-k;
    # the hazard integral H is mu1 * tau on the onboarding piece, mu1 * c + mu0 * (tau - c) after
    h_t = mu1 * np.minimum(big_t, c) + mu0 * np.maximum(big_t - c, 0.0)
    log_rho_t = log_btx - np.log(b + big_t)
    z0 = k * log_rho_t - h_t
    lse = z0.copy()
    rows = []
    for n_piece, (piece, mu) in enumerate(zip(pieces, (mu1, mu0), strict=True)):
        # on u = log((b + tau) / (b + s)) the power part is exp(-(k - 1) u) and H is smooth; the
        # piece is cut where either part has fallen by exp(-QUAD_DROP). Arrays are (node, client):
        # the sums over the nodes then run along whole rows, several times faster than short rows
        i = piece.idx
        ki = k[i]
        bs = b + piece.start
        u_end = np.log1p(piece.length / bs)
        with np.errstate(divide="ignore"):
            u_cut = np.minimum(QUAD_DROP / np.abs(ki - 1.0), np.log1p(QUAD_DROP / (mu * bs)))
        u_span = np.minimum(u_end, u_cut)
        u = ((1.0 + z_nodes) / 2.0)[:, None] * u_span
        tau = bs * np.exp(u) - b
        log_rho = (log_btx[i] - np.log(bs)) - u
        # log of: weight * mu * exp(-H(tau)) * rho**k * (b + tau) du, where H = mu * tau + the
        # piece's constant and k log rho + log(b + tau) = (k - 1) log rho + log(b + t_x)
        offset = (
            np.log(u_span / 2.0) + log_btx[i] + (math.log(mu) - (0.0 if n_piece == 0 else (mu1 - mu0) * c))
        )
        z = (ki - 1.0) * log_rho - mu * tau
        z += np.log(z_weights)[:, None]
        z += offset
        top = z.max(axis=0)
        e = np.exp(z - top)
        lse[i] = np.logaddexp(lse[i], top + np.log(e.sum(axis=0)))
        rows.append((i, tau, log_rho, e, top))
    loglik = special.gammaln(k) - special.gammaln(a) + a * math.log(b) - k * log_btx + lse
    if not gradient:
        return loglik, None
    # d loglik / d theta = direct terms + sum over terms of softmax weight * d term / d theta
    p0 = np.exp(z0 - lse)
    d_a = special.digamma(k) - special.digamma(a) + math.log(b) - log_btx + p0 * log_rho_t
    d_b = a / b - k * p0 / (b + big_t)
    d_mu1 = -p0 * np.minimum(big_t, c)
    d_mu0 = -p0 * np.maximum(big_t - c, 0.0)
    for n_piece, (i, tau, log_rho, e, top) in enumerate(rows):
        p = e * np.exp(top - lse[i])
        d_a[i] += (p * log_rho).sum(axis=0)
        d_b[i] -= k[i] * (p / (b + tau)).sum(axis=0)
        mass = p.sum(axis=0)
        p_tau = (p * tau).sum(axis=0)
        if n_piece == 0:
            d_mu1[i] += mass / mu1 - p_tau
        else:
            d_mu1[i] -= mass * c
            d_mu0[i] += mass / mu0 - (p_tau - mass * c)
    return loglik, np.column_stack([d_a, d_b, d_mu0, d_mu1])


@functools.cache
def _legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = special.roots_legendre(nodes)
    return z, w


def _start(history: RhythmHistory, hazard: float) -> np.ndarray:
    """Starting point (a, b, mu0, mu1): a prior worth one order at the pooled repeat rate (repeat
    orders over first-to-last days), both hazards at the prior centre ``hazard``. (A
    method-of-moments start for a and b took as many iterations on the sample.)"""
    repeats = float(history.repeat_orders.sum())
    exposure = float(history.span_days.sum())
    b = min(max(exposure / repeats, 1.0), 1e4) if repeats > 0 else 100.0
    return np.array([1.0, b, hazard, hazard])


def fit_rhythm(
    history: RhythmHistory,
    *,
    new_client_days: int,
    horizon_days: int,
    lost_after_days: int,
    max_clients: int = FIT_MAX_CLIENTS,
    seed: int = FIT_SEED,
) -> RhythmConstants:
    """Fitted (a, b, mu0, mu1) on ``history`` (module docstring), within :data:`BOUNDS`.

    The estimate maximises the log-likelihood plus a weak log-normal prior on each hazard,
    centred on ``1 / lost_after_days`` per day with a standard deviation of
    :data:`HAZARD_PRIOR_SD` in log (a factor of about 7 either way). Its weight is that of a
    fraction of one dormancy, so with thousands of clients the estimate is the maximum-likelihood
    one; where the history says nothing about a hazard (the first cutoffs, when no client has been
    silent longer than its pace, or no client older than ``new_client_days`` for mu0) the
    estimate stays near that centre instead of running to a bound.

    More than ``max_clients`` clients: a sample of that many, drawn with ``seed`` over the
    history's order (client-id order), so the fit is reproducible and depends on nothing but the
    history. Fewer than :data:`MIN_FIT_CLIENTS` clients, or no repeat order at all (no rhythm to
    read): :func:`fallback_constants`.
    """
    total = len(history)
    fallback = fallback_constants(
        horizon_days=horizon_days, lost_after_days=lost_after_days, clients_total=total
    )
    if total < MIN_FIT_CLIENTS or not (history.repeat_orders > 0).any():
        return fallback
    if total > max_clients:
        idx = np.sort(np.random.default_rng(seed).choice(total, size=max_clients, replace=False))
        history = history.take(idx)
    n = len(history)
    pieces = _split(history, new_client_days)
    log_bounds = [(math.log(lo), math.log(hi)) for lo, hi in BOUNDS]
    centre = math.log(1.0 / lost_after_days)
    hazards = np.array([False, False, True, True])  # (a, b, mu0, mu1): the prior is on mu0 and mu1

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        values = np.exp(theta)
        ll, grad = _log_likelihood(values, history, pieces, new_client_days, True)
        assert grad is not None
        dev = np.where(hazards, (theta - centre) / HAZARD_PRIOR_SD, 0.0)
        value = -float(ll.sum()) + 0.5 * float(dev @ dev)
        return value / n, (-(grad.sum(axis=0) * values) + dev / HAZARD_PRIOR_SD) / n

    start = np.clip(np.log(_start(history, 1.0 / lost_after_days)), *np.array(log_bounds).T)
    res = optimize.minimize(
        objective, start, jac=True, method="L-BFGS-B", bounds=log_bounds, options={"maxiter": 500}
    )
    a, b, mu0, mu1 = (float(v) for v in np.exp(res.x))
    if not all(math.isfinite(v) for v in (a, b, mu0, mu1)):  # pragma: no cover - bounded optimiser
        return fallback
    ll, _ = _log_likelihood((a, b, mu0, mu1), history, pieces, new_client_days, False)
    return RhythmConstants(
        a,
        b,
        mu0,
        mu1,
        "fit",
        n,
        total,
        converged=bool(res.success),
        log_likelihood_per_client=float(ll.mean()),
    )
