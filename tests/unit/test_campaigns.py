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
from serving.batch import campaign_list, list_warnings, summarize_value_basis
from serving.campaigns import (
    PLAN_COLUMNS,
    NoValueError,
    assign_campaign_one,
    assign_campaigns,
    plan_campaigns,
    require_usable_value,
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
        "amount_total": 4000.0,
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
    valued = compute_value(np.array([1000.0]), np.array([4000.0]), np.array([730.0]), np.array([0.0]), PARAMS)
    assert value_multiplier(PARAMS) == pytest.approx(1 / 1.1 + 0.6 / 1.21)
    assert valued.value[0] == pytest.approx(1000 / (730 / 365.25) * (1 / 1.1 + 0.6 / 1.21))
    assert valued.basis.tolist() == ["margin"]


def test_value_floors_the_span_and_is_zero_without_orders() -> None:
    # One order 10 days ago: span floored at 180 days, not 0.
    valued = compute_value(
        np.array([100.0, 0.0]),
        np.array([400.0, 0.0]),
        np.array([10.0, math.nan]),
        np.array([10.0, math.nan]),
        PARAMS,
    )
    assert valued.value[0] == pytest.approx(100 / (180 / 365.25) * value_multiplier(PARAMS))
    assert valued.value[1] == 0.0
    assert valued.basis.tolist() == ["margin", "none"]


def test_value_falls_back_to_revenue_times_the_default_margin_rate() -> None:
    # Margin unknown: 4000 revenue x 0.3 = 1200 over a 730-day span; known margins keep their basis,
    # and a client without a completed order has none whatever its totals say.
    valued = compute_value(
        np.array([math.nan, 500.0, 0.0]),
        np.array([4000.0, 4000.0, 0.0]),
        np.array([730.0, 730.0, math.nan]),
        np.array([0.0, 0.0, math.nan]),
        PARAMS,
    )
    assert valued.basis.tolist() == ["revenue", "margin", "none"]
    assert valued.value[0] == pytest.approx(4000 * 0.3 / (730 / 365.25) * value_multiplier(PARAMS))
    assert valued.value[1] == pytest.approx(500 / (730 / 365.25) * value_multiplier(PARAMS))
    assert valued.value[2] == 0.0


def test_no_default_margin_rate_means_no_value_without_margin() -> None:
    refuse = ScoreParams(default_margin_rate=None)
    valued = compute_value(
        np.array([math.nan]), np.array([4000.0]), np.array([730.0]), np.array([0.0]), refuse
    )
    assert valued.basis.tolist() == ["none"] and valued.value.tolist() == [0.0]
    plan = plan_campaigns(frame(client(margin_total=math.nan), client(state="lapsed_90")), refuse)
    assert plan.value_basis.tolist() == ["none", "margin"]
    assert plan.excluded_reason.tolist() == ["unknown_value", ""]


def test_clients_without_margin_get_a_value_and_reach_the_lists() -> None:
    rows = frame(client(margin_total=math.nan), client(state="lapsed_90", margin_total=math.nan))
    plan = plan_campaigns(rows, PARAMS)
    assert plan.value_basis.tolist() == ["revenue", "revenue"]
    # span 380 days; value = 4000 x 0.3 / (380 / 365.25) x 1.405
    assert plan.value[0] == pytest.approx(1200 / (380 / 365.25) * value_multiplier(PARAMS))
    _, campaign, excluded = assign_campaigns(plan, np.arange(2), np.array([0.4, 0.4]))
    assert campaign.tolist() == ["prevention", "winback"]
    assert excluded.tolist() == ["", ""]


def test_unknown_margin_is_never_unprofitable() -> None:
    strict = ScoreParams(unprofitable_margin_below=50.0)
    plan = plan_campaigns(frame(client(margin_total=math.nan), client(margin_total=20.0)), strict)
    assert plan.excluded_reason.tolist() == ["", "unprofitable"]


def test_no_usable_value_names_the_missing_column_and_parameter() -> None:
    no_margin = frame(client(margin_total=math.nan), client(state="lapsed_180", margin_total=math.nan))
    refuse = ScoreParams(default_margin_rate=None)
    with pytest.raises(
        NoValueError, match=r"'margin_total' is null for all 2 .*score\.default_margin_rate is null"
    ):
        require_usable_value(plan_campaigns(no_margin, refuse), refuse)
    require_usable_value(plan_campaigns(no_margin, PARAMS), PARAMS)  # valued on revenue: fine
    losing = frame(client(margin_total=-10.0), client(margin_total=0.0), client(state="lost"))
    with pytest.raises(NoValueError, match=r"none of the 2 churn and win-back clients has a positive value"):
        require_usable_value(plan_campaigns(losing, PARAMS), PARAMS)
    # Nobody to address at all: nothing to value, the batch reports the empty lists instead.
    require_usable_value(plan_campaigns(frame(client(state="lost")), PARAMS), PARAMS)


def scored(model: list[str], campaign: list[str], excluded: list[str]) -> pd.DataFrame:
    """A minimal scores frame: what the warnings and the basis summary read."""
    return pd.DataFrame({"model": model, "campaign": campaign, "excluded_reason": excluded})


def test_an_empty_list_and_a_mostly_unlisted_population_are_warned_about() -> None:
    # prevention: 3 churn clients, none listed; win-back: 9 of 10 left out (90% > 80%).
    scores = scored(
        ["churn"] * 3 + ["winback"] * 10 + [""],
        ["none"] * 3 + ["winback"] + ["none"] * 9 + ["none"],
        ["non_positive_priority", "non_positive_priority", "do_not_contact", ""]
        + ["twice_lost"] * 2
        + ["non_positive_priority"] * 7
        + [""],
    )
    warnings = list_warnings(scores, PARAMS)
    assert [(w["list"], w["problem"]) for w in warnings] == [
        ("prevention", "empty"),
        ("winback", "most_not_listed"),
    ]
    assert warnings[0]["not_listed_by_reason"] == {"non_positive_priority": 2, "do_not_contact": 1}
    assert (warnings[0]["population"], warnings[0]["listed"], warnings[0]["not_listed"]) == (3, 0, 3)
    assert warnings[1]["not_listed_share"] == 0.9
    assert warnings[1]["not_listed_by_reason"] == {"non_positive_priority": 7, "twice_lost": 2}
    assert "prevention list is empty: 3 of 3" in warnings[0]["message"]
    assert "non_positive_priority 2, do_not_contact 1" in warnings[0]["message"]
    assert "leaves out 90%" in warnings[1]["message"]
    # At or below the share, a non-empty list is quiet.
    assert list_warnings(scores, ScoreParams(max_unlisted_share=0.9))[1:] == []


def test_a_list_without_any_population_is_still_reported_empty() -> None:
    warnings = list_warnings(scored(["churn"], ["prevention"], [""]), PARAMS)
    assert [(w["list"], w["population"]) for w in warnings] == [("winback", 0)]
    assert "no such client at the cutoff" in warnings[0]["message"]


def test_value_basis_is_counted_overall_and_per_list() -> None:
    scores = scored(["churn", "churn", "winback", ""], ["prevention", "none", "winback", "none"], [""] * 4)
    basis = np.array(["revenue", "margin", "revenue", "none"], dtype=object)
    summary = summarize_value_basis(scores, basis, PARAMS)
    assert summary == {
        "default_margin_rate": 0.3,
        "clients": {"margin": 1, "revenue": 2, "none": 1},
        "listed": {
            "prevention": {"margin": 0, "revenue": 1, "none": 0},
            "winback": {"margin": 0, "revenue": 1, "none": 0},
        },
    }


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
    assert ScoreParams.model_validate({"default_margin_rate": None}).default_margin_rate is None
    with pytest.raises(ValidationError, match="default_margin_rate"):
        ScoreParams.model_validate({"default_margin_rate": 0.0})
    with pytest.raises(ValidationError, match="max_unlisted_share"):
        ScoreParams.model_validate({"max_unlisted_share": 1.5})


STATES = ["new", "active", "lapsed_90", "lapsed_180", "lapsed_360", "lost", "no_order"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(STATES),
            st.one_of(st.floats(-500, 5000), st.just(math.nan)),  # margin_total (NaN: unknown)
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
