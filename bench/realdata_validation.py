"""Client-disjoint validation on the VALIDATION cutoff of the real-data feature table (never the test).

With ``train.split: overlap`` a client's training label windows overlap its validation window, so
the plain validation score rewards memorising clients. Here clients are split in two halves by a
CRC32 hash of ``client_id``; LightGBM and the logistic RFM baseline are fitted on one half's
training-cutoff rows and scored on the other half's validation-cutoff rows, then swapped; the
printed ROC-AUC is the mean over the two halves, per number of trees. docs/models.md ("Real data")
shows the tables this produced.

    .venv/bin/python bench/realdata_validation.py \\
        --features data/realdata/online_retail/features/features.parquet --kind churn \\
        --leaves 4 --min-data 100 --rounds 30,50,100 [--drop items_per_order_mean,items_trend_90d]
"""

from __future__ import annotations

import argparse
import logging
import sys
import zlib
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

# the repo root before bench/ (which holds a features.py that would shadow the package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.contract import FEATURE_COLUMNS
from models.baselines import fit_logistic_rfm_baseline
from models.dataset import feature_matrix, read_feature_table, split_frames


def half_of(ids: pd.Series) -> np.ndarray:
    """0/1 per client id, stable across runs and machines (CRC32, not Python's salted hash)."""
    return ids.map(lambda c: zlib.crc32(str(c).encode()) % 2).to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--kind", choices=("churn", "winback"), required=True)
    ap.add_argument("--horizon-days", type=int, default=100)
    ap.add_argument("--leaves", type=int, default=4)
    ap.add_argument("--min-data", type=int, default=100)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--rounds", default="30,50,100")
    ap.add_argument("--drop", default="", help="comma-separated features to leave out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    frames = split_frames(read_feature_table(args.features), args.kind, args.horizon_days, "overlap")
    drop = {d for d in args.drop.split(",") if d}
    names = [c for c in FEATURE_COLUMNS if c not in drop]
    rounds = [int(r) for r in args.rounds.split(",")]
    g_train, g_valid = half_of(frames.train.client_id), half_of(frames.valid.client_id)
    y_valid = frames.valid["label"].to_numpy()
    baseline = np.zeros(len(frames.valid))
    preds = {r: np.zeros(len(frames.valid)) for r in rounds}
    params = {
        "objective": "binary",
        "verbosity": -1,
        "num_threads": args.threads,
        "seed": 42,
        "deterministic": True,
        "learning_rate": args.learning_rate,
        "num_leaves": args.leaves,
        "min_data_in_leaf": args.min_data,
        "feature_fraction": 0.7,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 10.0,
    }
    for half in (0, 1):
        train = frames.train[g_train == half]
        valid = frames.valid[g_valid != half]
        y_train = train["label"].to_numpy()
        baseline[g_valid != half] = fit_logistic_rfm_baseline(train, y_train).predict_probability(valid)
        booster = lgb.train(params, lgb.Dataset(feature_matrix(train, names), y_train), max(rounds))
        X_valid = feature_matrix(valid, names)
        for r in rounds:
            preds[r][g_valid != half] = booster.predict(X_valid, num_iteration=r)

    def auc(p: np.ndarray) -> float:
        return float(np.mean([roc_auc_score(y_valid[g_valid == h], p[g_valid == h]) for h in (0, 1)]))

    base = auc(baseline)
    cells = " ".join(f"{r}: {auc(preds[r]):.4f} ({auc(preds[r]) - base:+.4f})" for r in rounds)
    print(f"{args.kind} valid {frames.split.valid_cutoff}: logistic_rfm {base:.4f} | trees {cells}")


if __name__ == "__main__":
    main()
