"""Benchmark of the batch `score` stage on a generated table of N clients (default 1,000,000).

Trains a small model with the real training code on a fabricated sample, generates N clients at
one cutoff, then times each step of the batch (snapshot, probabilities + campaign rules, reasons
for every listed client, output frame, atomic file writes). Prints the total against the 60 s
target and against a bare baseline measured in the same run: the two native booster predictions
alone on the same matrix (the floor any scorer pays). Each step shows wall and CPU seconds (all
threads of this process): on a shared machine the wall time includes waiting for a core, the CPU
time much less so, and the load average is printed beside them.

    .venv/bin/python bench/score.py [--clients 1000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2, help="LightGBM threads for the batch")
    args = ap.parse_args()

    import numpy as np

    from models.config import BoosterParams, SearchParams, TrainParams
    from models.scorer import LoadedModel
    from models.train import fit_all
    from serving.batch import write_outputs
    from serving.config import ScoreParams
    from serving.core import Scorer, prepare_snapshot
    from tests.api.sample import make_features

    t0 = time.perf_counter()
    booster = BoosterParams(num_boost_round=200, min_data_in_leaf=50, early_stopping_rounds=30)
    sample = make_features(4000, seed=1)
    trained = fit_all(
        sample,
        TrainParams(num_threads=args.threads, churn=booster, winback=booster, search=SearchParams(trials=0)),
        horizon_days=100,
    )
    models: dict[str, LoadedModel] = {k: t.model for k, t in trained.items()}
    trees = {k: m.booster.num_trees() for k, m in models.items()}
    print(f"trained on {len(sample):,} rows in {time.perf_counter() - t0:.1f} s; trees {trees}")

    t0 = time.perf_counter()
    table = make_features(args.clients, cutoffs=1, seed=2)
    print(f"generated {len(table):,} clients in {time.perf_counter() - t0:.1f} s")

    params = ScoreParams()
    steps: dict[str, tuple[float, float]] = {}
    started, cpu_started = time.perf_counter(), time.process_time()

    def step(name: str, t: float, c: float) -> None:
        steps[name] = (time.perf_counter() - t, time.process_time() - c)

    t, c = time.perf_counter(), time.process_time()
    snapshot = prepare_snapshot(table, params)
    scorer = Scorer(snapshot, models["churn"], models["winback"], params)
    step("snapshot (matrix, index, campaign plan)", t, c)
    t, c = time.perf_counter(), time.process_time()
    scored = scorer.score(reasons="listed")
    step("probabilities, priorities, reasons of listed", t, c)
    t, c = time.perf_counter(), time.process_time()
    scores = scorer.to_frame(scored)
    step("output frame", t, c)
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        manifest = write_outputs(Path(tmp), scores, scorer, features_source="generated")
        step("write files (atomic)", t, c)
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    # Bare baseline: both boosters' raw predictions on their rows, nothing else.
    kind = snapshot.plan.model_kind
    t = time.perf_counter()
    for k in ("churn", "winback"):
        rows = np.flatnonzero(kind == k)
        X = snapshot.matrix[np.ix_(rows, scorer._cols[k])]
        models[k].booster.predict(X, raw_score=True, num_threads=args.threads)
    bare = time.perf_counter() - t
    listed = manifest["lists"]
    with_reasons = int((scores["reason_1"] != "").sum())
    print(f"\n  {'step':<48} {'wall':>8} {'cpu':>8}   (load average {os.getloadavg()[0]:.2f})")
    for name, (seconds, cpu) in steps.items():
        print(f"  {name:<48} {seconds:7.2f}s {cpu:7.2f}s")
    verdict = "met" if total < 60 else "NOT met"
    print(f"  {'total':<48} {total:7.2f}s {total_cpu:7.2f}s   (target < 60 s wall: {verdict})")
    print(
        f"clients {len(scores):,}: prevention {listed['prevention']:,}, winback {listed['winback']:,}, "
        f"with reasons {with_reasons:,}; {len(scores) / total:,.0f} clients/s"
    )
    print(f"bare booster predictions: {bare:.2f} s; ours / bare = {total / bare:.1f}x")


if __name__ == "__main__":
    main()
