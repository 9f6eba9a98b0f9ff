"""Campaign rules on small hand-made frames whose right answers are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.contract import ContractError
from serving.batch import campaign_list
from serving.campaigns import (
    PLAN_COLUMNS,
    assign_campaign_one,
    assign_campaigns,
    plan_campaigns,
    suggest_managers,
)
from serving.config import ScoreParams
from serving.value import classify_value, compute_value, value_multiplier

PARAMS = ScoreParams()


def client(**overrides: object) -> dict[str, object]:
    """An active, profitable, well-paying client with no flags; override what a test needs."""
    row: dict[str, object] = {
        "client_id": "c1",
        "state": "active",
        "manager_id": "m1",
        "segment": "retail",
        "do_not_contact": False,
        "loss_manager_id": None,
        "recency_days": 20.0,
        "days_since_first_order": 400.0,
        "margin_total": 1000.0,
        "twice_lost": 0.0,
        "late_payment_share": 0.0,
        "overdue_unpaid_amount": 0.0,
        "returned_recently": 0.0,
        "is_new": 0.0,
        "open_complaint_severity_max": math.nan,
    }
    row.update(overrides)
    return row


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame([{**r, "client_id": r.get("client_id", f"c{i}")} for i, r in enumerate(rows)])


def test_value_formula_by_hand() -> None:
    # span = 730 - 0 days = 2 years -> yearly margin 500.34; multiplier 1/1.1 + 0.6/1.21 = 1.404959
    value = compute_value(np.array([1000.0]), np.array([730.0]), np.array([0.0]), PARAMS)
    assert value_multiplier(PARAMS) == pytest.approx(1 / 1.1 + 0.6 / 1.21)
    assert value[0] == pytest.approx(1000 / (730 / 365.25) * (1 / 1.1 + 0.6 / 1.21))


def test_value_floors_the_span_and_is_zero_without_orders() -> None:
    # One order 10 days ago: span floored at 180 days, not 0.
    value = compute_value(
        np.array([100.0, math.nan]), np.array([10.0, math.nan]), np.array([10.0, math.nan]), PARAMS
    )
    assert value[0] == pytest.approx(100 / (180 / 365.25) * value_multiplier(PARAMS))
    assert value[1] == 0.0


def test_value_classes_by_share_of_total_value() -> None:
    # Shares of value ranked above: 0, .60, .85, .93, .97 -> A A B B C; non-positive -> C.
    value = np.array([8.0, 60.0, 25.0, 4.0, 3.0, -5.0, 0.0])
    ids = np.array(["d", "a", "b", "c", "e", "f", "g"], dtype=object)
    assert classify_value(value, ids, PARAMS).tolist() == ["B", "A", "A", "B", "C", "C", "C"]


def test_twice_lost_client_is_excluded_from_winback_only() -> None:
    plan = plan_campaigns(
        frame(client(state="lapsed_180", twice_lost=1.0), client(state="active", twice_lost=1.0)), PARAMS
    )
    assert plan.excluded_reason.tolist() == ["twice_lost", ""]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"late_payment_share": 0.75}, "bad_payer"),
        ({"overdue_unpaid_amount": 1500.0}, "bad_payer"),
        ({"margin_total": -20.0}, "unprofitable"),
        ({"do_not_contact": True}, "do_not_contact"),
        ({"do_not_contact": True, "margin_total": -20.0, "twice_lost": 1.0}, "do_not_contact"),
        ({"late_payment_share": 0.5, "overdue_unpaid_amount": 1000.0}, ""),  # at the thresholds: fine
    ],
)
@pytest.mark.parametrize("state", ["active", "lapsed_90"])
def test_exclusions_name_their_reason(overrides: dict[str, object], reason: str, state: str) -> None:
    plan = plan_campaigns(frame(client(state=state, **overrides)), PARAMS)
    assert plan.excluded_reason.tolist() == [reason]
    _, campaign, excluded = assign_campaigns(plan, np.array([0]), np.array([0.9]))
    assert campaign.tolist() == (["none"] if reason else ["prevention" if state == "active" else "winback"])
    assert excluded.tolist() == [reason]


def test_tiers_get_their_escalating_offers() -> None:
    plan = plan_campaigns(
        frame(client(state="lapsed_90"), client(state="lapsed_180"), client(state="lapsed_360")), PARAMS
    )
    assert plan.tier.tolist() == ["lapsed_90", "lapsed_180", "lapsed_360"]
    assert plan.offer.tolist() == [PARAMS.winback_offers[t].offer for t in plan.tier]
    assert plan.offer_cost.tolist() == [10.0, 40.0, 120.0]


def test_prevention_offer_follows_the_value_class() -> None:
    plan = plan_campaigns(
        frame(client(margin_total=850.0), client(margin_total=110.0), client(margin_total=40.0)), PARAMS
    )
    assert plan.value_class.tolist() == ["A", "B", "C"]
    assert plan.offer.tolist() == [PARAMS.prevention_offers[c].offer for c in ("A", "B", "C")]


def test_lost_and_no_order_clients_get_no_model_and_no_offer() -> None:
    plan = plan_campaigns(
        frame(client(state="lost"), client(state="no_order", margin_total=math.nan)), PARAMS
    )
    assert plan.model_kind.tolist() == ["", ""]
    priority, campaign, excluded = assign_campaigns(plan, np.array([0, 1]), np.array([math.nan, math.nan]))
    assert campaign.tolist() == ["none", "none"]
    assert np.isnan(priority).all()
    assert excluded.tolist() == ["", ""]


def test_priorities_by_hand_and_only_positive_ones_are_listed() -> None:
    rows = frame(
        client(state="active"),
        client(state="lapsed_90"),
        client(state="lapsed_360", margin_total=10.0),  # tiny value: the 120 offer cost makes it negative
    )
    plan = plan_campaigns(rows, PARAMS)
    p = np.array([0.3, 0.5, 0.5])
    priority, campaign, excluded = assign_campaigns(plan, np.arange(3), p)
    assert priority[0] == pytest.approx(0.3 * plan.value[0])
    assert priority[1] == pytest.approx(0.5 * plan.value[1] - 10.0)
    assert priority[2] == pytest.approx(0.5 * plan.value[2] - 120.0) and priority[2] < 0
    assert campaign.tolist() == ["prevention", "winback", "none"]
    assert excluded.tolist() == ["", "", "non_positive_priority"]


def test_lists_are_sorted_by_priority() -> None:
    scores = pd.DataFrame(
        {
            "client_id": ["a", "b", "c", "d"],
            "cutoff_at": pd.Timestamp("2025-01-01", tz="UTC"),
            "campaign": ["winback", "winback", "prevention", "winback"],
            "state": ["lapsed_90", "lapsed_180", "active", "lapsed_90"],
            "churn_probability": [math.nan, math.nan, 0.4, math.nan],
            "winback_probability": [0.2, 0.6, math.nan, 0.3],
            "priority": [50.0, 300.0, 10.0, 120.0],
            **{
                c: ["x"] * 4
                for c in (
                    "value_class",
                    "offer",
                    "tier",
                    "flags",
                    "avoid_manager_id",
                    "suggested_manager_id",
                    "reason_1",
                    "reason_2",
                    "reason_3",
                    "churn_model_version",
                    "winback_model_version",
                )
            },
            "value": [1.0] * 4,
            "offer_cost": [1.0] * 4,
        }
    )
    winback = campaign_list(scores, "winback")
    assert winback["client_id"].tolist() == ["b", "d", "a"]
    assert winback["cutoff_at"].tolist() == ["2025-01-01"] * 3
    assert campaign_list(scores, "prevention")["client_id"].tolist() == ["c"]


def test_avoid_manager_is_the_manager_at_loss_and_suggestion_is_another() -> None:
    rows = frame(
        # book: m1 holds 4 clients, m2 holds 2, m3 holds 1 (retail); m9 holds the only wholesale one
        client(manager_id="m1"),
        client(manager_id="m1"),
        client(state="lapsed_90", manager_id="m1", loss_manager_id="m3"),
        client(manager_id="m2"),
        client(state="lapsed_180", manager_id="m2", loss_manager_id="m2"),
        client(manager_id="m3"),
        client(state="lapsed_360", manager_id="m9", segment="wholesale", loss_manager_id="m9"),
        client(state="lapsed_90", manager_id="m1", loss_manager_id=None),
    )
    plan = plan_campaigns(rows, PARAMS)
    assert plan.avoid_manager_id.tolist() == [None, None, "m3", None, "m2", None, "m9", "m1"]
    # Same value for all: handed out by client id. c2 avoids m3 (load 1) -> m2 (2 -> 3); c4 avoids
    # m2 -> m3 (1 -> 2); c7 avoids m1 -> m3 (2 -> 3); c6 (wholesale) has no other manager.
    assert plan.suggested_manager_id.tolist() == [None, None, "m2", None, "m3", None, None, "m3"]
    for avoid, suggested in zip(plan.avoid_manager_id, plan.suggested_manager_id, strict=True):
        assert suggested is None or suggested != avoid


def test_manager_suggestions_balance_the_load_in_value_order() -> None:
    out = suggest_managers(
        manager_id=np.array(["a", "b", "b", None, None, None, None], dtype=object),
        segment=np.array(["s"] * 7, dtype=object),
        avoid_manager_id=np.array([None, None, None, "a", None, None, "b"], dtype=object),
        needs=np.array([False, False, False, True, True, True, True]),
        value=np.array([0, 0, 0, 40.0, 30.0, 20.0, 10.0]),
        client_id=np.array(["x", "y", "z", "w1", "w2", "w3", "w4"], dtype=object),
    )
    # loads a=1, b=2. w1 (avoid a) -> b (3); w2 -> a (2); w3 -> a (3); w4 (avoid b) -> a (4)
    assert out.tolist() == [None, None, None, "b", "a", "a", "a"]


def test_flags() -> None:
    plan = plan_campaigns(
        frame(
            client(returned_recently=1.0),
            client(state="new", days_since_first_order=30.0),
            client(open_complaint_severity_max=4.0),
            client(open_complaint_severity_max=3.0),
        ),
        PARAMS,
    )
    assert plan.returned_client.tolist() == [True, False, False, False]
    assert plan.new_client.tolist() == [False, True, False, False]
    assert plan.open_severe_complaint.tolist() == [False, False, True, False]


def test_missing_column_is_named() -> None:
    rows = frame(client()).drop(columns=["late_payment_share"])
    with pytest.raises(ContractError, match="'late_payment_share'"):
        plan_campaigns(rows, PARAMS)
    assert "late_payment_share" in PLAN_COLUMNS


def test_params_reject_typos_and_non_escalating_offers() -> None:
    with pytest.raises(ValidationError, match="horizon_yeras"):
        ScoreParams.model_validate({"horizon_yeras": 3})
    offers = {
        t: {"offer": "x", "cost": c} for t, c in (("lapsed_90", 50), ("lapsed_180", 40), ("lapsed_360", 120))
    }
    with pytest.raises(ValidationError, match="escalate"):
        ScoreParams.model_validate({"winback_offers": offers})
    with pytest.raises(ValidationError, match="below 1"):
        ScoreParams.model_validate({"class_a_value_share": 0.9, "class_b_value_share": 0.2})


STATES = ["new", "active", "lapsed_90", "lapsed_180", "lapsed_360", "lost", "no_order"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(STATES),
            st.floats(-500, 5000),  # margin_total: negative ones are unprofitable
            st.booleans(),  # do_not_contact
            st.booleans(),  # twice_lost
            st.floats(0, 1),  # late_payment_share: bad payers over the threshold
            st.one_of(st.floats(0, 1), st.just(math.nan)),  # probability (NaN: no model applies)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_single_row_rules_are_the_batch_rules(
    clients: list[tuple[str, float, bool, bool, float, float]],
) -> None:
    """assign_campaign_one (the API's single client) gives assign_campaigns' numbers and labels."""
    rows = frame(
        *(
            client(
                state=state,
                margin_total=margin,
                do_not_contact=dnc,
                twice_lost=float(twice),
                late_payment_share=late,
                recency_days=100.0 if state.startswith("lapsed") else 20.0,
            )
            for state, margin, dnc, twice, late, _ in clients
        )
    )
    plan = plan_campaigns(rows, PARAMS)
    p = np.array([c[5] if plan.model_kind[i] else math.nan for i, c in enumerate(clients)])
    priority, campaign, excluded = assign_campaigns(plan, np.arange(len(clients)), p)
    for i in range(len(clients)):
        one = assign_campaign_one(plan, i, float(p[i]))
        assert one[1:] == (campaign[i], excluded[i])
        assert (math.isnan(one[0]) and math.isnan(priority[i])) or one[0] == priority[i]
