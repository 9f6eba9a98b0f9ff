"""Client-disjoint validation on the VALIDATION cutoff of the real-data feature table (never the test).

With ``train.split: overlap`` a client's training label windows overlap its validation window, so
the plain validation score rewards memorising clients. Here clients are split in two halves by a
CRC32 hash of ``client_id``; LightGBM and the logistic RFM baseline are fitted on one half's
training-cutoff rows and scored on the other half's validation-cutoff rows, then swapped; the
printed ROC-AUC is the mean over the two halves, per number of trees. docs/models.md ("Real data")
shows the tables this produced.

With 628 win-back validation rows one split is noisy (a setting moves by 0.03 between splits), so
``--salts N`` redraws the halves N times (salted CRC32) and ``--seeds`` refits with other LightGBM
seeds; the line then gives the mean over every (salt, seed, half) and, in brackets, the smallest
paired difference to the logistic baseline. ``--strict`` is the out-of-time check instead: fit on
the training cutoffs whose label window ends before the validation cutoff (churn only: 3 cutoffs,
every client looking new, as at the test cutoff's earlier cutoffs), score all validation rows.

    .venv/bin/python bench/realdata_validation.py \\
        --features data/realdata/online_retail/features/features.parquet --kind churn \\
        --leaves 4 --min-data 100 --rounds 30,50,100 [--drop items_per_order_mean,items_trend_90d] \\
        [--feature-fraction 0.3 --extra-trees] [--salts 5 --seeds 42,1,2,3] [--strict] \\
        [--extra /tmp/extra.parquet --add x_unit_price]   (bench/realdata_extra_features.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

# the repo root before bench/ (which holds a features.py that would shadow the package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.contract import FEATURE_COLUMNS
from models.baselines import fit_logistic_rfm_baseline
from models.dataset import cutoff_dates, feature_matrix, read_feature_table, split_frames


def half_of(ids: pd.Series, salt: int = 0) -> np.ndarray:
    """0/1 per client id, stable across runs and machines (CRC32, not Python's salted hash).

    Salt 0 is the original split (the plain id); salt k > 0 hashes "k:<id>" for another draw.
    """
    prefix = f"{salt}:" if salt else ""
    return ids.map(lambda c: zlib.crc32(f"{prefix}{c}".encode()) % 2).to_numpy()


def folds(
    frames_train: pd.DataFrame, frames_valid: pd.DataFrame, args: argparse.Namespace
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(training rows, validation rows) pairs: client-disjoint halves per salt, or the strict split."""
    if args.strict:
        horizon = dt.timedelta(days=args.horizon_days)
        valid_cutoff = cutoff_dates(frames_valid).iloc[0]
        keep = np.array([d + horizon <= valid_cutoff for d in cutoff_dates(frames_train)], dtype=bool)
        if not keep.any():
            sys.exit(f"{args.kind}: no training cutoff ends its label window before {valid_cutoff}")
        yield frames_train[keep], frames_valid
        return
    for salt in range(args.salts):
        g_train, g_valid = half_of(frames_train.client_id, salt), half_of(frames_valid.client_id, salt)
        for half in (0, 1):
            yield frames_train[g_train == half], frames_valid[g_valid != half]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--kind", choices=("churn", "winback"), required=True)
    ap.add_argument("--horizon-days", type=int, default=100)
    ap.add_argument("--leaves", type=int, default=4)
    ap.add_argument("--min-data", type=int, default=100)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--rounds", default="30,50,100")
    ap.add_argument("--feature-fraction", type=float, default=0.7)
    ap.add_argument("--lambda-l2", type=float, default=10.0)
    ap.add_argument("--extra-trees", action="store_true", help="LightGBM extra_trees (random thresholds)")
    ap.add_argument("--salts", type=int, default=1, help="redraws of the client halves (1: the original)")
    ap.add_argument("--seeds", default="42", help="comma-separated LightGBM seeds")
    ap.add_argument("--strict", action="store_true", help="out-of-time check instead of client halves")
    ap.add_argument("--drop", default="", help="comma-separated features to leave out")
    ap.add_argument("--extra", type=Path, help="x_* prototype columns (bench/realdata_extra_features.py)")
    ap.add_argument("--add", default="", help="comma-separated x_* columns to add (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    table = read_feature_table(args.features)
    added: list[str] = []
    if args.extra:
        extra = pd.read_parquet(args.extra)
        extra["cutoff_at"] = pd.to_datetime(extra.cutoff_at, utc=True).astype(table.cutoff_at.dtype)
        added = [c for c in args.add.split(",") if c] or [c for c in extra.columns if c.startswith("x_")]
        table = table.merge(
            extra[["client_id", "cutoff_at", *added]], on=["client_id", "cutoff_at"], how="left"
        )
    frames = split_frames(table, args.kind, args.horizon_days, "overlap")
    drop = {d for d in args.drop.split(",") if d}
    names = [c for c in FEATURE_COLUMNS if c not in drop] + added
    rounds = [int(r) for r in args.rounds.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    base_auc: list[float] = []
    tree_auc: dict[int, list[float]] = {r: [] for r in rounds}
    for train, valid in folds(frames.train, frames.valid, args):
        y_train, y_valid = train["label"].to_numpy(), valid["label"].to_numpy()
        baseline = fit_logistic_rfm_baseline(train, y_train).predict_probability(valid)
        X_train, X_valid = feature_matrix(train, names), feature_matrix(valid, names)
        for seed in seeds:
            params = {
                "objective": "binary",
                "verbosity": -1,
                "num_threads": args.threads,
                "seed": seed,
                "deterministic": True,
                "force_col_wise": True,
                "learning_rate": args.learning_rate,
                "num_leaves": args.leaves,
                "min_data_in_leaf": args.min_data,
                "feature_fraction": args.feature_fraction,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "lambda_l2": args.lambda_l2,
                "extra_trees": args.extra_trees,
            }
            booster = lgb.train(params, lgb.Dataset(X_train, y_train), max(rounds))
            base_auc.append(float(roc_auc_score(y_valid, baseline)))
            for r in rounds:
                tree_auc[r].append(float(roc_auc_score(y_valid, booster.predict(X_valid, num_iteration=r))))

    base = np.array(base_auc)
    cells = " ".join(
        f"{r}: {np.mean(v):.4f} ({np.mean(np.array(v) - base):+.4f}, min {np.min(np.array(v) - base):+.4f})"
        for r, v in tree_auc.items()
    )
    scheme = "strict" if args.strict else f"disjoint x{args.salts}"
    print(
        f"{args.kind} valid {frames.split.valid_cutoff} ({scheme}, {len(base)} fits): "
        f"logistic_rfm {base.mean():.4f} | trees {cells}"
    )


if __name__ == "__main__":
    main()
