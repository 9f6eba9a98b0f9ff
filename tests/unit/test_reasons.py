"""Reasons in words: every model input has a template, phrases carry values and units."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.contract import FEATURE_COLUMNS
from serving.reasons import TEMPLATES, ReasonRenderer, Template, template_table_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def values(**given_values: float) -> dict[str, float]:
    out = dict.fromkeys(FEATURE_COLUMNS, math.nan)
    out.update(given_values)
    return out


def render(feature: str, **given_values: float) -> str:
    v = values(**given_values)
    return ReasonRenderer().render(feature, v.__getitem__)


def test_every_feature_has_a_template() -> None:
    missing = [f for f in FEATURE_COLUMNS if f not in TEMPLATES]
    assert missing == []
    assert set(TEMPLATES) <= set(FEATURE_COLUMNS)


def test_examples_from_the_issue() -> None:
    assert render("recency_days", recency_days=140.2, gap_mean_days=30.4) == (
        "no order for 140 days; usually orders every 30"
    )
    assert render(
        "open_complaint_severity_max", open_complaint_severity_max=4, days_since_last_complaint=12
    ) == ("open complaint, severity 4, 12 days old")
    assert render("late_payments_365d", late_payments_365d=3) == "3 late payments this year"


def test_alternatives_zero_and_missing() -> None:
    assert render("recency_days", recency_days=95) == "no order for 95 days"  # gap unknown: shorter phrase
    assert render("recency_days") == "no completed order yet"
    assert render("late_payments_365d", late_payments_365d=0) == "no late payment this year"
    assert render("late_payments_365d", late_payments_365d=1) == "1 late payment this year"
    assert render("twice_lost", twice_lost=1) == "lost at least twice before"
    assert (
        render("complaint_severity_max", complaint_severity_max=5)
        == "worst complaint: severity 5 (end of the world)"
    )
    assert render("late_payment_share", late_payment_share=0.456) == "46% of invoices paid late"
    assert render("overdue_unpaid_amount", overdue_unpaid_amount=12345.6) == "12,346 overdue and unpaid"
    assert render("days_since_last_complaint", days_since_last_complaint=1) == "last complaint 1 day ago"
    assert render("payment_delay_mean_days", payment_delay_mean_days=0.3) == "pays by the due date on average"
    assert render("payment_delay_mean_days", payment_delay_mean_days=2.6) == (
        "pays 3 days after the due date on average"
    )


def test_signed_changes_and_near_zero_values_read_as_words() -> None:
    # a trend is a signed difference or a log ratio: never "trend: -2.0"
    assert render("orders_trend_90d", orders_trend_90d=-2) == (
        "2 fewer completed orders in the last 90 days than in the 90 before"
    )
    assert render("orders_trend_90d", orders_trend_90d=1) == (
        "1 more completed order in the last 90 days than in the 90 before"
    )
    assert render("orders_trend_90d", orders_trend_90d=0).startswith("as many completed orders")
    assert render("amount_trend_90d", amount_trend_90d=math.log(0.55)) == (
        "spending down 45% in the last 90 days against the 90 before"
    )
    assert render("amount_trend_90d", amount_trend_90d=math.log(2.5)).startswith("spending up 150%")
    assert render("amount_trend_90d", amount_trend_90d=0.001).startswith("spending flat")
    # a decayed count of 0.03 is "hardly any", not "0.0 recent orders"; unknown is not "zero"
    assert render("decayed_orders_30d", decayed_orders_30d=0.03) == "hardly any buying in recent weeks"
    assert render("decayed_orders_30d", decayed_orders_30d=1.52) == (
        "recent buying: 1.5 orders in recent weeks, older ones counting less"
    )
    assert render("decayed_orders_90d") == "no completed order yet"
    assert render("returned_amount_90d", returned_amount_90d=694) == (
        "returned goods worth 694 in the last 90 days"
    )


def test_unknown_feature_or_placeholder_is_an_error() -> None:
    with pytest.raises(KeyError, match="no reason template for feature 'nope'"):
        ReasonRenderer().render("nope", lambda _: 1.0)
    with pytest.raises(ValueError, match="unknown feature 'not_a_feature'"):
        ReasonRenderer({"recency_days": Template(("x {not_a_feature|days}",))})
    with pytest.raises(ValueError, match="unknown reason format 'weird'"):
        ReasonRenderer({"recency_days": Template(("x {recency_days|weird}",))})


@given(
    feature=st.sampled_from(FEATURE_COLUMNS),
    value=st.one_of(st.just(0.0), st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False)),
    other=st.one_of(st.just(math.nan), st.floats(0, 1e4)),
)
def test_phrases_never_show_raw_feature_names(feature: str, value: float, other: float) -> None:
    v = dict.fromkeys(FEATURE_COLUMNS, other)
    v[feature] = value
    phrase = ReasonRenderer().render(feature, v.__getitem__)
    assert phrase
    assert "{" not in phrase and "}" not in phrase
    assert not any(name in phrase for name in FEATURE_COLUMNS)


def test_docs_carry_the_template_table() -> None:
    assert template_table_markdown() in DOCS.read_text(encoding="utf-8")


def _tiny_booster() -> tuple[object, np.ndarray, list[str]]:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 2]) + rng.normal(0, 0.5, 800) > 0).astype(int)
    names = ["recency_days", "orders_90d", "late_payment_share", "complaints_90d", "margin_total"]
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 7,
            "verbosity": -1,
            "num_threads": 1,
            "deterministic": True,
            "seed": 1,
        },
        lgb.Dataset(X, y, feature_name=names),
        num_boost_round=25,
    )
    return booster, X, names


def test_path_contributions_sum_to_the_raw_score_and_agree_row_by_row() -> None:
    from serving.explain import PathExplainer

    booster, X, names = _tiny_booster()
    explainer = PathExplainer.from_booster(booster, names)
    contrib = explainer.contributions(booster, X)
    raw = booster.predict(X, raw_score=True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(contrib.sum(axis=1) + explainer.bias, raw, atol=1e-10)
    # One row at a time (the API) gives exactly what the batch gives.
    singles = np.vstack([explainer.contributions(booster, X[i : i + 1]) for i in range(50)])
    np.testing.assert_array_equal(singles, contrib[:50])
    top = explainer.top_features(contrib, 3)
    for row, cols in zip(contrib, top, strict=True):
        values = [row[c] for c in cols]
        assert values == sorted(values, reverse=True)
        assert all(v > 0 for v in values)
        assert len(cols) == min(3, int((row > 0).sum()))
    # The planted effects lead: feature 0 is the top reason of most rows where it pushes up.
    assert np.mean([cols[0] == 0 for cols in top if cols]) > 0.4


def test_one_phrase_per_fact() -> None:
    row = values(
        open_complaints=1, open_complaint_severity_max=4, days_since_last_complaint=12, late_payments_365d=3
    )
    phrases = ReasonRenderer().render_distinct(
        ["open_complaints", "open_complaint_severity_max", "late_payments_365d", "complaints_total"],
        [row[f] for f in FEATURE_COLUMNS],
        k=2,
    )
    assert phrases == ["1 open complaint, worst severity 4 (catastrophe)", "3 late payments this year"]


def test_unresolved_complaints_are_said_once() -> None:
    # every complaint still open: the share, the resolve time and the last complaint tell one fact
    row = values(
        complaints_total=2,
        resolved_complaint_share=0,
        last_complaint_resolved=0,
        days_since_last_complaint=20,
        late_payments_365d=1,
    )
    phrases = ReasonRenderer().render_distinct(
        [
            "resolved_complaint_share",
            "complaint_resolve_days_mean",
            "last_complaint_resolved",
            "late_payments_365d",
        ],
        [row[f] for f in FEATURE_COLUMNS],
        k=3,
    )
    assert phrases == ["none of its complaints resolved yet", "1 late payment this year"]
