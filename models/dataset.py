"""Populations and leakage-free time splits of the feature table.

A row of the feature table is one client at one cutoff D; its label looks at the window
[D, D + horizon_days). Splits are by cutoff, never by row:

* test cutoff T: ``train.test_cutoff`` when pinned, else the latest cutoff whose labels are fully
  observed for the population; it is only ever scored, never fitted or chosen on;
* rolling-origin folds (:func:`plan_folds`): validation cutoffs V before T with V + horizon_days
  <= T, each with its training cutoffs D < V (D + horizon_days <= T as well), strict (D +
  horizon_days <= V) where the history allows and client-disjoint where training windows overlap
  the validation window;
* the final model is fitted on the last fold's training cutoffs and calibrated at its validation
  cutoff (:meth:`FoldPlan.final_split`).

No label used for fitting or choosing reaches into the test window, the way the model would have
been trained in production on the day of the test cutoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from collections.abc import Sequence
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
from models.config import ModelKind, SplitChoice, SplitMode

log = logging.getLogger(__name__)

LABEL_OF: dict[ModelKind, str] = {"churn": "churn_label", "winback": "winback_label"}
OTHER: dict[ModelKind, ModelKind] = {"churn": "winback", "winback": "churn"}
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
    pooled: bool = False  # the model also trained on the other population's rows (pooled_rows)
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimeSplit:
        """Inverse of :meth:`to_json` (split.json of a trained model folder)."""
        d = dict(data)
        d["train_cutoffs"] = tuple(dt.date.fromisoformat(c) for c in d["train_cutoffs"])
        d["valid_cutoff"] = dt.date.fromisoformat(d["valid_cutoff"])
        d["test_cutoff"] = dt.date.fromisoformat(d["test_cutoff"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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


def labelled_cutoffs(frame: pd.DataFrame, kind: ModelKind) -> dict[dt.date, tuple[int, int]]:
    """Cutoffs whose label window is fully observed for the ``kind`` population: {date: (rows, events)}.

    A window is "fully observed" when (nearly) every population row has its label; a stray null
    (e.g. a client created on the cutoff day) must not hide a whole cutoff.
    """
    pop = population(frame, kind)
    label = LABEL_OF[kind]
    if pop.empty:
        return {}
    dates = cutoff_dates(pop)
    stats = pd.DataFrame({"d": dates.to_numpy(), "known": pop[label].notna().to_numpy(), "y": pop[label]})
    out: dict[dt.date, tuple[int, int]] = {}
    for d, g in stats.groupby("d", sort=True):
        if g["known"].mean() >= 0.99:
            known = g.loc[g["known"], "y"].astype("int64")
            out[cast(dt.date, d)] = (len(known), int(known.sum()))
    return out


def choose_test_cutoff(
    frame: pd.DataFrame, kind: ModelKind, horizon_days: int, pinned: dt.date | None = None
) -> dt.date:
    """The test cutoff: ``pinned`` (train.test_cutoff) or the latest cutoff with a fully observed window.

    A pinned cutoff that is not in the table, or whose label window is not fully observed, is an
    error naming the cutoffs that would do.
    """
    pop = population(frame, kind)
    label = LABEL_OF[kind]
    if pop.empty:
        raise SplitError(f"feature table has no rows in the {kind} population (states {STATES_OF[kind]})")
    full = sorted(labelled_cutoffs(frame, kind))
    if not full:
        raise SplitError(f"{kind}: no cutoff has a fully observed label window ({label} is null everywhere)")
    if pinned is None:
        return full[-1]
    if pinned not in full:
        near = ", ".join(d.isoformat() for d in full[-6:])
        raise SplitError(
            f"{kind}: test cutoff {pinned.isoformat()} (train.test_cutoff / --test-cutoff) is not a cutoff "
            f"of the feature table with a fully observed {horizon_days}-day label window; the latest such "
            f"cutoffs are {near} (set features.cutoffs.end to the test cutoff so the schedule lands on it)"
        )
    return pinned


@dataclass(frozen=True)
class Fold:
    """One validation step of the rolling origin: fit on ``train_cutoffs``, validate at ``valid_cutoff``.

    ``mode`` strict: every training label window ends before the validation cutoff. overlap:
    training cutoffs only precede it (their windows may overlap the validation window), so the
    fold is client-disjoint: clients are split in two halves, each half's training rows validate
    on the other half's validation rows (:func:`fold_parts`).
    """

    valid_cutoff: dt.date
    train_cutoffs: tuple[dt.date, ...]
    mode: SplitMode
    train_rows: int
    train_events: int
    valid_rows: int
    valid_events: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings)."""
        d = asdict(self)
        d["valid_cutoff"] = self.valid_cutoff.isoformat()
        d["train_cutoffs"] = [c.isoformat() for c in self.train_cutoffs]
        return d


