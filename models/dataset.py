"""Populations and leakage-free time splits of the feature table.

A row of the feature table is one client at one cutoff D; its label looks at the window
[D, D + horizon_days). The split is by cutoff, never by row:

* test cutoff T: the latest cutoff whose labels are fully observed (non-null) for the population;
* validation cutoff V: the latest cutoff with V + horizon_days <= T, so the validation labels are
  known before the test window starts;
* training cutoffs: every cutoff D with D + horizon_days <= V, so no training label reaches into the
  validation window (and therefore not into the test window either).

Each labelled snapshot thus only uses outcomes that were observable at the moment the next step of
the evaluation starts, the way the model would have been trained in production.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from features.contract import (
    CHURN_STATES,
    FEATURE_COLUMNS,
    FEATURE_KEYS,
    WINBACK_STATES,
    ContractError,
    check_feature_table,
)
from models.config import ModelKind, SplitMode

log = logging.getLogger(__name__)

LABEL_OF: dict[ModelKind, str] = {"churn": "churn_label", "winback": "winback_label"}
STATES_OF: dict[ModelKind, tuple[str, ...]] = {"churn": CHURN_STATES, "winback": WINBACK_STATES}


class SplitError(ValueError):
    """The feature table has too few labelled cutoffs for a leakage-free train/valid/test split."""


@dataclass(frozen=True)
class TimeSplit:
    """The cutoffs of one model's split (dates at 00:00 UTC) and the row counts and base rates."""

    kind: ModelKind
    horizon_days: int
    train_cutoffs: tuple[dt.date, ...]
    valid_cutoff: dt.date
    test_cutoff: dt.date
    mode: SplitMode = "strict"
    train_rows: int = 0
    valid_rows: int = 0
    test_rows: int = 0
    train_base_rate: float = float("nan")
    valid_base_rate: float = float("nan")
    test_base_rate: float = float("nan")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings)."""
        d = asdict(self)
        d["train_cutoffs"] = [c.isoformat() for c in self.train_cutoffs]
        d["valid_cutoff"] = self.valid_cutoff.isoformat()
        d["test_cutoff"] = self.test_cutoff.isoformat()
        return d


@dataclass(frozen=True)
class SplitFrames:
    """The rows of one population cut by a TimeSplit (labels as int 0/1)."""

    split: TimeSplit
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def read_feature_table(path: Path) -> pd.DataFrame:
    """Read the feature table Parquet and check its contract (errors name the file and column)."""
    if not path.exists():
        raise FileNotFoundError(f"feature table not found: {path}")
    frame = pd.read_parquet(path)
    check_feature_table(frame.columns, source=str(path))
    for label in LABEL_OF.values():
        if label not in frame.columns:
            raise ContractError(f"table 'features' ({path}): missing label column {label!r}")
    return frame


def cutoff_dates(frame: pd.DataFrame) -> pd.Series:
    """The cutoff of each row as a ``datetime.date`` (cutoff_at is a UTC timestamp at 00:00)."""
    cut = pd.to_datetime(frame["cutoff_at"], utc=True)
    return cut.dt.date


def population(frame: pd.DataFrame, kind: ModelKind) -> pd.DataFrame:
    """The rows of the churn (new, active) or win-back (lapsed_90/180/360) population."""
    return frame.loc[frame["state"].isin(STATES_OF[kind])]


def choose_split(
    frame: pd.DataFrame, kind: ModelKind, horizon_days: int, mode: SplitMode = "strict"
) -> TimeSplit:
    """Pick test, validation and training cutoffs for ``kind`` as described in the module docstring.

    ``horizon_days`` is the label window length in days (params.yaml ``features.horizon_days``).
    ``mode="overlap"`` relaxes only the training rule to D < V and D + horizon_days <= T: training
    windows may overlap the validation window (early stopping and calibration become slightly
    optimistic) but no label used for fitting reaches into the test window.
    Raises SplitError naming what is missing when fewer than three usable cutoffs exist.
    """
    pop = population(frame, kind)
    label = LABEL_OF[kind]
    if pop.empty:
        raise SplitError(f"feature table has no rows in the {kind} population (states {STATES_OF[kind]})")
    dates = cutoff_dates(pop)
    # A window is "fully observed" when (nearly) every population row has its label; a stray null
    # (e.g. a client created on the cutoff day) must not hide a whole cutoff.
    labelled = pop[label].notna().groupby(dates).mean()
    full: list[dt.date] = sorted(cast(dt.date, d) for d, share in labelled.items() if share >= 0.99)
    if not full:
        raise SplitError(f"{kind}: no cutoff has a fully observed label window ({label} is null everywhere)")
    horizon = dt.timedelta(days=horizon_days)
    test = full[-1]
    valid_candidates = [d for d in full if d + horizon <= test]
    if not valid_candidates:
        raise SplitError(
            f"{kind}: no validation cutoff ends its {horizon_days}-day label window before the test cutoff "
            f"{test}; the feature table needs cutoffs spanning at least {2 * horizon_days} days"
        )
    valid = valid_candidates[-1]
    if mode == "strict":
        train = tuple(d for d in full if d + horizon <= valid)
    else:
        train = tuple(d for d in full if d < valid and d + horizon <= test)
    if not train:
        raise SplitError(
            f"{kind}: no training cutoff ends its label window before the validation cutoff {valid}; "
            f"the feature table needs cutoffs spanning more than {2 * horizon_days} days "
            "(or set train.split: overlap)"
        )
    return TimeSplit(
        kind=kind,
        horizon_days=horizon_days,
        train_cutoffs=train,
        valid_cutoff=valid,
        test_cutoff=test,
        mode=mode,
    )


def split_frames(
    frame: pd.DataFrame, kind: ModelKind, horizon_days: int, mode: SplitMode = "strict"
) -> SplitFrames:
    """Cut the ``kind`` population into train/valid/test rows by :func:`choose_split`.

    Labels become a plain int column ``label`` (0/1); feature columns stay as they are.
    """
    split = choose_split(frame, kind, horizon_days, mode)
    pop = population(frame, kind)
    dates = cutoff_dates(pop)
    label = LABEL_OF[kind]

    def take(mask: pd.Series) -> pd.DataFrame:
        part = pop.loc[mask & pop[label].notna()].copy()
        part["label"] = part[label].astype("int64")
        return part.sort_values(list(FEATURE_KEYS), kind="stable").reset_index(drop=True)

    train = take(dates.isin(split.train_cutoffs))
    valid = take(dates == split.valid_cutoff)
    test = take(dates == split.test_cutoff)
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        if part["label"].nunique() < 2:
            raise SplitError(f"{kind}: the {name} rows have a single label value; cannot fit or evaluate")
    split = TimeSplit(
        **{
            **asdict(split),
            "train_rows": len(train),
            "valid_rows": len(valid),
            "test_rows": len(test),
            "train_base_rate": float(train["label"].mean()),
            "valid_base_rate": float(valid["label"].mean()),
            "test_base_rate": float(test["label"].mean()),
        }
    )
    log.info(
        "%s split: %d training cutoffs %s..%s (%d rows), valid %s (%d), test %s (%d)",
        kind,
        len(split.train_cutoffs),
        split.train_cutoffs[0],
        split.train_cutoffs[-1],
        len(train),
        split.valid_cutoff,
        len(valid),
        split.test_cutoff,
        len(test),
    )
    return SplitFrames(split=split, train=train, valid=valid, test=test)


def feature_matrix(frame: pd.DataFrame, feature_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """The model inputs as a float64 array in ``feature_names`` order (nulls -> NaN).

    Raises ContractError naming the first missing column, so a bad table fails here and not as a
    LightGBM shape error.
    """
    missing = [c for c in feature_names if c not in frame.columns]
    if missing:
        raise ContractError(
            f"table 'features': missing model input column(s) {', '.join(map(repr, missing))}"
        )
    cols = []
    for c in feature_names:
        s = frame[c]
        if s.dtype == bool or str(s.dtype) == "boolean":
            s = s.astype("Float64")
        cols.append(pd.to_numeric(s, errors="raise").to_numpy(dtype="float64", na_value=np.nan))
    if not cols:
        return np.empty((len(frame), 0))
    return np.column_stack(cols)


def default_feature_names() -> list[str]:
    """All contract model inputs, in contract order."""
    return list(FEATURE_COLUMNS)
