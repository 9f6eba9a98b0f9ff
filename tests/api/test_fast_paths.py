"""The scoring core's fast paths give exactly the answers of the general path.

The API's single-client route goes through LightGBM's single-row C API (serving.explain.RowPredictor)
and batches with reasons take their probabilities from one leaf pass (leaf-value sums); both must
give the same numbers, campaigns and reasons as ``booster.predict`` through the general path, for
every client of the sample.
"""

from __future__ import annotations

import dataclasses

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.scorer import load_model
from serving.config import ScoreParams
from serving.core import Scorer, prepare_snapshot, to_records
from serving.explain import PathExplainer, RowPredictor
from tests.api.conftest import Trained


def _scorer(trained: Trained, params: ScoreParams) -> Scorer:
    churn = load_model("churn", tracking_uri=trained.tracking_uri)
    winback = load_model("winback", tracking_uri=trained.tracking_uri)
    snapshot = prepare_snapshot(pd.read_parquet(trained.features_path), params)
    return Scorer(snapshot, churn, winback, params)


@pytest.fixture(scope="module")
def scorer(trained: Trained, score_params: ScoreParams) -> Scorer:
    return _scorer(trained, score_params)


def test_single_client_path_equals_the_batch_for_every_client(scorer: Scorer) -> None:
    assert set(scorer.single_row_fast_path) == {"churn", "winback"}
    batch = to_records(scorer, scorer.score(reasons="all"))
    kinds = {r["model"] for r in batch}
    assert kinds == {"churn", "winback", None}  # both models and the no-model path are covered
    assert any(r["reasons"] for r in batch)
    for row, expected in enumerate(batch):
        assert scorer.score_one(row) == expected, expected["client_id"]


def test_one_leaf_pass_gives_what_two_predictions_give(trained: Trained, scorer: Scorer) -> None:
    assert all(e.raw_from_leaves for e in scorer._explainers.values())
    general = _scorer(trained, scorer.params)
    general._explainers = {
        kind: dataclasses.replace(e, raw_from_leaves=False) for kind, e in general._explainers.items()
    }
    for mode in ("all", "listed", "none"):
        fast, slow = scorer.score(reasons=mode), general.score(reasons=mode)
        np.testing.assert_array_equal(fast.churn_probability, slow.churn_probability)
        np.testing.assert_array_equal(fast.winback_probability, slow.winback_probability)
        assert to_records(scorer, fast) == to_records(general, slow), mode
    listed = scorer.score(reasons="listed")
    on_list = listed.campaign != "none"
    assert on_list.any() and (~on_list).any()
    assert any(w for w, o in zip(listed.reasons, on_list, strict=True) if o)
    assert not any(w for w, o in zip(listed.reasons, on_list, strict=True) if not o)


def test_row_predictor_gives_booster_predict_numbers(scorer: Scorer) -> None:
    rng = np.random.default_rng(7)
    for model in (scorer.churn, scorer.winback):
        predictor = RowPredictor(model.booster, len(model.feature_names))
        X = scorer.snapshot.matrix[:, scorer._cols[model.kind]][:300].copy()
        X[rng.random(X.shape) < 0.2] = np.nan
        raw = model.booster.predict(X, raw_score=True, num_threads=1)
        leaves = model.booster.predict(X, pred_leaf=True, num_threads=1)
        for i in range(X.shape[0]):
            got_raw, got_leaves = predictor.raw_score_and_leaves(X[i])
            assert got_raw == raw[i]
            np.testing.assert_array_equal(got_leaves, leaves[i])
            assert predictor.raw_score(X[i]) == raw[i]


