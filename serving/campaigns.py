"""Campaign rules: who goes on the prevention and win-back lists, with which offer and manager.

The rules are split in two so that the API and the batch give the same answer:

* :func:`plan_campaigns` computes everything that does not depend on a model, once per feature
  table (value, value class, exclusions, win-back tier, offer, flags, manager assignment). Classes
  and manager loads depend on the whole population, so they are never recomputed per request.
* :func:`assign_campaigns` turns probabilities into priorities and list membership, per row.

Priorities (company currency): prevention = churn probability x value; win-back = win-back
probability x value - offer cost of the tier. A client enters a list only where the priority is
positive and no exclusion applies. Exclusions, in the order reported: ``do_not_contact``,
``twice_lost`` (win-back only), ``unprofitable`` (a known margin_total below the threshold; a
client whose margin is unknown is never unprofitable), ``unknown_value`` (no margin and no
``score.default_margin_rate`` to value the revenue with), ``bad_payer`` (late-payment share or
overdue unpaid amount over the thresholds).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import CHURN_STATES, WINBACK_STATES, ContractError
from serving.config import VALUE_CLASSES, WINBACK_TIERS, ScoreParams
from serving.value import MARGIN, NO_BASIS, REVENUE, classify_value, compute_value

PREVENTION = "prevention"
WINBACK = "winback"
NO_CAMPAIGN = "none"
NON_POSITIVE_PRIORITY = "non_positive_priority"
UNKNOWN_VALUE = "unknown_value"
EXCLUSION_REASONS = ("do_not_contact", "twice_lost", "unprofitable", UNKNOWN_VALUE, "bad_payer")

#: Columns of the feature table the rules read.
PLAN_COLUMNS = (
    "client_id",
    "state",
    "manager_id",
    "segment",
    "do_not_contact",
    "loss_manager_id",
    "recency_days",
    "days_since_first_order",
    "margin_total",
    "amount_total",
    "twice_lost",
    "late_payment_share",
    "overdue_unpaid_amount",
    "returned_recently",
    "is_new",
    "open_complaint_severity_max",
)


@dataclass(frozen=True)
class CampaignPlan:
    """Model-independent campaign facts, one entry per client row of the feature table.

    ``model_kind`` is "churn" for new and active clients, "winback" for lapsed ones and "" for
    lost clients and clients without a completed order (no model applies). Strings that do not
    apply are "" (reasons, tier) or None (manager ids). ``value_basis`` says what each value was
    computed from: "margin", "revenue" (amount_total x score.default_margin_rate) or "none".
    """

    value: np.ndarray
    value_basis: np.ndarray
    value_class: np.ndarray
    model_kind: np.ndarray
    tier: np.ndarray
    offer: np.ndarray
    offer_cost: np.ndarray
    excluded_reason: np.ndarray
    returned_client: np.ndarray
    new_client: np.ndarray
    open_severe_complaint: np.ndarray
    avoid_manager_id: np.ndarray
    suggested_manager_id: np.ndarray


def _flag(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy(dtype=np.float64) > 0


def _number(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column].astype(object).to_numpy(dtype=object)
    return np.array([None if v is None or v != v or v == "" else str(v) for v in values], dtype=object)


def suggest_managers(
    manager_id: np.ndarray,
    segment: np.ndarray,
    avoid_manager_id: np.ndarray,
    needs: np.ndarray,
    value: np.ndarray,
    client_id: np.ndarray,
) -> np.ndarray:
    """Suggested manager for the rows in ``needs``: balanced over the segment, never the avoided one.

    The managers of a segment are those holding at least one client of it now; a manager's load
    starts at the number of clients they hold (``manager_id`` over the whole table). Clients are
    handed out in order of value (descending, ties by client id), each to the least-loaded manager
    of its segment other than its avoided one (ties to the smaller manager id), whose load then
    grows by one. Deterministic, independent of the models, and it spreads a list over the team
    instead of sending it all to one person. None where the segment has no other manager.
    """
    seg = pd.Series(segment, dtype=object).fillna("").to_numpy(dtype=object)
    held = pd.DataFrame({"manager_id": manager_id, "segment": seg}).dropna(subset=["manager_id"])
    load = held["manager_id"].value_counts().to_dict()
    members = held.groupby("segment", sort=True)["manager_id"].agg(lambda m: sorted(set(m))).to_dict()
    out = np.full(len(seg), None, dtype=object)
    rows = np.flatnonzero(np.asarray(needs, dtype=bool))
    if rows.size == 0:
        return out
    order = rows[
        np.lexsort((np.asarray(client_id, dtype=object)[rows].astype(str), -np.asarray(value)[rows]))
    ]
    heaps = {s: [(int(load[m]), str(m)) for m in ms] for s, ms in members.items()}
    for h in heaps.values():
        heapq.heapify(h)
    for r in order.tolist():
        heap = heaps.get(seg[r])
        if not heap:
            continue
        first = heapq.heappop(heap)
        chosen = first
        if first[1] == avoid_manager_id[r]:
            if not heap:
                heapq.heappush(heap, first)
                continue
            chosen = heapq.heappop(heap)
            heapq.heappush(heap, first)
        out[r] = chosen[1]
        heapq.heappush(heap, (chosen[0] + 1, chosen[1]))
    return out


def plan_campaigns(frame: pd.DataFrame, params: ScoreParams) -> CampaignPlan:
    """Model-independent campaign facts for every row of a feature table at one cutoff.

    ``frame`` holds the rows of one cutoff with at least :data:`PLAN_COLUMNS`; a missing column
    raises a ContractError naming it.
    """
    missing = [c for c in PLAN_COLUMNS if c not in frame.columns]
    if missing:
        raise ContractError(
            f"table 'features': missing column(s) {', '.join(map(repr, missing))} for scoring"
        )
    n = len(frame)
    state = frame["state"].astype(str).to_numpy(dtype=object)
    churn_rows = np.isin(state, CHURN_STATES)
    winback_rows = np.isin(state, WINBACK_STATES)
    model_kind = np.where(churn_rows, "churn", np.where(winback_rows, "winback", "")).astype(object)

    margin = _number(frame, "margin_total")
    valued = compute_value(
        margin,
        _number(frame, "amount_total"),
        _number(frame, "days_since_first_order"),
        _number(frame, "recency_days"),
        params,
    )
    value = valued.value
    value_class = classify_value(value, frame["client_id"].to_numpy(), params)

    tier = np.where(winback_rows, state, "").astype(object)
    offer = np.full(n, "", dtype=object)
    cost = np.zeros(n, dtype=np.float64)
    for t in WINBACK_TIERS:
        rows = tier == t
        offer[rows] = params.winback_offers[t].offer
        cost[rows] = params.winback_offers[t].cost
    for c in VALUE_CLASSES:
        rows = churn_rows & (value_class == c)
        offer[rows] = params.prevention_offers[c].offer
        cost[rows] = params.prevention_offers[c].cost

    late_share = np.nan_to_num(_number(frame, "late_payment_share"), nan=0.0)
    overdue = np.nan_to_num(_number(frame, "overdue_unpaid_amount"), nan=0.0)
    rules = (
        ("do_not_contact", _flag(frame, "do_not_contact")),
        ("twice_lost", _flag(frame, "twice_lost") & winback_rows),
        # a NaN margin compares False: a client whose margin is unknown is never unprofitable
        ("unprofitable", (valued.basis == MARGIN) & (margin < params.unprofitable_margin_below)),
        (UNKNOWN_VALUE, valued.basis == NO_BASIS),
        (
            "bad_payer",
            (late_share > params.bad_payer_late_share) | (overdue > params.bad_payer_overdue_amount),
        ),
    )
    excluded = np.full(n, "", dtype=object)
    for reason, hit in reversed(rules):  # the first rule in the list wins
        excluded[hit & (churn_rows | winback_rows)] = reason

    days_first = _number(frame, "days_since_first_order")
    new_client = (state == "new") | _flag(frame, "is_new") | (days_first < params.new_client_days)
    severe = (
        np.nan_to_num(_number(frame, "open_complaint_severity_max"), nan=0.0) >= params.severe_complaint_min
    )

    manager = _ids(frame, "manager_id")
    loss_manager = _ids(frame, "loss_manager_id")
    avoid = np.full(n, None, dtype=object)
    known_loss = ~pd.isna(loss_manager)
    avoid[winback_rows] = np.where(known_loss, loss_manager, manager)[winback_rows]
    suggested = suggest_managers(
        manager,
        frame["segment"].to_numpy(dtype=object),
        avoid,
        winback_rows,
        value,
        frame["client_id"].to_numpy(dtype=object),
    )

    return CampaignPlan(
        value=value,
        value_basis=valued.basis,
        value_class=value_class,
        model_kind=model_kind,
        tier=tier,
        offer=offer,
        offer_cost=cost,
        excluded_reason=excluded,
        returned_client=_flag(frame, "returned_recently"),
        new_client=new_client,
        open_severe_complaint=severe,
        avoid_manager_id=avoid.astype(object),
        suggested_manager_id=suggested.astype(object),
    )


class NoValueError(ValueError):
    """No client a campaign could address has a usable value; the message names what is missing."""


def require_usable_value(plan: CampaignPlan, params: ScoreParams) -> None:
    """Refuse a plan in which no churn or win-back client has a positive value.

    Priorities are probability x value, so such a plan can only give empty lists; the batch stage
    calls this before writing anything, so empty files are never presented as a result. Raises
    :class:`NoValueError` with a one-line message naming the missing column or parameter. A
    feature table with no churn or win-back client at all passes (there is nothing to value; the
    batch reports the empty lists).
    """
    rows = plan.model_kind != ""
    n = int(rows.sum())
    if n == 0 or bool((plan.value[rows] > 0).any()):
        return
    basis = plan.value_basis[rows]
    on_margin, on_revenue = int((basis == MARGIN).sum()), int((basis == REVENUE).sum())
    who = f"{n:,} churn and win-back clients"
    if on_margin + on_revenue == 0:
        if params.default_margin_rate is None:
            raise NoValueError(
                f"no usable client value: 'margin_total' is null for all {who} (the export has no "
                "order margin) and score.default_margin_rate is null; set score.default_margin_rate "
                "to your gross margin share of revenue, or export orders.margin"
            )
        raise NoValueError(
            f"no usable client value: both 'margin_total' and 'amount_total' are null for all {who}; "
            "export orders.amount or orders.margin"
        )
    raise NoValueError(
        f"no usable client value: none of the {who} has a positive value ({on_margin:,} valued on "
        f"'margin_total', {on_revenue:,} on 'amount_total' x score.default_margin_rate "
        f"{params.default_margin_rate}); check orders.margin and orders.amount in the export"
    )


def assign_campaigns(
    plan: CampaignPlan, rows: np.ndarray, probability: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Priority, campaign and exclusion reason for ``rows`` of the plan given their probability.

    ``probability`` is the churn probability for churn rows and the win-back probability for
    win-back rows (NaN where no model applies). Returns (priority in company currency, NaN where no
    model applies; campaign "prevention" | "winback" | "none"; reason the client is not on a list,
    "" when it is or no model applies).
    """
    kind = plan.model_kind[rows]
    value = plan.value[rows]
    p = np.asarray(probability, dtype=np.float64)
    priority = np.where(
        kind == "churn", p * value, np.where(kind == "winback", p * value - plan.offer_cost[rows], np.nan)
    )
    excluded = plan.excluded_reason[rows].copy()
    eligible = (kind != "") & (excluded == "")
    listed = eligible & (priority > 0)
    excluded[eligible & ~listed] = NON_POSITIVE_PRIORITY
    campaign = np.where(listed, np.where(kind == "churn", PREVENTION, WINBACK), NO_CAMPAIGN).astype(object)
    return priority, campaign, excluded


def assign_campaign_one(plan: CampaignPlan, row: int, probability: float) -> tuple[float, str, str]:
    """:func:`assign_campaigns` for a single row, in plain Python (the API's single client).

    The same rules and the same float operations, so the same numbers, for under 1 µs of CPU
    against about 38 µs for assign_campaigns on a 1-element array (measured on the bench sample):
    for one row that is nearly all numpy's per-call overhead. tests/unit/test_campaigns.py checks
    the two agree on random plans.
    """
    kind = plan.model_kind[row]
    if kind == "churn":
        priority = probability * float(plan.value[row])
    elif kind == "winback":
        priority = probability * float(plan.value[row]) - float(plan.offer_cost[row])
    else:
        priority = math.nan
    excluded = plan.excluded_reason[row]
    if kind == "" or excluded != "":
        return priority, NO_CAMPAIGN, excluded
    if priority > 0:
        return priority, PREVENTION if kind == "churn" else WINBACK, excluded
    return priority, NO_CAMPAIGN, NON_POSITIVE_PRIORITY
