"""Reasons on the generated sample: every listed client's reasons argue for its score.

The models are trained on the real generate -> ingest -> features output (the session's sample)
and the scoring cutoff is scored as the batch does. Each reason shown must be one that a feature
with a positive contribution gives for that client (value on the side of the comparable median
that raises the score, or an absence said with why it matters), the rhythm model's probability
never reads as reassurance, and the declared directions of the features that give most reasons
agree with the model's own contributions on average.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import FEATURE_COLUMNS
from models.config import SearchParams, TrainParams
from models.train import TrainedModel, fit_model
from serving.campaigns import NO_CAMPAIGN
from serving.config import ScoreParams
from serving.core import Scorer, prepare_snapshot
from serving.explain import PathExplainer
from serving.reasons import TEMPLATES, ReasonRenderer
from tests.model.conftest import HORIZON_DAYS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_winback_model(sample_features: pd.DataFrame) -> TrainedModel:
    """A win-back model trained on the sample like the session's churn model (defaults, no search)."""
    params = TrainParams(num_threads=1, search=SearchParams(trials=0))
    return fit_model(sample_features, "winback", params, horizon_days=HORIZON_DAYS)


def test_listed_clients_get_reasons_that_argue_for_their_score(
    sample_features: pd.DataFrame, sample_churn_model: TrainedModel, sample_winback_model: TrainedModel
) -> None:
    params = ScoreParams()
    snapshot = prepare_snapshot(sample_features, params)  # the scoring cutoff (the latest)
    churn, winback = sample_churn_model.model, sample_winback_model.model
    scored = Scorer(snapshot, churn, winback, params).score(reasons="listed")
    renderer = ReasonRenderer()
    for model in (churn, winback):
        kind = model.kind
        listed = np.flatnonzero(
            (snapshot.plan.model_kind[scored.rows] == kind) & (scored.campaign != NO_CAMPAIGN)
        )
        assert listed.size > 200, kind
        rows = scored.rows[listed]
        names = model.feature_names
        cols = np.array([FEATURE_COLUMNS.index(f) for f in names], dtype=np.int64)
        explainer = PathExplainer.from_booster(model.booster, names)
        contributions = explainer.contributions(model.booster, snapshot.matrix[np.ix_(rows, cols)])
        peers = renderer.for_peers(kind, snapshot.peers[kind])
        by_feature: dict[str, int] = {}
        for i, row in enumerate(rows.tolist()):
            values = snapshot.matrix[row].tolist()
            allowed: dict[str, str] = {}
            for f, c in zip(names, contributions[i].tolist(), strict=True):
                phrase = peers.phrase(f, values, c)
                if phrase is not None:
                    allowed.setdefault(phrase, f)
            shown = scored.reasons[listed[i]]
            assert set(shown) <= set(allowed), (kind, snapshot.client_ids[row], shown)
            for phrase in shown:
                if ", where " in phrase:  # a comparison, not an absence
                    by_feature[allowed[phrase]] = by_feature.get(allowed[phrase], 0) + 1
            if kind == "churn":
                assert not any("still buying" in p for p in shown)
        with_three = np.mean([len(scored.reasons[i]) == 3 for i in listed])
        assert with_three > 0.9, (kind, with_three)
        # The features that give most reasons: on average over the whole population, the model's
        # contribution is higher on the declared side of the median than on the other side.
        population = np.flatnonzero(snapshot.plan.model_kind == kind)
        everyone = explainer.contributions(model.booster, snapshot.matrix[np.ix_(population, cols)])
        total = sum(by_feature.values())
        median = snapshot.peers[kind].median
        for f, n in by_feature.items():
            side = TEMPLATES[f].raises.get(kind)
            if n < 0.05 * total or side is None:
                continue
            x = snapshot.matrix[population, FEATURE_COLUMNS.index(f)]
            c = everyone[:, names.index(f)]
            m = median[FEATURE_COLUMNS.index(f)]
            risky, other = (x > m, x < m) if side == "higher" else (x < m, x > m)
            if risky.sum() >= 50 and other.sum() >= 50:
                assert c[risky].mean() > c[other].mean(), (kind, f, side)