def test_leaf_sums_are_not_used_where_they_are_not_the_raw_score() -> None:
    """Linear trees add a linear model in each leaf: leaf values alone are not the prediction."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=400) > 0).astype(float)
    names = [f"f{i}" for i in range(4)]
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1}
    plain = lgb.train(params, lgb.Dataset(X, y, feature_name=names), num_boost_round=10)
    linear = lgb.train(
        {**params, "linear_tree": True}, lgb.Dataset(X, y, feature_name=names), num_boost_round=10
    )
    assert PathExplainer.from_booster(plain, names).raw_from_leaves
    assert not PathExplainer.from_booster(linear, names).raw_from_leaves


def test_single_client_fast_path_answers_as_the_fastapi_route(
    trained: Trained, score_params: ScoreParams, scorer: Scorer
) -> None:
    """The served GET /v1/clients/{id}/score is answered in front of the middleware stack
    (SingleClientFastPath); without it the FastAPI route must give the same statuses and bytes,
    and the fast path must count and time its requests as the middleware would."""
    from serving.app import create_app
    from tests.api.conftest import API_KEY, api_settings, serve, wait_ready

    served = create_app(api_settings(trained), score_params)
    documented = create_app(api_settings(trained), score_params, fast_single_client=False)
    ids = scorer.snapshot.client_ids.tolist()
    cases = [(cid, API_KEY) for cid in ids[:40]] + [("ghost", API_KEY), (ids[0], None), (ids[0], "wrong")]
    with serve(served) as a, serve(documented) as b, httpx.Client(timeout=30) as client:
        wait_ready(a)
        wait_ready(b)
        for cid, key in cases:
            headers = {"X-API-Key": key} if key else {}
            one = client.get(f"{a}/v1/clients/{cid}/score", headers=headers)
            two = client.get(f"{b}/v1/clients/{cid}/score", headers=headers)
            assert (one.status_code, one.content) == (two.status_code, two.content), (cid, key)
            assert one.headers["content-type"] == two.headers["content-type"] == "application/json"
        statuses = {
            client.get(f"{a}/v1/clients/{cid}/score", headers={"X-API-Key": k or ""}).status_code
            for cid, k in cases
        }
        assert statuses == {200, 401, 404}
        # the same requests, counted under the route template by both apps
        counts = [_route_counts(client.get(f"{u}/metrics").text) for u in (a, b)]
        assert counts[0][("GET", "200")] == 2 * counts[1][("GET", "200")] == 80
        assert counts[0][("GET", "401")] == 2 * counts[1][("GET", "401")] == 4
        # a GET declaring a body goes down the stack, where the body limit sees it
        big = client.request(
            "GET", f"{a}/v1/clients/{ids[0]}/score", headers={"X-API-Key": API_KEY}, content=b"x" * 2_000_000
        )
        assert big.status_code == 413
        # one segment only, as Starlette's {client_id}: a slash in the id is no route
        assert client.get(f"{a}/v1/clients/a/b/score", headers={"X-API-Key": API_KEY}).status_code == 404
        head = client.head(f"{a}/v1/clients/{ids[0]}/score", headers={"X-API-Key": API_KEY})
        assert head.status_code == 200 and head.content == b""
        post = client.post(f"{a}/v1/clients/{ids[0]}/score", headers={"X-API-Key": API_KEY})
        assert post.status_code == 405
        assert (
            post.json()
            == client.post(f"{b}/v1/clients/{ids[0]}/score", headers={"X-API-Key": API_KEY}).json()
        )


def _route_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    """comeback_requests_total of the single-client route by (method, status), from /metrics."""
    prefix = 'comeback_requests_total{method="'
    out: dict[tuple[str, str], float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(prefix) and 'route="/v1/clients/{client_id}/score"' in line:
            method = line[len(prefix) :].split('"', 1)[0]
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[(method, status)] = float(line.rsplit(" ", 1)[1])
    return out


def test_fast_path_turns_an_error_into_a_counted_500() -> None:
    """An exception in the answer becomes a 500 for this request, counted under the route."""
    import asyncio

    from prometheus_client import generate_latest

    from serving.app import Metrics, SingleClientFastPath

    def broken(client_id: str, key: str | None) -> tuple[int, bytes]:
        raise RuntimeError(f"broken for {client_id}")

    async def never(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the fast path handed its own route down the stack")

    metrics = Metrics()
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/v1/clients/c1/score", "headers": [], "root_path": ""}
    asyncio.run(SingleClientFastPath(never, broken, metrics)(scope, receive, send))
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"Internal Server Error"
    assert dict(sent[0]["headers"])[b"content-length"] == b"21"  # type: ignore[call-overload]
    text = generate_latest(metrics.registry).decode()
    assert 'route="/v1/clients/{client_id}/score",status="500"} 1.0' in text
