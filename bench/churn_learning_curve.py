"""Learning curve of the churn and win-back gaps to the observable oracle (issue 4).

    python bench/churn_learning_curve.py --root /tmp/churn/lc --clients 20000 40000 60000 100000

For each sample size it runs the real stages in ROOT/c<N>/ (generate, ingest, features, train,
evaluate --truth) with a copy of params.yaml in which only ``train.num_threads`` is changed
(``--threads``, 1 by default: the machine is shared) and MLflow goes to ROOT/c<N>/mlflow.db, so the
project's store is never touched. Nothing is chosen on the test cutoff: the params are fixed before
the run. Prints and writes ROOT/learning_curve.json with, per size and model, the test ROC-AUC of
the model and of the observable oracle, the paired model - oracle difference and its 95% interval
(from details.json), the validation ROC-AUC of the model and of the oracle, and the wall time of
each stage with the 1-minute load average before it (``os.getloadavg``).

The baseline of each row is the observable oracle scored on the same rows in the same run.

``--ceiling`` adds a diagnostic (not a model) on the validation cutoff: LightGBM fitted with the
cross-entropy objective on the observable oracle's probability itself (a noise-free soft label)
on the training cutoffs, with the pipeline's churn settings, scored on V against the real labels.
Its ROC-AUC approximates the best ranking the feature table can express (``ceiling_features``);
the same with the generator's latent ``h0`` and ``order_rate`` per client added as columns
(``ceiling_features_latent``) shows how much of the rest is the latent parameters the oracle is
given. ``--reuse`` skips the stages of a size whose folder already holds their outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.config import TrainParams  # noqa: E402
from models.dataset import default_feature_names, feature_matrix, read_feature_table, split_frames  # noqa: E402
from models.metrics import roc_auc  # noqa: E402
from models.train import lightgbm_params  # noqa: E402

COMEBACK = str(Path(sys.executable).with_name("comeback"))
ORACLE_COLUMN = {"churn": "churn_probability_observable", "winback": "winback_probability_observable"}


def run_stage(
    name: str, args: list[str], env: dict[str, str], log: Path, skip: Path | None = None
) -> dict[str, float]:
    if skip is not None and skip.exists():
        print(f"  {name:9s} reused ({skip})", flush=True)
        return {"seconds": float("nan"), "load1_before": float("nan")}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n== {name}: {' '.join(args)}\n")
        fh.flush()
        subprocess.run([COMEBACK, *args], check=True, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    print(f"  {name:9s} {seconds:7.1f} s  (load1 before {load:.2f})", flush=True)
    return {"seconds": round(seconds, 1), "load1_before": round(load, 2)}


def valid_scores(features: Path, truth: Path, horizon_days: int, models: Path) -> dict[str, Any]:
    """Validation-cutoff ROC-AUC of the trained model (its own metrics.json) and of the oracle."""
    frame = read_feature_table(features)
    t = pd.read_parquet(truth)
    t["client_id"] = t["client_id"].astype(str)
    t["cutoff_at"] = pd.to_datetime(t["cutoff_at"], utc=True)
    out: dict[str, Any] = {}
    for kind, column in ORACLE_COLUMN.items():
        valid = split_frames(frame, kind, horizon_days).valid  # type: ignore[arg-type]
        keys = valid[["client_id", "cutoff_at", "label"]].copy()
        keys["client_id"] = keys["client_id"].astype(str)
        keys["cutoff_at"] = pd.to_datetime(keys["cutoff_at"], utc=True)
        merged = keys.merge(t[["client_id", "cutoff_at", column]], on=["client_id", "cutoff_at"], how="left")
        ok = merged[column].notna().to_numpy()
        metrics = json.loads((models / kind / "metrics.json").read_text())
        out[kind] = {
            "valid_model_roc_auc": metrics["valid"]["roc_auc"],
            "best_iteration": json.loads((models / kind / "model.json").read_text())["best_iteration"],
            "valid_oracle_roc_auc": roc_auc(merged["label"].to_numpy()[ok], merged[column].to_numpy()[ok]),
            "valid_rows": len(valid),
        }
    return out


def feature_ceiling(run: Path, params: dict[str, Any], threads: int) -> dict[str, float]:
    """Churn on V: ROC-AUC (real labels) of boosters fitted on the observable oracle as a soft label."""
    frame = read_feature_table(run / "features" / "features.parquet")
    frame["client_id"] = frame["client_id"].astype(str)
    frame["cutoff_at"] = pd.to_datetime(frame["cutoff_at"], utc=True)
    truth = pd.read_parquet(
        run / "raw" / "truth.parquet", columns=["client_id", "cutoff_at", ORACLE_COLUMN["churn"]]
    )
    truth["client_id"] = truth["client_id"].astype(str)
    truth["cutoff_at"] = pd.to_datetime(truth["cutoff_at"], utc=True)
    latent = pd.read_parquet(run / "raw" / "truth_clients.parquet", columns=["client_id", "h0", "order_rate"])
    latent["client_id"] = latent["client_id"].astype(str)
    frame = frame.merge(truth, on=["client_id", "cutoff_at"], how="left").merge(
        latent, on="client_id", how="left"
    )
    frames = split_frames(frame, "churn", params["features"]["horizon_days"])
    train_params = TrainParams.model_validate({**params["train"], "num_threads": threads})
    lgb_params = {
        **lightgbm_params("churn", train_params),
        "objective": "cross_entropy",
        "metric": "cross_entropy",
    }
    target = ORACLE_COLUMN["churn"]
    tr = frames.train.loc[frames.train[target].notna()]
    va = frames.valid
    known = va[target].notna().to_numpy()
    out: dict[str, float] = {}
    names = default_feature_names()
    for name, columns in (
        ("ceiling_features", names),
        ("ceiling_features_latent", [*names, "h0", "order_rate"]),
    ):
        train_set = lgb.Dataset(feature_matrix(tr, columns), tr[target].to_numpy())
        x_valid = feature_matrix(va, columns)
        valid_set = lgb.Dataset(x_valid[known], va[target].to_numpy()[known], reference=train_set)
        booster = lgb.train(
            lgb_params,
            train_set,
            num_boost_round=2000,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        p = booster.predict(x_valid, num_iteration=booster.best_iteration)
        out[name] = roc_auc(va["label"].to_numpy(), np.asarray(p))
        print(f"  {name:24s} V ROC-AUC {out[name]:.4f} ({booster.best_iteration} trees)", flush=True)
    return out


def run_size(
    root: Path, clients: int, seed: int, threads: int, base_params: Path, *, ceiling: bool, reuse: bool
) -> dict[str, Any]:
    run = root / f"c{clients}"
    run.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load(base_params.read_text())
    params["train"]["num_threads"] = threads
    params_path = run / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "COMEBACK_TRACKING_URI": f"sqlite:///{run / 'mlflow.db'}",
        "OMP_NUM_THREADS": str(threads),
    }
    log = run / "stages.log"
    p = str(params_path)
    print(f"{clients} clients (seed {seed}) in {run}", flush=True)
    features = run / "features" / "features.parquet"
    stages = {
        "generate": (
            ["--clients", str(clients), "--seed", str(seed), "--out", str(run / "raw")],
            run / "raw",
        ),
        "ingest": (["--raw", str(run / "raw"), "--out", str(run / "clean")], run / "clean"),
        "features": (["--clean", str(run / "clean"), "--out", str(run / "features")], features),
        "train": (["--features", str(features), "--out", str(run / "models")], run / "models"),
        "evaluate": (
            [
                *("--features", str(features), "--models", str(run / "models")),
                *("--out", str(run / "reports"), "--truth", str(run / "raw" / "truth.parquet")),
            ],
            run / "reports" / "details.json",
        ),
    }
    earlier = (
        json.loads((run / "result.json").read_text())["times"]
        if reuse and (run / "result.json").exists()
        else {}
    )
    times = {}
    for stage, (args, output) in stages.items():
        timing = run_stage(stage, [stage, *args, "--params", p], env, log, output if reuse else None)
        times[stage] = earlier.get(stage, timing) if timing["seconds"] != timing["seconds"] else timing
    details = json.loads((run / "reports" / "details.json").read_text())
    valid = valid_scores(
        features, run / "raw" / "truth.parquet", params["features"]["horizon_days"], run / "models"
    )
    result: dict[str, Any] = {"clients": clients, "seed": seed, "threads": threads, "times": times}
    for kind in ("churn", "winback"):
        d = details[kind]
        f = d["forecasts"]
        gap = d["model_minus_oracle"]
        result[kind] = {
            "test_cutoff": d["split"]["test_cutoff"],
            "test_rows": d["split"]["test_rows"],
            "train_rows": d["split"]["train_rows"],
            "model_roc_auc": f["model"]["roc_auc"],
            "model_ci": [f["model"]["roc_auc_ci_low"], f["model"]["roc_auc_ci_high"]],
            "oracle_roc_auc": f["oracle"]["roc_auc"],
            "gap": gap["roc_auc_diff"],
            "gap_ci": [gap["roc_auc_diff_ci_low"], gap["roc_auc_diff_ci_high"]],
            "model_ece": f["model"]["ece"],
            **valid[kind],
        }
    if ceiling:
        result["churn"].update(feature_ceiling(run, params, threads))
    (run / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="scratch folder (outside the repository)")
    parser.add_argument("--clients", type=int, nargs="+", default=[20000, 40000, 60000, 100000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="train.num_threads (LightGBM)")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--ceiling", action="store_true", help="add the feature-ceiling diagnostic on V")
    parser.add_argument("--reuse", action="store_true", help="skip stages whose outputs exist")
    args = parser.parse_args()
    results = [
        run_size(args.root, n, args.seed, args.threads, args.params, ceiling=args.ceiling, reuse=args.reuse)
        for n in args.clients
    ]
    path = args.root / "learning_curve.json"
    previous = json.loads(path.read_text()) if path.exists() else []
    done = {(r["clients"], r["seed"]) for r in results}
    path.write_text(
        json.dumps([r for r in previous if (r["clients"], r["seed"]) not in done] + results, indent=1)
    )
    print("\nclients  kind     model  oracle  gap [95%]                valid model/oracle  train s  total s")
    for r in results:
        total = sum(t["seconds"] for t in r["times"].values())
        for kind in ("churn", "winback"):
            k = r[kind]
            print(
                f"{r['clients']:7d}  {kind:7s}  {k['model_roc_auc']:.4f} {k['oracle_roc_auc']:.4f}  "
                f"{k['gap']:+.4f} [{k['gap_ci'][0]:+.4f}, {k['gap_ci'][1]:+.4f}]  "
                f"{k['valid_model_roc_auc']:.4f}/{k['valid_oracle_roc_auc']:.4f}     "
                f"{r['times']['train']['seconds']:6.1f}  {total:6.1f}"
            )
        if "ceiling_features" in r["churn"]:
            c = r["churn"]
            print(
                f"{r['clients']:7d}  churn V: model {c['valid_model_roc_auc']:.4f}, feature ceiling "
                f"{c['ceiling_features']:.4f}, with latent h0/order_rate {c['ceiling_features_latent']:.4f}, "
                f"oracle {c['valid_oracle_roc_auc']:.4f}"
            )


if __name__ == "__main__":
    main()
