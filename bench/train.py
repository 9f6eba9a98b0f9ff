"""The train stage's time split: model selection and fitting against everything else, in one run.

    python bench/train.py [--features data/features/features.parquet] [--params params.yaml] [--threads 2]

Runs ``comeback train`` as a user would (a fresh process, its own sqlite MLflow store in a temp
folder, registration on) and reports, from the outside and from the stage's own accounting:

* the stage's wall time (process start to exit) and, per model, the selection (search, candidates,
  final fit) seconds with the search's trials against its budget (``train.search``);
* the time outside fitting: process start, reading the table, saving the model folders, MLflow
  logging and registration = wall - fitting; issue 12's target is at most 25% of the wall time;
* single-row latency of the trained churn model's ``predict_probability`` against a bare
  ``booster.predict`` of the same row (median of many calls).

Without --features it builds the default sample (generate 20000 clients seed 7, ingest,
features with params.yaml) in the temp folder first (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_us(fn: object, repeats: int = 2000) -> float:
    call = fn  # type: ignore[assignment]
    for _ in range(50):
        call()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        call()  # type: ignore[operator]
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=Path, default=None)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "comeback"
    cli = str(exe) if exe.exists() else "comeback"
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        params = yaml.safe_load(args.params.read_text(encoding="utf-8"))
        params["train"]["num_threads"] = args.threads
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        env = {
            **os.environ,
            "COMEBACK_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "OMP_NUM_THREADS": str(args.threads),
        }
        features = args.features
        if features is None:
            g = params["generate"]
            for cmd in (
                ["generate", "--clients", str(g["clients"]), "--seed", str(g["seed"]), "--out", "raw"],
                ["ingest", "--raw", "raw", "--out", "clean", "--params", "params.yaml"],
                ["features", "--clean", "clean", "--out", "features", "--params", "params.yaml"],
            ):
                subprocess.run([cli, *cmd], cwd=work, env=env, check=True, capture_output=True)
            features = work / "features" / "features.parquet"
        shutil.rmtree(work / "models", ignore_errors=True)
        t0 = time.perf_counter()
        done = subprocess.run(
            [cli, "train", "--features", str(features), "--out", "models", "--params", "params.yaml"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"train failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        fit = 0.0
        budget = params["train"].get("search", {})
        for kind in ("churn", "winback"):
            meta = json.loads((work / "models" / kind / "model.json").read_text(encoding="utf-8"))
            sel = json.loads((work / "models" / kind / "selection.json").read_text(encoding="utf-8"))
            fit += meta["fit_seconds"]
            search = sel["search"]
            print(
                f"{kind}: {sel['winner']}, selection and fitting {meta['fit_seconds']:.1f} s, of it the "
                f"search {search.get('seconds', 0):.1f} s ({search.get('trials')} trials, "
                f"{search.get('pruned')} pruned; budget {budget.get('trials')} trials / "
                f"{budget.get('seconds')} s)"
            )
        line = re.search(r"train: .*outside fitting\)", " ".join(done.stdout.split()))
        print(f"stage's own accounting: {line.group(0) if line else '(not printed)'}")
        outside = wall - fit
        print(
            f"train stage wall {wall:.1f} s: fitting {fit:.1f} s, outside fitting {outside:.1f} s = "
            f"{100 * outside / wall:.1f}% (target <= 25%)"
        )

        import pandas as pd

        from models.scorer import load_model_from_dir

        model = load_model_from_dir(work / "models" / "churn", num_threads=1)
        frame = pd.read_parquet(features)
        row = frame[frame["state"].isin(["new", "active"])].head(1)
        x = model.matrix(row)
        p_us = _median_us(lambda: model.predict_probability(x))
        bare_us = _median_us(lambda: model.booster.predict(x, raw_score=True, num_threads=1))
        print(
            f"single row: predict_probability {p_us:.1f} us, bare booster.predict {bare_us:.1f} us "
            f"(ratio {p_us / bare_us:.2f}); {model.booster.num_trees()} trees"
        )


if __name__ == "__main__":
    main()
