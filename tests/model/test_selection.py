"""Model selection: reproducible search, candidates on the same folds, guards against useless models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.config import SearchParams
from models.dataset import default_feature_names, feature_matrix, split_frames
from models.linear import encode_linear, encoding_error, fit_linear_terms, merge_boosters
from models.selection import auc_lower_bound, guard_verdict, select_model, winner_of
from models.train import TrainedModel, fit_model
from tests.model.conftest import HORIZON_DAYS, small_params


def test_the_search_is_reproducible_for_a_seed(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    params = small_params(search=SearchParams(trials=3, seconds=600))
    a = select_model(fabricated[0], "winback", params, horizon_days=HORIZON_DAYS)
    b = select_model(fabricated[0], "winback", params, horizon_days=HORIZON_DAYS)
    assert a.record["search"]["trials"] == 3
    assert a.record["booster_params"] == b.record["booster_params"]
    assert a.record["table"] == b.record["table"]
    assert a.booster.model_to_string() == b.booster.model_to_string()
    other = select_model(
        fabricated[0],
        "winback",
        small_params(search=SearchParams(trials=3, seconds=600), seed=7),
        horizon_days=HORIZON_DAYS,
    )
    assert other.record["booster_params"] != a.record["booster_params"]


def test_every_candidate_is_scored_on_every_fold(churn_model: TrainedModel) -> None:
    sel = churn_model.selection
    folds = sel["folds"]
    assert len(folds) == 3
    assert set(sel["table"]) == {"recency", "lightgbm", "logistic_rfm", "blend"}
    for row in sel["table"].values():
        assert len(row["folds"]) == len(folds)
        assert row["mean"] == pytest.approx(np.mean(row["folds"]), abs=1e-5)
    assert sel["winner"] in {"lightgbm", "logistic_rfm", "blend"}
    # judged on the last fold, which the search (on the earlier ones) never saw
    assert sel["judged_on"] == [folds[-1]["valid_cutoff"]]
    assert sel["search"]["tuned_on"] == [f["valid_cutoff"] for f in folds[:-1]]
    judged = sel["judged"]
    assert judged["lightgbm"] == pytest.approx(sel["table"]["lightgbm"]["folds"][-1], abs=1e-5)
    best = max(("lightgbm", "blend"), key=lambda c: judged[c])
    assert judged[sel["winner"]] >= judged[best] - sel["blend_margin"]
    assert sel["guard"] == {"passed": True, "reasons": []}


def test_a_model_on_shuffled_labels_fails_the_guard(fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame = fabricated[0].copy()
    rng = np.random.default_rng(5)
    known = frame["churn_label"].notna()
    frame.loc[known, "churn_label"] = rng.permutation(frame.loc[known, "churn_label"].to_numpy())
    shuffled = fit_model(frame, "churn", small_params(), horizon_days=HORIZON_DAYS)
    assert not shuffled.guard_passed
    assert any("chance" in r or "recency" in r for r in shuffled.selection["guard"]["reasons"])


def test_a_constant_model_fails_the_guard() -> None:
    y = np.array([0, 1] * 50)
    verdict = guard_verdict([0.7], [0.6], y, 0.7, np.full(100, 0.3995))
    assert not verdict["passed"] and "constant model: it scores every client 0.3995" in verdict["reasons"][0]
    worse = guard_verdict([0.62, 0.6], [0.63, 0.61], y, 0.6, np.linspace(0, 1, 100))
    assert any("no better than recency" in r for r in worse["reasons"])
    good = guard_verdict([0.8], [0.6], np.array([0, 1] * 500), 0.8, np.linspace(0, 1, 100))
    assert good == {"passed": True, "reasons": []}


def test_auc_lower_bound_narrows_with_rows() -> None:
    small, large = np.array([0, 1] * 20), np.array([0, 1] * 2000)
    assert auc_lower_bound(small, 0.6) < 0.5 < auc_lower_bound(large, 0.6) < 0.6


def test_the_simpler_candidate_wins_a_near_tie() -> None:
    # the blend must beat the booster by 0.001, the logistic model every LightGBM candidate by 0.002
    assert winner_of({"lightgbm": 0.700, "blend": 0.7015, "logistic_rfm": 0.703}) == "blend"
    assert winner_of({"lightgbm": 0.700, "blend": 0.7005, "logistic_rfm": 0.701}) == "lightgbm"
    assert winner_of({"lightgbm": 0.700, "blend": 0.699, "logistic_rfm": 0.7015}) == "lightgbm"
    assert winner_of({"lightgbm": 0.700, "blend": 0.701, "logistic_rfm": 0.710}) == "logistic_rfm"
    assert winner_of({"logistic_rfm": 0.6}) == "logistic_rfm"
    assert winner_of({"blend": 0.6, "lightgbm": float("nan")}) == "blend"


def test_the_logistic_model_as_trees_reproduces_its_log_odds(
    fabricated: tuple[pd.DataFrame, pd.DataFrame], churn_model: TrainedModel
) -> None:
    frames = split_frames(fabricated[0], "churn", HORIZON_DAYS)
    names = default_feature_names()
    linear = fit_linear_terms(frames.train, frames.train["label"].to_numpy())
    trees = encode_linear(linear, frames.train, names, scale=0.5)
    assert trees.num_trees() == len(linear.features)
    got = trees.predict(feature_matrix(frames.test, names), raw_score=True)
    want = 0.5 * linear.raw(frames.test)
    # exact at the bin means; the error sits in the widest (tail) bins
    assert np.median(np.abs(got - want)) < 0.01
    assert encoding_error(linear, trees, frames.train, scale=0.5) < 0.5
    assert np.corrcoef(got, want)[0, 1] > 0.999
    # merged into a booster, the raw scores add up
    booster = churn_model.model.booster
    lgbm_names = churn_model.model.feature_names
    trees_for_model = encode_linear(linear, frames.train, lgbm_names, scale=0.5)
    merged = merge_boosters(booster, trees_for_model)
    X = feature_matrix(frames.test, lgbm_names)
    np.testing.assert_allclose(
        merged.predict(X, raw_score=True),
        booster.predict(X, raw_score=True) + trees_for_model.predict(X, raw_score=True),
        rtol=0,
        atol=1e-9,
    )
