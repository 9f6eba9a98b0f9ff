"""Reasons in words: every model input has a template, and a reason argues for the score or is not said."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.contract import FEATURE_COLUMNS
from serving.reasons import (
    KINDS,
    TEMPLATES,
    Absence,
    PeerStats,
    ReasonRenderer,
    Template,
    peer_stats,
    template_table_markdown,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
INDEX = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
RENDERER = ReasonRenderer()


def row_of(**given_values: float) -> list[float]:
    """A client's values in FEATURE_COLUMNS order; the ones not given are unknown (NaN)."""
    v = dict.fromkeys(FEATURE_COLUMNS, math.nan)
    v.update(given_values)
    return [v[f] for f in FEATURE_COLUMNS]


def stats(median: dict[str, float] | None = None, share: float = 0.4, other: float = math.nan) -> PeerStats:
    """Comparable clients whose median is ``median`` (``other`` elsewhere), every share ``share``."""
    m = np.full(len(FEATURE_COLUMNS), other)
    for name, value in (median or {}).items():
        m[INDEX[name]] = value
    shares = np.full(len(FEATURE_COLUMNS), share)
    return PeerStats(median=m, known_share=shares, nonzero_share=shares, rows=1000)


def reason(kind: str, feature: str, median: float, contribution: float = 0.5, **values: float) -> str | None:
    return RENDERER.for_peers(kind, stats({feature: median})).phrase(feature, row_of(**values), contribution)


def fact(feature: str, **values: float) -> str | None:
    return RENDERER.fact(feature, row_of(**values))


def test_every_feature_has_a_template() -> None:
    missing = [f for f in FEATURE_COLUMNS if f not in TEMPLATES]
    assert missing == []
    assert set(TEMPLATES) <= set(FEATURE_COLUMNS)


def test_examples_from_the_issue() -> None:
    # the client's value against what is usual for comparable clients, in the direction of the score
    assert reason("churn", "orders_365d", 7, orders_365d=2) == (
        "2 completed orders in the last 365 days, where similar clients have 7"
    )
    assert reason("churn", "recency_days", 35.2, recency_days=140.2) == (
        "no order for 140 days, where similar clients' last order was 35 days ago"
    )
    # the rhythm model's probability is said as a risk, and only when it is one
    assert reason("churn", "alive_probability", 0.5, alive_probability=0.93) is None
    assert reason("churn", "alive_probability", 0.95, alive_probability=0.6) == (
        "40% chance it has stopped buying, given its pace and its silence, where for similar clients it is 5%"
    )
    # the reassuring side of the median is never a reason for risk
    assert reason("churn", "orders_total", 10, orders_total=17) is None
    # a missing signal: what is missing and why it matters, only when it raises the score
    assert reason("churn", "complaints_365d", 0, complaints_365d=0) == (
        "no complaint in the last 365 days (where 40% of similar clients had one), "
        "so no recent complaint was resolved to win its loyalty"
    )
    assert reason("churn", "complaints_365d", 0, -0.5, complaints_365d=0) is None


def test_one_value_argues_in_opposite_directions_for_the_two_models() -> None:
    # long silence: churn risk for an active client, not a hope of win-back for a lapsed one
    assert reason("churn", "recency_days", 100, recency_days=200) is not None
    assert reason("winback", "recency_days", 100, recency_days=200) is None
    assert reason("winback", "recency_days", 300, recency_days=120, gap_mean_days=25) == (
        "no order for 120 days (usually every 25 days), where similar clients' last order was 300 days ago"
    )
    assert reason("churn", "recency_days", 300, recency_days=120) is None
    assert reason("winback", "alive_probability", 0.01, alive_probability=0.3) == (
        "70% chance it has stopped buying, given its pace and its silence, "
        "where for similar clients it is 99%"
    )


def _own_format(feature: str) -> str | None:
    """The format of the feature's own placeholder in its fact; None for a flag (no number)."""
    for text in TEMPLATES[feature].texts:
        for name, spec in re.findall(r"\{(\w+)(?:\|([^}]+))?\}", text):
            if name == feature:
                return str(spec or "x.y")
    return None


