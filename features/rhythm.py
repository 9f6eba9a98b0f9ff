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

The population constants live in params.yaml ``features.rhythm``. Only completed orders stamped
before the cutoff enter (the same join as the RFM aggregates), so every feature is point in time.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.config import FeatureParams
from features.contract import DECAY_DAYS, ContractError
from features.rfm import SECONDS_PER_DAY


def check_decay_days(params: FeatureParams) -> None:
    """The decayed-count column names carry the decay constants; refuse ones the contract lacks."""
    if list(params.rhythm.decay_days) != list(DECAY_DAYS):
        raise ContractError(
            f"features.rhythm.decay_days must be {list(DECAY_DAYS)} (the feature table's column names, "
            f"e.g. decayed_orders_30d, are fixed by features/contract.py); got {params.rhythm.decay_days}"
        )


def rhythm_bucket_aggregates(o: ir.Table, params: FeatureParams, anchor_s: float) -> dict[str, ir.Value]:
    """Per (client, bucket) sums of ``exp((ordered - anchor) / d)`` over completed orders, per decay d.

    ``exp(-(cutoff - t) / d) = exp(-(cutoff - anchor) / d) * exp((t - anchor) / d)``, so the decayed
    count at a cutoff is a plain sum over earlier buckets times one factor. ``anchor_s`` (epoch
    seconds) is the last cutoff: every order used is before it, so no term overflows.
    """
    age_days = (anchor_s - o.ordered_s) / SECONDS_PER_DAY
    done = o.is_completed
    return {f"b_decay_{d}": (-age_days / float(d)).exp().sum(where=done) for d in params.rhythm.decay_days}


def rhythm_aggregates(j: ir.Table, params: FeatureParams, anchor_s: float) -> dict[str, ir.Value]:
    """Exponentially decayed counts of completed orders before the cutoff (``j``: buckets ⋈ cutoffs).

    ``decayed_orders_{d}d`` = sum over completed orders of ``exp(-age_days / d)``; unitless counts.
    """
    shift_days = (j.cutoff_s.max() - anchor_s) / SECONDS_PER_DAY
    return {
        f"decayed_orders_{d}d": j[f"b_decay_{d}"].sum() * (-shift_days / float(d)).exp()
        for d in params.rhythm.decay_days
    }


def derive_rhythm(t: ir.Table, params: FeatureParams) -> dict[str, ir.Value]:
    """Rate, silence, alive and no-order probabilities and expected orders per (client, cutoff).

    Needs the RFM columns ``orders_total``, ``recency_days`` and ``days_since_first_order`` (days)
    already derived on ``t``. Every column but the decayed counts is null for a client with no
    completed order before the cutoff (no rhythm to read); decayed counts are then 0.
    """
    rp = params.rhythm
    n = t.orders_total.fill_null(0).cast("float64")
    recency = t.recency_days
    span = t.days_since_first_order - recency  # first to last completed order, days
    has_order = n > 0
    null = ibis.null("float64")
    rate = ibis.ifelse(has_order, (n - 1.0 + rp.rate_prior_orders) / (span + rp.rate_prior_days), null)
    mu = ibis.ifelse(
        t.days_since_first_order < float(params.new_client_days),
        ibis.literal(rp.onboarding_hazard_per_day),
        ibis.literal(rp.dormancy_hazard_per_day),
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
    for d in rp.decay_days:
        name = f"decayed_orders_{d}d"
        out[name] = t[name].fill_null(0.0)
    return out
