"""`comeback serve` as a real subprocess: environment settings, registry champions, one request."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.conftest import API_KEY, Trained, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_comeback_serve_answers_with_the_registered_champions(trained: Trained) -> None:
    port = free_port()
    env = {
        **os.environ,
        "COMEBACK_TRACKING_URI": trained.tracking_uri,
        "COMEBACK_API_KEYS": API_KEY,
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        str(Path(sys.executable).parent / "comeback"),
        "serve",
        "--port",
        str(port),
        "--features",
        str(trained.features_path),
        "--params",
        str(ROOT / "params.yaml"),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, proc.poll()
        assert ready.json()["model_versions"] == trained.versions
        r = httpx.get(f"{base}/v1/clients/c0000005/score", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200
        assert r.json()["client_id"] == "c0000005"
        assert httpx.get(f"{base}/v1/clients/c0000005/score").status_code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert API_KEY.encode() not in out  # keys never logged
