"""The scoring API over HTTP: a real model registered in sqlite MLflow, uvicorn on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from models.scorer import load_model
from serving.app import create_app
from serving.batch import score_all_clients
from serving.config import ScoreParams
from serving.core import Scorer, prepare_snapshot
from tests.api.conftest import ADMIN_KEY, API_KEY, MAX_CLIENTS, Trained, api_settings, serve, wait_ready

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def base(trained: Trained, score_params: ScoreParams) -> Iterator[str]:
    app = create_app(api_settings(trained), score_params)
    with serve(app) as url:
        wait_ready(url)
        yield url


@pytest.fixture(scope="module")
def batch_scores(trained: Trained, score_params: ScoreParams) -> pd.DataFrame:
    """The batch stage's scores with the same champions and features, computed independently."""
    churn = load_model("churn", tracking_uri=trained.tracking_uri)
    winback = load_model("winback", tracking_uri=trained.tracking_uri)
    snapshot = prepare_snapshot(pd.read_parquet(trained.features_path), score_params)
    return score_all_clients(Scorer(snapshot, churn, winback, score_params))


def test_live_and_ready_after_load(base: str, trained: Trained) -> None:
    live = httpx.get(f"{base}/health/live")
    assert live.status_code == 200
    ready = httpx.get(f"{base}/health/ready")
    assert ready.status_code == 200
    assert ready.json()["model_versions"] == trained.versions


def test_ready_is_503_before_the_load_finishes(trained: Trained, score_params: ScoreParams) -> None:
    release = threading.Event()
    settings = api_settings(trained)
    from serving.app import registry_loader

    real = registry_loader(settings, score_params)

    def slow_loader() -> Scorer:
        release.wait(30)
        return real()

    with serve(create_app(settings, score_params, loader=slow_loader)) as url:
        before = httpx.get(f"{url}/health/ready")
        scoring = httpx.get(f"{url}/v1/clients/c0000001/score", headers=KEY)
        release.set()
        wait_ready(url)
        after = httpx.get(f"{url}/health/ready")
    assert before.status_code == 503
    assert before.json()["status"] == "loading"
    assert scoring.status_code == 503
    assert "not loaded" in scoring.json()["detail"]
    assert after.status_code == 200


def test_ready_reports_a_failed_load(trained: Trained, score_params: ScoreParams, tmp_path: object) -> None:
    settings = api_settings(trained, features="/nonexistent/features.parquet")
    with serve(create_app(settings, score_params)) as url:
        for _ in range(200):
            r = httpx.get(f"{url}/health/ready")
            if r.json()["status"] != "loading":
                break
            threading.Event().wait(0.05)
    assert r.status_code == 503
    assert r.json()["status"] == "failed"
    assert "features.parquet" in r.json()["detail"]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_keyed_routes_need_a_valid_key(base: str, headers: dict[str, str]) -> None:
    assert httpx.get(f"{base}/v1/clients/c0000001/score", headers=headers).status_code == 401
    assert (
        httpx.post(f"{base}/v1/scores", json={"client_ids": ["c0000001"]}, headers=headers).status_code == 401
    )
    assert httpx.get(f"{base}/v1/model", headers=headers).status_code == 401
    r = httpx.post(f"{base}/admin/reload", headers=headers)
    assert r.status_code == 401
    assert "X-API-Key" in r.json()["detail"]


def test_admin_route_needs_an_admin_key(base: str) -> None:
    r = httpx.post(f"{base}/admin/reload", headers=KEY)
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]
    # An admin key is also a valid API key.
    assert httpx.get(f"{base}/v1/model", headers={"X-API-Key": ADMIN_KEY}).status_code == 200


def test_unknown_client_is_404_naming_it(base: str) -> None:
    r = httpx.get(f"{base}/v1/clients/no-such-client/score", headers=KEY)
    assert r.status_code == 404
    assert "no-such-client" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "client_ids"),
        ({"client_ids": "c0000001"}, "client_ids"),
        ({"client_ids": []}, "client_ids"),
        ({"client_ids": [1, 2]}, "client_ids"),
        ({"client_ids": ["c0000001"], "extra": 1}, "extra"),
    ],
)
def test_malformed_body_is_422_naming_the_field(base: str, body: dict[str, object], field: str) -> None:
    r = httpx.post(f"{base}/v1/scores", json=body, headers=KEY)
    assert r.status_code == 422
    assert any(field in err["loc"] for err in r.json()["detail"])


def test_too_many_client_ids_is_422(base: str, trained: Trained) -> None:
    ids = [f"c{i:07d}" for i in range(MAX_CLIENTS + 1)]
    r = httpx.post(f"{base}/v1/scores", json={"client_ids": ids}, headers=KEY)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "client_ids"]
    assert str(MAX_CLIENTS) in r.json()["detail"][0]["msg"]


def test_invalid_json_is_422(base: str) -> None:
    r = httpx.post(
        f"{base}/v1/scores", content=b'{"client_ids": [', headers={**KEY, "content-type": "application/json"}
    )
    assert r.status_code == 422