def _cases(feature: str) -> list[tuple[float, float]]:
    """(median of similar clients, client's value) pairs on both sides of the median."""
    spec = _own_format(feature)
    if spec is None:
        return [(0.0, 1.0), (1.0, 0.0)]
    median, below, above = {
        "pct": (0.5, 0.2, 0.8),
        "1-pct": (0.5, 0.2, 0.8),
        "logchange": (0.5, -0.5, 1.5),
        "severity": (3.0, 1.0, 5.0),
    }.get(spec, (1.0, -2.0, 4.0) if spec.startswith("change:") else (20.0, 5.0, 60.0))
    return [(median, below), (median, above)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("feature", FEATURE_COLUMNS)
def test_a_phrase_says_its_direction_only_when_the_contribution_agrees(feature: str, kind: str) -> None:
    """The issue's test: for every template and model, values on both sides of the median and
    contributions of both signs; the phrase says the client's fact and the comparable median,
    and exists exactly when the value is on the side that raises the score and the contribution
    is positive."""
    side = TEMPLATES[feature].raises.get(kind)
    others = {f: 10.0 for f in FEATURE_COLUMNS if f != feature}  # the other values a phrase names
    for median, value in _cases(feature):
        reasons = RENDERER.for_peers(kind, stats({feature: median}, other=10.0))
        row = row_of(**{**others, feature: value})
        raises = (side == "higher" and value > median) or (side == "lower" and value < median)
        for contribution in (0.4, -0.4):
            got = reasons.phrase(feature, row, contribution)
            if raises and contribution > 0:
                assert got is not None, (feature, kind, median, value)
                own = RENDERER.fact(feature, row)
                assert own is not None and got.startswith(own + ", where "), got
                assert "similar client" in got.removeprefix(own)
            else:
                assert got is None, (feature, kind, median, value, contribution, got)
        # at the median there is nothing to say, whatever the sign
        at = row_of(**{**others, feature: median})
        assert reasons.phrase(feature, at, 0.4) is None or TEMPLATES[feature].absent.get(kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("feature", FEATURE_COLUMNS)
def test_an_absent_signal_is_said_with_why_it_matters_or_not_at_all(feature: str, kind: str) -> None:
    tpl = TEMPLATES[feature]
    absent = 0.0 if tpl.absent_when == "zero" else math.nan
    median = 0.0 if tpl.absent_when == "zero" else 20.0  # nothing to compare: only an absence can be said
    row = row_of(**{f: 10.0 for f in FEATURE_COLUMNS if f != feature}, **{feature: absent})
    absence = tpl.absent.get(kind)
    for share in (0.4, 0.0):
        reasons = RENDERER.for_peers(kind, stats({feature: median}, share=share, other=10.0))
        got = reasons.phrase(feature, row, 0.4)
        if absence is None or share == 0.0:  # nobody similar has it: nothing this client lacks
            assert got is None, (feature, kind, got)
        else:
            assert got == absence.text.replace("{share}", "40%")
            assert ", so " in got  # why it matters
        assert reasons.phrase(feature, row, -0.4) is None


def test_no_phrase_when_the_numbers_read_the_same() -> None:
    assert reason("churn", "amount_365d", 1054.2, amount_365d=1053.9) is None  # both "1,054"
    assert reason("churn", "amount_365d", 1054.2, amount_365d=1003) == (
        "bought for 1,003 in the last 365 days, where similar clients bought for 1,054"
    )
    # both pay by the due date (under half a day late): no comparison to make
    assert reason("churn", "payment_delay_mean_days", 0.2, payment_delay_mean_days=0.4) is None
    assert reason("churn", "payment_delay_mean_days", 0.2, payment_delay_mean_days=2.6) == (
        "pays 3 days after the due date on average, where similar clients pay by the due date"
    )
    assert reason("winback", "complaints_total", 2, complaints_total=0) == (
        "never complained, where similar clients have 2 complaints"
    )


def test_unknown_median_gives_no_comparison() -> None:
    assert reason("churn", "orders_365d", math.nan, orders_365d=2) is None


def test_facts_carry_values_and_units() -> None:
    assert fact("recency_days", recency_days=140.2, gap_mean_days=30.4) == (
        "no order for 140 days (usually every 30 days)"
    )
    assert fact("recency_days", recency_days=95) == "no order for 95 days"  # gap unknown: shorter phrase
    assert fact("recency_days") is None
    assert fact(
        "open_complaint_severity_max", open_complaint_severity_max=4, days_since_last_complaint=12
    ) == ("open complaint, severity 4, 12 days old")
    assert fact("late_payments_365d", late_payments_365d=3) == "3 late payments this year"
    assert fact("late_payments_365d", late_payments_365d=0) == "no late payment this year"
    assert fact("late_payments_365d", late_payments_365d=1) == "1 late payment this year"
    assert fact("twice_lost", twice_lost=1) == "lost at least twice before"
    assert fact("complaint_severity_max", complaint_severity_max=5) == (
        "worst complaint: severity 5 (end of the world)"
    )
    assert fact("late_payment_share", late_payment_share=0.456) == "46% of invoices paid late"
    assert fact("overdue_unpaid_amount", overdue_unpaid_amount=12345.6) == "12,346 overdue and unpaid"
    assert fact("days_since_last_complaint", days_since_last_complaint=1) == "last complaint 1 day ago"
    assert fact("payment_delay_mean_days", payment_delay_mean_days=0.3) == "pays by the due date on average"
    assert fact("payment_delay_mean_days", payment_delay_mean_days=2.6) == (
        "pays 3 days after the due date on average"
    )
    assert fact("alive_probability", alive_probability=0.93) == (
        "7% chance it has stopped buying, given its pace and its silence"
    )


def test_signed_changes_and_near_zero_values_read_as_words() -> None:
    # a trend is a signed difference or a log ratio: never "trend: -2.0"
    assert fact("orders_trend_90d", orders_trend_90d=-2) == (
        "2 fewer completed orders in the last 90 days than in the 90 before"
    )
    assert fact("orders_trend_90d", orders_trend_90d=1) == (
        "1 more completed order in the last 90 days than in the 90 before"
    )
    assert str(fact("orders_trend_90d", orders_trend_90d=0)).startswith("as many completed orders")
    assert reason("churn", "orders_trend_90d", 0, orders_trend_90d=-2) == (
        "2 fewer completed orders in the last 90 days than in the 90 before, where similar clients have "
        "as many orders"
    )
    assert fact("amount_trend_90d", amount_trend_90d=math.log(0.55)) == (
        "spending down 45% in the last 90 days against the 90 before"
    )
    assert str(fact("amount_trend_90d", amount_trend_90d=math.log(2.5))).startswith("spending up 150%")
    assert str(fact("amount_trend_90d", amount_trend_90d=0.001)).startswith("spending flat")
    # a decayed count of 0.03 is "hardly any", not "0.0 recent orders"; unknown is not "zero"
    assert fact("decayed_orders_30d", decayed_orders_30d=0.03) == "hardly any buying in recent weeks"
    assert reason("churn", "decayed_orders_30d", 0.7, decayed_orders_30d=0.03) == (
        "hardly any buying in recent weeks, where similar clients have 0.7"
    )
    assert fact("decayed_orders_30d", decayed_orders_30d=1.52) == (
        "recent buying: 1.5 orders in recent weeks, older ones counting less"
    )
    assert fact("decayed_orders_90d") is None
    assert (
        fact("returned_amount_90d", returned_amount_90d=694) == "returned goods worth 694 in the last 90 days"
    )


def test_unknown_feature_placeholder_or_direction_is_an_error() -> None:
    with pytest.raises(KeyError, match="no reason template for feature 'nope'"):
        RENDERER.fact("nope", row_of())
    with pytest.raises(KeyError, match="no reason template for feature 'nope'"):
        RENDERER.for_peers("churn", stats()).render_distinct(["nope"], row_of(), 3)
    with pytest.raises(ValueError, match="unknown feature 'not_a_feature'"):
        ReasonRenderer({"recency_days": Template(("x {not_a_feature|days}",))})
    with pytest.raises(ValueError, match="unknown reason format 'weird'"):
        ReasonRenderer({"recency_days": Template(("x {recency_days|weird}",))})
    with pytest.raises(ValueError, match="may only name"):
        ReasonRenderer({"recency_days": Template(("x",), peer="where {recency_days|days}")})
    with pytest.raises(ValueError, match="raises 'prevention'"):
        ReasonRenderer({"recency_days": Template(("x",), raises={"prevention": "higher"})})
    with pytest.raises(ValueError, match="may only name"):
        ReasonRenderer({"recency_days": Template(("x",), absent={"churn": Absence("{median} of them")})})
    with pytest.raises(ValueError, match="unknown model kind 'lapsed'"):
        RENDERER.for_peers("lapsed", stats())


@given(
    feature=st.sampled_from(FEATURE_COLUMNS),
    kind=st.sampled_from(KINDS),
    value=st.one_of(st.just(0.0), st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False)),
    median=st.one_of(st.just(0.0), st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False)),
    other=st.one_of(st.just(math.nan), st.floats(0, 1e4)),
)
def test_phrases_never_show_raw_feature_names(
    feature: str, kind: str, value: float, median: float, other: float
) -> None:
    row = [other] * len(FEATURE_COLUMNS)
    row[INDEX[feature]] = value
    phrase = RENDERER.for_peers(kind, stats({feature: median}, other=other)).phrase(feature, row, 1.0)
    if phrase is None:
        return
    assert "{" not in phrase and "}" not in phrase
    assert not any(name in phrase for name in FEATURE_COLUMNS)
    assert "similar client" in phrase  # every reason says what is usual for comparable clients