@dataclass(frozen=True)
class FoldPlan:
    """The rolling-origin folds of one population, oldest first; the last one is the final fit's."""

    kind: ModelKind
    horizon_days: int
    test_cutoff: dt.date
    folds: tuple[Fold, ...]

    @property
    def last(self) -> Fold:
        return self.folds[-1]

    def final_split(self) -> TimeSplit:
        """The final model's split: the last fold's training cutoffs, its validation cutoff (where
        the model is calibrated) and the test cutoff."""
        f = self.last
        return TimeSplit(
            kind=self.kind,
            horizon_days=self.horizon_days,
            train_cutoffs=f.train_cutoffs,
            valid_cutoff=f.valid_cutoff,
            test_cutoff=self.test_cutoff,
            mode=f.mode,
        )


def _counts(stats: dict[dt.date, tuple[int, int]], days: Sequence[dt.date]) -> tuple[int, int]:
    rows = sum(stats[d][0] for d in days)
    return rows, sum(stats[d][1] for d in days)


def plan_folds(
    frame: pd.DataFrame,
    kind: ModelKind,
    horizon_days: int,
    *,
    split: SplitChoice = "auto",
    folds: int = 3,
    test_cutoff: dt.date | None = None,
    min_rows: int = 100,
    min_positives: int = 10,
) -> FoldPlan:
    """Rolling-origin folds before the test cutoff T, adapted to the history the table holds.

    * Only cutoffs D with D + horizon_days <= T are used for fitting or choosing, so no training
      or validation label window reaches past T.
    * Validation cutoffs: the latest ``folds`` such cutoffs, at least ``horizon_days // 4`` days
      apart (so the folds do not all validate on nearly the same window).
    * Per fold, strict (training windows end before the validation cutoff) when ``split`` is
      strict, or when it is auto and strict keeps at least half of the rows overlap would use and
      the minimum counts; else overlap, client-disjoint (see :class:`Fold`).
    * A fold whose training or validation rows fall short of ``min_rows`` rows or ``min_positives``
      events and non-events is dropped; when none is left the population stops with a SplitError
      naming the population, the cutoff and the counts, or how much history is needed.
    """
    test = choose_test_cutoff(frame, kind, horizon_days, test_cutoff)
    stats = labelled_cutoffs(frame, kind)
    horizon = dt.timedelta(days=horizon_days)
    usable = [d for d in sorted(stats) if d + horizon <= test]
    if len(usable) < 2:
        first = min(stats)
        raise SplitError(
            f"{kind}: the history before the test cutoff {test} is too short for an honest split: fitting "
            f"and validation need at least two cutoffs whose {horizon_days}-day label windows end by "
            f"{test}, i.e. cutoffs from {test - horizon - dt.timedelta(days=1)} back, and the table has "
            f"{len(usable)} (its labelled cutoffs start {first}); the export needs at least about "
            f"{2 * horizon_days + 30} days of history before the end of the last label window"
        )
    gap = dt.timedelta(days=max(1, horizon_days // 4))
    valids: list[dt.date] = []
    for d in reversed(usable[1:]):
        if not valids or valids[-1] - d >= gap:
            valids.append(d)
        if len(valids) == folds:
            break
    chosen: list[Fold] = []
    problems: list[str] = []
    for v in sorted(valids):
        strict = [d for d in usable if d + horizon <= v]
        overlap = [d for d in usable if d < v]
        s_rows, s_events = _counts(stats, strict)
        o_rows, o_events = _counts(stats, overlap)
        strict_ok = (
            bool(strict)
            and s_rows >= min_rows
            and min(s_events, s_rows - s_events) >= min_positives
            and (split == "strict" or s_rows >= 0.5 * o_rows)
        )
        mode: SplitMode = "strict" if split == "strict" or (split == "auto" and strict_ok) else "overlap"
        days = strict if mode == "strict" else overlap
        rows, events = (s_rows, s_events) if mode == "strict" else (o_rows, o_events)
        v_rows, v_events = stats[v]
        short = [
            f"{what} {n} rows with {e} events"
            for what, n, e in (("training", rows, events), ("validation", v_rows, v_events))
            if n < min_rows or min(e, n - e) < min_positives
        ]
        if not days or short:
            detail = "; ".join(short) or "no training cutoff"
            problems.append(f"validation cutoff {v} ({mode}): {detail}")
            continue
        chosen.append(Fold(v, tuple(days), mode, rows, events, v_rows, v_events))
    if not chosen:
        raise SplitError(
            f"{kind} population: too few rows to train on before the test cutoff {test} "
            f"(needs train.min_rows {min_rows} rows and train.min_positives {min_positives} events and "
            f"non-events in training and validation): {'; '.join(problems)}"
        )
    return FoldPlan(kind=kind, horizon_days=horizon_days, test_cutoff=test, folds=tuple(chosen))


def take_rows(pop: pd.DataFrame, kind: ModelKind, days: Sequence[dt.date] | dt.date) -> pd.DataFrame:
    """The labelled rows of ``pop`` (one population) at ``days``, with the label as int ``label``."""
    wanted = [days] if isinstance(days, dt.date) else list(days)
    label = LABEL_OF[kind]
    mask = cutoff_dates(pop).isin(wanted) & pop[label].notna()
    part = pop.loc[mask].copy()
    part["label"] = part[label].astype("int64")
    return part.sort_values(list(FEATURE_KEYS), kind="stable").reset_index(drop=True)


def client_half(ids: pd.Series, seed: int) -> np.ndarray:
    """0/1 per client id, stable across runs and machines (CRC32 of "seed:id", not Python's hash)."""
    return ids.astype(str).map(lambda c: zlib.crc32(f"{seed}:{c}".encode()) % 2).to_numpy()


def pooled_rows(frame: pd.DataFrame, kind: ModelKind, days: Sequence[dt.date] | dt.date) -> pd.DataFrame:
    """The other population's labelled rows at ``days``, labelled with ``kind``'s event.

    Churn (no completed order within the horizon, new and active clients) and win-back (a completed
    order within it, lapsed clients) ask one question of two populations, so the other
    population's rows can join a model's training rows: a win-back model with few lapsed rows
    learns from the active ones' orders too. The label is flipped (1 - the other model's label).
    """
    other = OTHER[kind]
    rows = take_rows(population(frame, other), other, days)
    rows["label"] = 1 - rows["label"]
    return rows


def fold_parts(
    frame: pd.DataFrame, kind: ModelKind, fold: Fold, *, seed: int
) -> list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """(training rows, validation rows, pooled training rows) of a fold: one triple when strict;
    two client-disjoint triples when overlap (half 0 fits and half 1 validates, then the other way
    round; the pooled rows of :func:`pooled_rows` follow the training half)."""
    pop = population(frame, kind)
    train = take_rows(pop, kind, fold.train_cutoffs)
    valid = take_rows(pop, kind, fold.valid_cutoff)
    pool = pooled_rows(frame, kind, fold.train_cutoffs)
    if fold.mode == "strict":
        return [(train, valid, pool)]
    h_train, h_valid = client_half(train["client_id"], seed), client_half(valid["client_id"], seed)
    h_pool = client_half(pool["client_id"], seed)
    return [
        (
            train.loc[h_train == half].reset_index(drop=True),
            valid.loc[h_valid != half].reset_index(drop=True),
            pool.loc[h_pool == half].reset_index(drop=True),
        )
        for half in (0, 1)
    ]


def split_frames(
    frame: pd.DataFrame,
    kind: ModelKind,
    horizon_days: int,
    mode: SplitChoice = "auto",
    *,
    test_cutoff: dt.date | None = None,
    folds: int = 3,
) -> SplitFrames:
    """The final split of the ``kind`` population (:meth:`FoldPlan.final_split` of :func:`plan_folds`)."""
    plan = plan_folds(frame, kind, horizon_days, split=mode, folds=folds, test_cutoff=test_cutoff)
    return frames_for_split(frame, plan.final_split())


def frames_for_split(frame: pd.DataFrame, split: TimeSplit) -> SplitFrames:
    """Cut the population of ``split.kind`` into the train/valid/test rows of ``split``.

    Labels become a plain int column ``label`` (0/1); feature columns stay as they are. Raises
    SplitError when a part has a single label value.
    """
    kind = split.kind
    pop = population(frame, kind)
    train = take_rows(pop, kind, split.train_cutoffs)
    valid = take_rows(pop, kind, split.valid_cutoff)
    test = take_rows(pop, kind, split.test_cutoff)
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
        "%s split (%s): %d training cutoffs %s..%s (%d rows), valid %s (%d), test %s (%d)",
        kind,
        split.mode,
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
