"""Hot reload: swap under load without a failed request; a corrupt champion is refused."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.app import create_app
from serving.config import ScoreParams
from tests.api.conftest import ADMIN_KEY, API_KEY, Trained, api_settings, register, serve, wait_ready

KEY = {"X-API-Key": API_KEY}
ADMIN = {"X-API-Key": ADMIN_KEY}
LOAD_SECONDS = 6.0
MAX_REQUESTS_PER_WORKER = 3000


@pytest.fixture(scope="module")
def base(trained: Trained, score_params: ScoreParams) -> Iterator[str]:
    with serve(create_app(api_settings(trained), score_params)) as url:
        wait_ready(url)
        yield url


def _set_champion(trained: Trained, versions: dict[str, str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained.tracking_uri, registry_uri=trained.tracking_uri)
    for kind, version in versions.items():
        client.set_registered_model_alias(f"comeback-{kind}", "champion", version)


def _served_versions(base: str) -> dict[str, str]:
    info = httpx.get(f"{base}/v1/model", headers=KEY).json()
    return {kind: m["version"] for kind, m in info["models"].items()}


def test_reload_under_load_swaps_once_without_failures(base: str, trained: Trained) -> None:
    before = _served_versions(base)
    new_versions = register(trained, promote=False)  # new registry versions of the same models
    assert new_versions != before
    stop = threading.Event()
    results: list[list[tuple[int, str | None]]] = [[] for _ in range(4)]
    ids = ["c0000010", "c0000020", "c0000030", "c0000040"]

    def hammer(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(MAX_REQUESTS_PER_WORKER):
                if stop.is_set():
                    break
                if worker % 2:
                    r = client.get(f"{base}/v1/clients/{ids[worker]}/score", headers=KEY)
                    version = r.json().get("model_version") if r.status_code == 200 else None
                else:
                    r = client.post(f"{base}/v1/scores", json={"client_ids": ids}, headers=KEY)
                    version = r.json()["model_versions"]["churn"] if r.status_code == 200 else None
                results[worker].append((r.status_code, version))

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(LOAD_SECONDS / 3)
    _set_champion(trained, new_versions)
    try:
        reload = httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=120)
        time.sleep(LOAD_SECONDS / 3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        _set_champion(trained, before)  # other test modules expect the session's champions

    assert reload.status_code == 200, reload.text
    body = reload.json()
    assert body["reloaded"] is True
    assert body["previous"] == before
    assert body["current"] == new_versions
    all_results = [r for worker in results for r in worker]
    assert len(all_results) > 50
    assert [s for s, _ in all_results if s != 200] == []
    for worker in results:
        versions = [v for _, v in worker if v is not None]
        changes = sum(1 for a, b in itertools.pairwise(versions) if a != b)
        assert changes <= 1  # old version, then the new one: never back
    seen = {v for _, v in all_results}
    assert before["churn"] in seen and new_versions["churn"] in seen  # the swap happened under load
    assert seen <= {before["churn"], before["winback"], new_versions["churn"], new_versions["winback"]}
    assert _served_versions(base) == new_versions
    metrics = httpx.get(f"{base}/metrics").text
    assert 'comeback_reloads_total{outcome="swapped"} 1.0' in metrics


def test_corrupt_champion_is_refused_and_old_keeps_serving(
    base: str, trained: Trained, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    serving_before = _served_versions(base)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for f in trained.model_dirs["churn"].iterdir():
        (bad_dir / f.name).write_bytes(f.read_bytes())
    (bad_dir / "booster.txt").write_text("this is not a LightGBM model\n", encoding="utf-8")
    client = MlflowClient(tracking_uri=trained.tracking_uri, registry_uri=trained.tracking_uri)
    bad = client.create_model_version("comeback-churn", source=bad_dir.resolve().as_uri())
    good = client.get_model_version_by_alias("comeback-churn", "champion").version
    client.set_registered_model_alias("comeback-churn", "champion", bad.version)
    try:
        r = httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=120)
        still = httpx.get(f"{base}/v1/clients/c0000001/score", headers=KEY)
    finally:
        client.set_registered_model_alias("comeback-churn", "champion", good)
    assert r.status_code == 409
    assert r.json()["reloaded"] is False
    assert r.json()["reason"]
    assert still.status_code == 200
    assert _served_versions(base) == serving_before
    assert 'comeback_reloads_total{outcome="refused"} 1.0' in httpx.get(f"{base}/metrics").text


def test_reload_picks_up_a_new_feature_table(base: str, trained: Trained, score_params: ScoreParams) -> None:
    import pandas as pd

    path = trained.features_path.parent / "features-extra.parquet"
    frame = pd.read_parquet(trained.features_path)
    latest = frame.loc[frame["cutoff_at"] == frame["cutoff_at"].max()].copy()
    latest["client_id"] = latest["client_id"].str.replace("c", "n", n=1)
    pd.concat([frame, latest]).to_parquet(path, index=False)
    with serve(create_app(api_settings(trained), score_params)) as url:
        wait_ready(url)
        assert httpx.get(f"{url}/v1/clients/n0000001/score", headers=KEY).status_code == 404
        trained.features_path.replace(trained.features_path.with_suffix(".orig"))
        path.replace(trained.features_path)
        try:
            r = httpx.post(f"{url}/admin/reload", headers=ADMIN, timeout=120)
            found = httpx.get(f"{url}/v1/clients/n0000001/score", headers=KEY)
        finally:
            trained.features_path.with_suffix(".orig").replace(trained.features_path)
    assert r.status_code == 200
    assert found.status_code == 200
