"""The client's own ordering rhythm at a cutoff, as a buy-till-you-die (BTYD) model reads it.

A BTYD model (Pareto/NBD, BG/NBD) says: while alive, a client orders as a Poisson process at its
own rate; at some unseen moment it goes dormant ("dies") and stops ordering. Churn is then "the
client is dormant, or alive but silent through the horizon". These features give the booster that
reasoning in closed form from (orders, first order, last order) before the cutoff:

* ``order_rate_per_day``: the client's rate, shrunk towards the population,
  ``(repeat orders + a) / (days from first to last order + b)``; the prior (a, b) is a gamma with
  mean ``a / b`` orders per day, so a client with two orders is not read as a metronome;
* ``silence_probability``: ``exp(-rate * recency_days)``, the probability of a gap at least as long
  as the current one if the client were still alive at that rate;
* ``alive_probability``: P(still alive | silent for recency_days) with a constant dormancy hazard
  ``mu`` per day (``onboarding_hazard_per_day`` within ``new_client_days`` of the first order):
  ``e / (e + mu / (rate + mu) * (1 - e))`` with ``e = exp(-(rate + mu) * recency_days)``;
* ``rhythm_no_order_probability``: P(no completed order in the horizon) under the same model,
  ``1 - alive * rate / (rate + mu) * (1 - exp(-(rate + mu) * horizon_days))`` (returns from
  dormancy ignored: they are rare within one horizon);
* ``expected_orders_horizon``: expected completed orders in the horizon,
  ``alive * rate / mu * (1 - exp(-mu * horizon_days))``;
* ``decayed_orders_{d}d``: completed orders weighted by ``exp(-age / d)``, age in days before the
  cutoff: a smooth recency-weighted frequency with no window edge.

The population constants (a, b, mu and the onboarding mu) are fitted at each cutoff on the
per-client summary of the completed orders before it (:mod:`features.rhythm_fit`, fed by
:func:`rhythm_histories`) and enter the expression as columns of the cutoffs table
(:data:`CONSTANT_COLUMNS`), so DuckDB and PySpark compute the same thing. Only completed orders
stamped before the cutoff enter, the fit included, so every feature is point in time. The decay
constants are the contract's ``DECAY_DAYS`` (they are part of the column names).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.contract import DECAY_DAYS
from features.rfm import SECONDS_PER_DAY
from features.rhythm_fit import RhythmConstants

#: Columns of the cutoffs table holding the fitted constants, by RhythmConstants field.
CONSTANT_COLUMNS = {
    "rate_prior_orders": "rhythm_rate_prior_orders",
    "rate_prior_days": "rhythm_rate_prior_days",
    "dormancy_hazard_per_day": "rhythm_dormancy_hazard_per_day",
    "onboarding_hazard_per_day": "rhythm_onboarding_hazard_per_day",
}


def constant_columns(constants: RhythmConstants) -> dict[str, float]:
    """The cutoffs-table columns of one cutoff's fitted constants (see :data:`CONSTANT_COLUMNS`)."""
    return {column: float(getattr(constants, field)) for field, column in CONSTANT_COLUMNS.items()}


def rhythm_histories(done: ir.Table, cut: ir.Table) -> ir.Table:
    """Per (cutoff_id, client_id): completed orders, first and last (epoch seconds) before the cutoff.

    ``done`` holds completed orders with ``client_id``, ``ordered_at`` and ``ordered_s``; ``cut``
    the cutoffs table. One grouped query for all the cutoffs of ``cut``: the summary the rhythm
    fit reads (repeat orders, first-to-last span and age since the first order follow from it).
    """
    j = done.join(cut, done.ordered_at < cut.cutoff_at)
    return j.group_by(["cutoff_id", "client_id"]).aggregate(
        orders=j.count(),
        first_s=j.ordered_s.min(),
        last_s=j.ordered_s.max(),
        cutoff_s=j.cutoff_s.max(),
    )


def rhythm_bucket_aggregates(o: ir.Table, params: FeatureParams, anchor_s: float) -> dict[str, ir.Value]:
    """Per (client, bucket) sums of ``exp((ordered - anchor) / d)`` over completed orders, per decay d.

    ``exp(-(cutoff - t) / d) = exp(-(cutoff - anchor) / d) * exp((t - anchor) / d)``, so the decayed
    count at a cutoff is a plain sum over earlier buckets times one factor. ``anchor_s`` (epoch
    seconds) is the last cutoff: every order used is before it, so no term overflows.
    """
    age_days = (anchor_s - o.ordered_s) / SECONDS_PER_DAY
    done = o.is_completed
    return {f"b_decay_{d}": (-age_days / float(d)).exp().sum(where=done) for d in DECAY_DAYS}


def rhythm_aggregates(j: ir.Table, params: FeatureParams, anchor_s: float) -> dict[str, ir.Value]:
    """Exponentially decayed counts of completed orders before the cutoff (``j``: buckets ⋈ cutoffs).

    ``decayed_orders_{d}d`` = sum over completed orders of ``exp(-age_days / d)``; unitless counts.
    """
    shift_days = (j.cutoff_s.max() - anchor_s) / SECONDS_PER_DAY
    return {
        f"decayed_orders_{d}d": j[f"b_decay_{d}"].sum() * (-shift_days / float(d)).exp() for d in DECAY_DAYS
    }


def derive_rhythm(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Rate, silence, alive and no-order probabilities and expected orders per (client, cutoff).

    Needs the RFM columns ``orders_total``, ``recency_days`` and ``days_since_first_order`` (days)
    already derived on ``t``, and the cutoff's fitted constants (:data:`CONSTANT_COLUMNS`, columns
    of the cutoffs table). Every column but the decayed counts is null for a client with no
    completed order before the cutoff (no rhythm to read); decayed counts are then 0.
    """
    a, b = t.rhythm_rate_prior_orders, t.rhythm_rate_prior_days
    n = t.orders_total.fill_null(0).cast("float64")
    recency = t.recency_days
    span = t.days_since_first_order - recency  # first to last completed order, days
    has_order = n > 0
    null = ibis.null("float64")
    rate = ibis.ifelse(has_order, (n - 1.0 + a) / (span + b), null)
    mu = ibis.ifelse(
        t.days_since_first_order < float(params.new_client_days),
        t.rhythm_onboarding_hazard_per_day,
        t.rhythm_dormancy_hazard_per_day,
    )
    total = rate + mu
    e = (-total * recency).exp()
    alive = e / (e + mu / total * (1.0 - e))
    horizon = float(params.horizon_days)
    out: dict[str, ir.Value] = {
        "order_rate_per_day": rate,
        "silence_probability": (-rate * recency).exp(),
        "alive_probability": alive,
        "rhythm_no_order_probability": 1.0 - alive * rate / total * (1.0 - (-total * horizon).exp()),
        "expected_orders_horizon": alive * rate / mu * (1.0 - (-mu * horizon).exp()),
    }
    for d in DECAY_DAYS:
        name = f"decayed_orders_{d}d"
        out[name] = t[name].fill_null(0.0)
    return out