def test_docs_carry_the_template_table() -> None:
    assert template_table_markdown() in DOCS.read_text(encoding="utf-8")


def test_peer_stats_lower_median_and_shares() -> None:
    matrix = np.full((6, len(FEATURE_COLUMNS)), np.nan)
    j, k = INDEX["orders_365d"], INDEX["complaints_total"]
    matrix[:, j] = [1, 4, 2, 9, np.nan, 3]
    matrix[:, k] = [0, 0, 1, 0, 2, 0]
    got = peer_stats(matrix, np.array([0, 1, 2, 3, 4]))
    assert got.rows == 5
    assert got.median[j] == 2.0  # lower median of 1, 2, 4, 9 (the unknown row left out)
    assert got.known_share[j] == pytest.approx(0.8)
    assert got.median[k] == 0.0 and got.nonzero_share[k] == pytest.approx(0.4)
    assert math.isnan(got.median[INDEX["recency_days"]]) and got.known_share[INDEX["recency_days"]] == 0
    empty = peer_stats(matrix, np.array([], dtype=np.int64))
    assert empty.rows == 0 and np.isnan(empty.median).all()
    # above max_rows: evenly spaced rows, first and last included, the same on every call
    big = np.arange(1000, dtype=np.float64)[:, None] * np.ones((1, len(FEATURE_COLUMNS)))
    sampled = peer_stats(big, np.arange(1000), max_rows=11)
    assert sampled.rows == 11 and sampled.median[0] == 500.0


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


