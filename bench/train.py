"""Training and single-row scoring speed of the models, as ratios against baselines of the same run.

    python bench/train.py [--features data/features/features.parquet] [--threads 2]

Without --features it uses the fabricated table of the model tests (small). Prints:
* fit seconds of each LightGBM model (early stopping, calibration included) and the ratio to the
  logistic RFM baseline fitted on the same rows;
* single-row latency of LoadedModel.predict_probability and predict_with_reasons (µs, median of
  many calls) and the ratio to a bare ``booster.predict`` of the same row.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.baselines import fit_logistic_rfm_baseline
from models.config import TrainParams
from models.dataset import read_feature_table, split_frames
from models.train import fit_on_frames


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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--horizon-days", type=int, default=100)
    parser.add_argument(
        "--replicate",
        type=int,
        default=1,
        help="stack the training rows N times (fit time at N x the clients; e.g. 50 x 20k = 1M)",
    )
    args = parser.parse_args()
    if args.features is not None:
        frame = read_feature_table(args.features)
        source = str(args.features)
    else:
        from tests.model.fabricate import fabricate_features

        frame, _ = fabricate_features(3000)
        source = "fabricated (3000 clients)"
    params = TrainParams(num_threads=args.threads)
    print(f"feature table: {source}, {len(frame):,} rows, num_threads={args.threads}")
    for kind in ("churn", "winback"):
        bench_kind(frame, kind, params, args.horizon_days, args.replicate)


def bench_kind(
    frame: pd.DataFrame, kind: str, params: TrainParams, horizon_days: int, replicate: int
) -> None:
    """Fit one model and time its single-row and batch scoring."""
    frames = split_frames(frame, kind, horizon_days)  # type: ignore[arg-type]
    if replicate > 1:
        frames = dataclasses.replace(frames, train=pd.concat([frames.train] * replicate, ignore_index=True))
    t0 = time.perf_counter()
    fit_logistic_rfm_baseline(frames.train, frames.train["label"].to_numpy())
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = fit_on_frames(frames, params, feature_names=list(_names()))
    fit_s = time.perf_counter() - t0
    print(
        f"{kind}: {len(frames.train):,} training rows, {trained.best_iteration} trees: fit {fit_s:.2f} s "
        f"= {fit_s / base_s:.1f}x the logistic RFM baseline ({base_s:.2f} s)"
    )
    model = trained.model
    model.num_threads = 1
    model._predict_kwargs = {"num_threads": 1}
    row = frames.test.iloc[[0]]
    arr = model.matrix(row)
    bare = _median_us(lambda: model.booster.predict(arr, raw_score=True, num_threads=1))
    prob = _median_us(lambda: model.predict_probability(row))
    prob_arr = _median_us(lambda: model.predict_probability(arr))
    reasons = _median_us(lambda: model.predict_with_reasons(row, 3))
    print(
        f"  single row: bare booster.predict {bare:.0f} µs; predict_probability(DataFrame) {prob:.0f} µs "
        f"({prob / bare:.2f}x), (ndarray) {prob_arr:.0f} µs ({prob_arr / bare:.2f}x); "
        f"predict_with_reasons {reasons:.0f} µs ({reasons / bare:.2f}x)"
    )
    batch = frames.test
    t0 = time.perf_counter()
    model.predict_probability(batch)
    per_row = (time.perf_counter() - t0) / len(batch) * 1e6
    print(f"  batch of {len(batch):,}: {per_row:.1f} µs per row ({per_row / bare:.3f}x a single bare call)")


def _names() -> tuple[str, ...]:
    from features.contract import FEATURE_COLUMNS

    return FEATURE_COLUMNS


if __name__ == "__main__":
    main()
