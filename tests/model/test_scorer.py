"""The serving interface: inputs checked at the door, one-pass reasons, invariance, folder round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import ContractError
from models.scorer import ModelNotFoundError, load_model, load_model_from_dir
from models.train import TrainedModel, save_trained_model


def _rows(trained: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame], n: int = 300) -> pd.DataFrame:
    frame = fabricated[0]
    states = ["new", "active"] if trained.kind == "churn" else ["lapsed_90", "lapsed_180", "lapsed_360"]
    return frame[frame["state"].isin(states)].head(n).reset_index(drop=True)


def test_missing_input_column_is_named(
    churn_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    X = _rows(churn_model, fabricated).drop(columns=["recency_days"])
    with pytest.raises(ContractError, match="recency_days"):
        churn_model.model.predict_probability(X)
    with pytest.raises(ContractError, match="input columns"):
        churn_model.model.predict_probability(np.zeros((2, 3)))


def test_probabilities_and_reasons_agree_in_one_pass(
    churn_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    model = churn_model.model
    X = _rows(churn_model, fabricated)
    p = model.predict_probability(X)
    p2, reasons = model.predict_with_reasons(X, k=3)
    np.testing.assert_allclose(p, p2, rtol=1e-9)
    assert p.shape == (len(X),) and np.all((p > 0) & (p < 1))
    assert len(reasons) == len(X)
    for row, rs in zip(X.itertuples(index=False), reasons, strict=True):
        assert len(rs) <= 3
        contributions = [r.contribution for r in rs]
        assert all(c > 0 for c in contributions)
        assert contributions == sorted(contributions, reverse=True)
        for r in rs:
            value = getattr(row, r.feature)
            assert (r.value is None and pd.isna(value)) or r.value == pytest.approx(float(value))
    # the reasons are the largest positive pred_contrib entries of the raw (uncalibrated) score
    _, contrib = model.contributions(X.head(1))
    top = np.argsort(-contrib[0, :-1])[:3]
    expected = [model.feature_names[i] for i in top if contrib[0, i] > 0]
    assert [r.feature for r in reasons[0]] == expected


def test_single_row_equals_batch_and_extra_columns_are_ignored(
    winback_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    model = winback_model.model
    X = _rows(winback_model, fabricated, 50)
    batch = model.predict_probability(X)
    single = np.array([model.predict_probability(X.iloc[[i]])[0] for i in range(len(X))])
    np.testing.assert_allclose(single, batch)
    as_array = model.predict_probability(X[model.feature_names].to_numpy(dtype="float64"))
    np.testing.assert_allclose(as_array, batch)


def test_shuffled_rows_and_relabelled_ids_give_the_same_scores(
    churn_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    model = churn_model.model
    X = _rows(churn_model, fabricated, 500)
    base = pd.Series(model.predict_probability(X), index=X["client_id"])
    rng = np.random.default_rng(5)
    shuffled = X.iloc[rng.permutation(len(X))].reset_index(drop=True)
    relabel = {cid: f"X{i:05d}" for i, cid in enumerate(rng.permutation(X["client_id"].unique()))}
    shuffled["client_id"] = shuffled["client_id"].map(relabel)
    again = pd.Series(model.predict_probability(shuffled), index=shuffled["client_id"])
    back = {v: k for k, v in relabel.items()}
    again.index = again.index.map(back)
    pd.testing.assert_series_equal(again.sort_index(), base.sort_index(), check_names=False)


def test_saved_folder_loads_to_the_same_model(
    tmp_path: Path, churn_model: TrainedModel, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    save_trained_model(churn_model, tmp_path / "churn")
    for name in ("booster.txt", "calibration.json", "feature_names.json", "split.json", "metrics.json"):
        assert (tmp_path / "churn" / name).is_file(), name
    loaded = load_model_from_dir(tmp_path / "churn")
    X = _rows(churn_model, fabricated)
    np.testing.assert_allclose(loaded.predict_probability(X), churn_model.model.predict_probability(X))
    assert loaded.kind == "churn" and loaded.version == "local"
    assert loaded.metrics["roc_auc"] == pytest.approx(churn_model.metrics["test"]["roc_auc"])
    with pytest.raises(ModelNotFoundError, match=r"booster\.txt"):
        load_model_from_dir(tmp_path)


def test_unknown_alias_is_a_lookup_error(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="comeback-churn@champion"):
        load_model("churn", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