def test_one_phrase_per_fact_and_the_next_candidate_fills_the_slot() -> None:
    peers = stats(
        {
            "open_complaints": 0,
            "open_complaint_severity_max": 0,
            "orders_total": 10,
            "late_payments_365d": 0,
            "complaints_total": 0,
        }
    )
    row = row_of(
        open_complaints=1,
        open_complaint_severity_max=4,
        days_since_last_complaint=12,
        orders_total=17,  # more than similar clients: no reason for churn risk
        late_payments_365d=3,
        complaints_total=1,
    )
    candidates = (
        "open_complaints open_complaint_severity_max orders_total late_payments_365d complaints_total"
    )
    assert RENDERER.for_peers("churn", peers).render_distinct(candidates.split(), row, k=2) == [
        "1 open complaint, worst severity 4 (catastrophe), where similar clients have none open",
        "3 late payments this year, where similar clients have none",
    ]


def test_unresolved_complaints_are_said_once() -> None:
    # every complaint still open: the share and the last complaint tell one fact
    peers = stats({"resolved_complaint_share": 1.0, "last_complaint_resolved": 1.0, "late_payments_365d": 0})
    row = row_of(
        complaints_total=2,
        resolved_complaint_share=0,
        last_complaint_resolved=0,
        days_since_last_complaint=20,
        late_payments_365d=1,
    )
    candidates = (
        "resolved_complaint_share complaint_resolve_days_mean last_complaint_resolved late_payments_365d"
    )
    assert RENDERER.for_peers("churn", peers).render_distinct(candidates.split(), row, k=3) == [
        "none of its complaints resolved yet, where similar clients have 100% resolved",
        "1 late payment this year, where similar clients have none",
    ]
