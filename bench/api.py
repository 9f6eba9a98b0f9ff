"""Benchmark of the scoring API against a bare ASGI app doing the same lookup and prediction.

Both servers run in their own process (uvicorn, one worker, LightGBM one thread) and serve the
same sample model and feature table; the load comes from this process over loopback, with a small
raw HTTP/1.1 keep-alive client on asyncio (lighter than httpx, so the generator is not the
bottleneck). Each scenario is bounded in time (``--seconds``) and in requests. Scenarios:

* single client by id with reasons (``GET /v1/clients/{id}/score``) at concurrency 1 and 16;
* batches of 1000 clients (``POST /v1/scores``) at concurrency 2: clients/s.

Prints requests/s, p50/p99 latency and the ours/bare ratios. Targets: >= 70% of the bare app's
throughput, p99 <= 10 ms at concurrency 16, >= 40,000 clients/s in batches.

    .venv/bin/python bench/api.py [--seconds 4] [--clients 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
API_KEY = "bench-key"


# ------------------------------------------------------------------------------------------------
# Server side (run in a subprocess: --serve ours|bare)
# ------------------------------------------------------------------------------------------------


def _loader(workdir: Path) -> Any:
    from models.scorer import load_model_from_dir
    from serving.config import ScoreParams
    from serving.core import Scorer, prepare_snapshot, read_feature_table

    def load() -> Scorer:
        params = ScoreParams()
        snapshot = prepare_snapshot(read_feature_table(workdir / "features.parquet"), params)
        return Scorer(
            snapshot,
            load_model_from_dir(workdir / "models" / "churn", num_threads=1),
            load_model_from_dir(workdir / "models" / "winback", num_threads=1),
            params,
        )

    return load


def bare_app(workdir: Path) -> Any:
    """The same lookup, prediction, reasons and JSON, with no framework and no threadpool."""
    import numpy as np

    from serving.core import to_records

    load = _loader(workdir)
    state: dict[str, Any] = {}

    async def send_json(send: Any, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["scorer"] = load()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        scorer = state["scorer"]
        path: str = scope["path"]
        if path == "/health/ready":
            await send_json(send, 200, {"status": "ready"})
        elif path.startswith("/v1/clients/"):
            row = scorer.snapshot.row_of.get(path.split("/")[3])
            if row is None:
                await send_json(send, 404, {"detail": "unknown client"})
                return
            scored = scorer.score(np.array([row], dtype=np.int64), reasons="all")
            await send_json(send, 200, to_records(scorer, scored)[0])
        elif path == "/v1/scores":
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            ids = json.loads(b"".join(chunks))["client_ids"]
            rows, unknown = scorer.snapshot.rows_for(ids)
            scored = scorer.score(rows, reasons="all")
            await send_json(send, 200, {"scores": to_records(scorer, scored), "unknown_client_ids": unknown})
        else:
            await send_json(send, 404, {"detail": "not found"})

    return app


def serve(kind: str, workdir: Path, port: int) -> None:
    import uvicorn

    if kind == "ours":
        from serving.app import create_app
        from serving.config import ApiSettings

        settings = ApiSettings(api_keys=API_KEY, max_clients_per_request=1000, max_body_bytes=1 << 20)
        app = create_app(settings, loader=_loader(workdir))
    else:
        app = bare_app(workdir)
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


# ------------------------------------------------------------------------------------------------
# Load generator
# ------------------------------------------------------------------------------------------------


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {API_KEY}\r\n\r\n".encode()


def _post(path: str, payload: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {API_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _worker(port: int, requests: list[bytes], deadline: float, limit: int, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < deadline and out["count"] < limit:
            req = requests[i % len(requests)]
            i += 1
            t = time.perf_counter()
            writer.write(req)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - t)
            out["count"] += 1
            if not status.startswith(b"HTTP/1.1 200"):
                out["errors"] += 1
    finally:
        writer.close()


def run_load(
    port: int, requests: list[bytes], concurrency: int, seconds: float, limit: int
) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {"latencies": [], "count": 0, "errors": 0}
        # warm-up
        await asyncio.gather(
            *(
                _worker(port, requests, time.perf_counter() + 0.5, 10**9, {**out, "latencies": []})
                for _ in range(min(concurrency, 2))
            )
        )
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(_worker(port, requests, deadline, limit, out) for _ in range(concurrency)))
        out["seconds"] = time.perf_counter() - started
        return out

    return asyncio.run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--workdir", str(workdir), "--port", str(port)], env=env
    )
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not become ready")


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q) * 1000) if values else float("nan")


def prepare(workdir: Path, clients: int) -> list[str]:
    from models.config import BoosterParams, TrainParams
    from models.train import fit_all, save_trained_model
    from tests.api.sample import make_features, write_features

    booster = BoosterParams(num_boost_round=200, min_data_in_leaf=50, early_stopping_rounds=30)
    trained = fit_all(
        make_features(4000, seed=1),
        TrainParams(num_threads=2, churn=booster, winback=booster),
        horizon_days=100,
    )
    for kind, tm in trained.items():
        save_trained_model(tm, workdir / "models" / kind)
    table = make_features(clients, cutoffs=1, seed=5)
    write_features(workdir / "features.parquet", table)
    listed = table.loc[table["state"].isin(["new", "active", "lapsed_90", "lapsed_180", "lapsed_360"])]
    return [str(c) for c in listed["client_id"]]


def main() -> None:
    ap = argparse.ArgumentParser(description="scoring API benchmark")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=int, default=20000)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--serve", choices=["ours", "bare"])
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.workdir, args.port)
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ids = prepare(workdir, args.clients)
        singles = [_get(f"/v1/clients/{cid}/score") for cid in ids[:5000]]
        batches = [
            _post("/v1/scores", json.dumps({"client_ids": ids[i : i + 1000]}).encode())
            for i in range(0, min(len(ids), 10000) - 999, 1000)
        ]
        scenarios = (
            ("single c=1", singles, 1, 1),
            ("single c=16", singles, 16, 1),
            ("batch 1000 c=2", batches, 2, 1000),
        )
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in ("ours", "bare"):
            proc, port = _start(kind, workdir)
            try:
                for name, reqs, conc, per in scenarios:
                    r = run_load(port, reqs, conc, args.seconds, args.max_requests)
                    r["per"] = per
                    results.setdefault(name, {})[kind] = r
            finally:
                proc.terminate()
                proc.wait(timeout=30)

    print(f"\nscoring API vs bare ASGI (1 uvicorn worker each, {args.seconds:.0f} s per scenario)\n")
    head = f"{'scenario':<16}{'ours req/s':>11}{'bare req/s':>11}{'ratio':>7}{'ours p50':>10}{'ours p99':>10}"
    print(head + f"{'bare p50':>10}{'bare p99':>10}{'ours clients/s':>16}{'errors':>8}")
    for name, by in results.items():
        o, b = by["ours"], by["bare"]
        o_rps, b_rps = o["count"] / o["seconds"], b["count"] / b["seconds"]
        print(
            f"{name:<16}{o_rps:>11,.0f}{b_rps:>11,.0f}{o_rps / b_rps:>7.2f}"
            f"{_pct(o['latencies'], 50):>8.2f}ms{_pct(o['latencies'], 99):>8.2f}ms"
            f"{_pct(b['latencies'], 50):>8.2f}ms{_pct(b['latencies'], 99):>8.2f}ms"
            f"{o_rps * o['per']:>16,.0f}{o['errors'] + b['errors']:>8}"
        )
    c16 = results["single c=16"]["ours"]
    batch = results["batch 1000 c=2"]["ours"]
    ratio = (results["single c=16"]["ours"]["count"] / c16["seconds"]) / (
        results["single c=16"]["bare"]["count"] / results["single c=16"]["bare"]["seconds"]
    )
    print(
        f"\ntargets: throughput ratio at c=16 {ratio:.2f} (>= 0.70), "
        f"p99 at c=16 {_pct(c16['latencies'], 99):.1f} ms (<= 10), "
        f"batch {batch['count'] * 1000 / batch['seconds']:,.0f} clients/s (>= 40,000)"
    )


if __name__ == "__main__":
    main()