def test_oversized_body_is_413(base: str) -> None:
    body = b'{"client_ids": ["' + b"x" * (70 * 1024) + b'"]}'
    r = httpx.post(f"{base}/v1/scores", content=body, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_oversized_chunked_body_is_413(base: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"client_ids": ["'
        for _ in range(9):
            yield b"y" * 8192
        yield b'"]}'

    r = httpx.post(f"{base}/v1/scores", content=chunks(), headers={**KEY, "content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413


def test_small_chunked_body_is_accepted(base: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"client_ids": '
        yield b'["c0000001"]}'

    r = httpx.post(f"{base}/v1/scores", content=chunks(), headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 200
    assert [s["client_id"] for s in r.json()["scores"]] == ["c0000001"]


def test_api_and_batch_agree(base: str, batch_scores: pd.DataFrame, trained: Trained) -> None:
    listed = batch_scores.loc[batch_scores["campaign"] != "none"]
    sample = pd.concat(
        [
            listed.loc[listed["campaign"] == "prevention"].head(15),
            listed.loc[listed["campaign"] == "winback"].head(15),
            batch_scores.loc[batch_scores["campaign"] == "none"].head(10),
        ]
    )
    assert (sample["campaign"] == "prevention").sum() > 0 and (sample["campaign"] == "winback").sum() > 0
    r = httpx.post(f"{base}/v1/scores", json={"client_ids": [*sample["client_id"], "ghost"]}, headers=KEY)
    assert r.status_code == 200
    body = r.json()
    assert body["unknown_client_ids"] == ["ghost"]
    assert body["model_versions"] == trained.versions
    api = {s["client_id"]: s for s in body["scores"]}
    assert set(api) == set(sample["client_id"])
    for row in sample.itertuples():
        s = api[row.client_id]
        assert s["state"] == row.state
        assert s["campaign"] == row.campaign
        for col in ("churn_probability", "winback_probability", "priority"):
            batch_value = getattr(row, col)
            if pd.isna(batch_value):
                assert s[col] is None
            else:
                assert s[col] == pytest.approx(batch_value, rel=1e-9, abs=1e-12)
        assert s["value"] == pytest.approx(row.value)
        assert s["value_class"] == row.value_class
        assert (s["excluded_reason"] or "") == row.excluded_reason
        if row.campaign != "none":
            assert s["reasons"] == [r for r in (row.reason_1, row.reason_2, row.reason_3) if r]
            assert s["offer"] == row.offer
        # The single-client route gives the same answer.
        one = httpx.get(f"{base}/v1/clients/{row.client_id}/score", headers=KEY)
        assert one.status_code == 200
        assert one.json() == s


def test_scores_carry_no_personal_data_beyond_the_id(base: str, trained: Trained) -> None:
    r = httpx.get(f"{base}/v1/clients/c0000002/score", headers=KEY)
    assert r.status_code == 200
    text = r.text
    for column in ("segment", "first_order_at", "last_order_at", "do_not_contact", "loss_at"):
        assert column not in text


def test_reasons_are_words_not_feature_names(base: str) -> None:
    from features.contract import FEATURE_COLUMNS

    r = httpx.post(f"{base}/v1/scores", json={"client_ids": [f"c{i:07d}" for i in range(60)]}, headers=KEY)
    assert r.status_code == 200
    phrases = [p for s in r.json()["scores"] for p in s["reasons"]]
    assert phrases
    for phrase in phrases:
        assert not any(name in phrase for name in FEATURE_COLUMNS), phrase


def test_model_info(base: str, trained: Trained) -> None:
    r = httpx.get(f"{base}/v1/model", headers=KEY)
    assert r.status_code == 200
    info = r.json()
    assert info["models"]["churn"]["version"] == trained.versions["churn"]
    assert info["models"]["winback"]["name"] == "comeback-winback"
    assert info["models"]["churn"]["metrics"]["roc_auc"] == pytest.approx(
        trained.models["churn"].metrics["test"]["roc_auc"]
    )
    assert info["cutoff_at"].startswith("2025-01-01")
    assert info["clients"] == int(
        (trained.features["cutoff_at"] == trained.features["cutoff_at"].max()).sum()
    )


def test_metrics_count_requests_and_versions(base: str, trained: Trained) -> None:
    httpx.get(f"{base}/v1/clients/c0000003/score", headers=KEY)
    text = httpx.get(f"{base}/metrics").text
    assert 'comeback_requests_total{method="GET",route="/v1/clients/{client_id}/score",status="200"}' in text
    assert 'comeback_request_seconds_bucket{le="0.01",route="/v1/clients/{client_id}/score"}' in text
    assert f'comeback_model_info{{kind="churn",version="{trained.versions["churn"]}"}} 1.0' in text
    assert "c0000003" not in text


def test_openapi_documents_every_route(base: str) -> None:
    doc = httpx.get(f"{base}/openapi.json").json()
    paths = doc["paths"]
    expected = {
        ("/v1/scores", "post"): {"200", "401", "413", "422", "503"},
        ("/v1/clients/{client_id}/score", "get"): {"200", "401", "404", "422", "503"},
        ("/v1/model", "get"): {"200", "401", "503"},
        ("/admin/reload", "post"): {"200", "401", "403", "409"},
        ("/health/live", "get"): {"200"},
        ("/health/ready", "get"): {"200", "503"},
        ("/metrics", "get"): {"200"},
    }
    for (path, method), codes in expected.items():
        assert codes <= set(paths[path][method]["responses"]), (path, method)
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_live_answers_while_scoring_is_busy(base: str) -> None:
    ids = [f"c{i:07d}" for i in range(MAX_CLIENTS)]
    with httpx.Client(timeout=60) as client, cf.ThreadPoolExecutor(8) as pool:
        busy = [
            pool.submit(client.post, f"{base}/v1/scores", json={"client_ids": ids}, headers=KEY)
            for _ in range(16)
        ]
        live = client.get(f"{base}/health/live")
        pending_when_live_answered = sum(not f.done() for f in busy)
        results = [f.result() for f in busy]
    assert live.status_code == 200
    assert all(r.status_code == 200 for r in results)
    assert pending_when_live_answered > 0


def test_probabilities_are_calibrated_shape(batch_scores: pd.DataFrame) -> None:
    p = batch_scores["churn_probability"].dropna().to_numpy()
    assert p.size > 0 and np.all((p >= 0) & (p <= 1))
