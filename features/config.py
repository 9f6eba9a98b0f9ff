"""Typed parameters of the features stage (the `features:` section of params.yaml) and the
resolution of its cutoff schedule into dates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CutoffError(ValueError):
    """The cutoff schedule resolves to no date, or to dates the data cannot support; the message
    names the key and the dates."""


class CutoffSchedule(BaseModel):
    """Cutoffs every ``every_days`` days counted back from ``end`` down to ``start``.

    ``end`` is always a cutoff, so a test cutoff pinned with ``end: T`` is hit exactly whatever
    the step. ``end: null`` is the latest cutoff whose label window is fully observed (the export
    date minus ``features.horizon_days``); ``start: null`` is the first completed order of the
    data plus one step (see :func:`resolve_cutoff_schedule`).
    """

    model_config = ConfigDict(extra="forbid")

    # None: one week per year of history (see step_for_history), so a one-year export gets enough
    # cutoffs for its short labelled window and a long one does not multiply its rows
    every_days: int | None = Field(default=None, gt=0)
    start: dt.date | None = None
    end: dt.date | None = None

    @model_validator(mode="after")
    def _check_order(self) -> CutoffSchedule:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(
                f"features.cutoffs: end {self.end.isoformat()} is before start {self.start.isoformat()}"
            )
        return self


@dataclass(frozen=True)
class ResolvedCutoffs:
    """The dates a cutoff schedule (or list) stands for in one export, and how each bound was set.

    ``dates`` are the schedule's cutoffs in date order (the scoring cutoff is not among them);
    ``start_rule`` / ``end_rule`` say in words where ``start`` / ``end`` came from.
    """

    dates: tuple[dt.date, ...]
    every_days: int | None
    start: dt.date | None
    end: dt.date | None
    start_rule: str
    end_rule: str
    step_rule: str = "features.cutoffs.every_days"

    def to_json(self) -> dict[str, Any]:
        return {
            "every_days": self.every_days,
            "every_days_rule": self.step_rule,
            "start": None if self.start is None else self.start.isoformat(),
            "start_rule": self.start_rule,
            "end": None if self.end is None else self.end.isoformat(),
            "end_rule": self.end_rule,
            "dates": [d.isoformat() for d in self.dates],
        }


#: Bounds of the step of ``every_days: null`` (days): a week per year of history, at most four.
STEP_PER_YEAR_DAYS = 7
MAX_STEP_DAYS = 28


def step_for_history(first: dt.date, end: dt.date) -> int:
    """The step of ``every_days: null``: 7 days per whole year (rounded) from ``first`` to ``end``,
    at least 7 and at most 28.

    A year of history has one short stretch of cutoffs whose label window ends before a test
    cutoff (the lapsed population exists there for a few weeks only), so it needs weekly cutoffs;
    three years at weekly steps would triple the rows without adding information, as the
    snapshots of one client a week apart are nearly the same. Whole weeks keep every cutoff on
    the same weekday as ``end``.
    """
    years = round((end - first).days / 365.25)
    return int(min(MAX_STEP_DAYS, max(STEP_PER_YEAR_DAYS, STEP_PER_YEAR_DAYS * years)))


def resolve_cutoff_schedule(
    cutoffs: list[dt.date] | CutoffSchedule,
    *,
    export_date: dt.date,
    horizon_days: int,
    first_order: dt.date | None,
    export_key: str = "ingest.export_date",
    first_order_source: str = "the first completed order",
) -> ResolvedCutoffs:
    """The cutoff dates of ``features.cutoffs`` for data exported on ``export_date``.

    A list is taken as it is (sorted). A schedule counts back from ``end`` every ``every_days``
    days while the date is on or after ``start``:

    * ``end: null`` → ``export_date - horizon_days``: the latest cutoff whose label window
      [D, D + horizon) ends by the export, so it is fully observed;
    * ``start: null`` → ``first_order + every_days``: the first date with at least one step of
      history. ``first_order`` is the date of the first completed order (the features stage reads
      it from the clean orders; the generate stage, before any clean table exists, passes
      ``generate.start``, where its simulated history begins); ``first_order_source`` names it.

    Raises CutoffError when ``end`` is after the export date, when ``end`` comes before ``start``
    (no cutoff at all) or when ``start: null`` has no first order to count from.
    """
    if not isinstance(cutoffs, CutoffSchedule):
        days = tuple(sorted(set(cutoffs)))
        if not days:
            raise CutoffError("features.cutoffs is an empty list: there is no cutoff to build")
        return ResolvedCutoffs(days, None, days[0], days[-1], "listed", "listed")
    if cutoffs.end is None:
        end = export_date - dt.timedelta(days=horizon_days)
        end_rule = f"{export_key} {export_date.isoformat()} - horizon_days {horizon_days}"
    else:
        end, end_rule = cutoffs.end, "features.cutoffs.end"
        if end > export_date:
            raise CutoffError(
                f"features.cutoffs.end {end.isoformat()} is after the export date "
                f"{export_date.isoformat()} ({export_key}): nothing after the export is known"
            )
    every, step_rule = cutoffs.every_days, "features.cutoffs.every_days"
    if every is None:
        anchor = cutoffs.start or first_order
        if anchor is None:
            raise CutoffError(
                "features.cutoffs.every_days: null sizes the step by the history from the first completed "
                "order, and the data has none; set features.cutoffs.every_days"
            )
        every = step_for_history(anchor, end)
        step_rule = f"a week per year of history ({anchor.isoformat()} .. {end.isoformat()}), 7 to 28 days"
    step = dt.timedelta(days=every)
    if cutoffs.start is None:
        if first_order is None:
            raise CutoffError(
                "features.cutoffs.start: null counts from the first completed order, and the data has "
                "none; set features.cutoffs.start to a date"
            )
        start = first_order + step
        start_rule = f"{first_order_source} {first_order.isoformat()} + every_days {every}"
    else:
        start, start_rule = cutoffs.start, "features.cutoffs.start"
    if end < start:
        raise CutoffError(
            f"features.cutoffs: no cutoff: end {end.isoformat()} ({end_rule}) is before start "
            f"{start.isoformat()} ({start_rule}); the history is too short for the schedule"
        )
    n = (end - start) // step
    days = tuple(end - i * step for i in range(n, -1, -1))
    return ResolvedCutoffs(days, every, start, end, start_rule, end_rule, step_rule)


class FeatureParams(BaseModel):
    """Cutoffs, horizon, windows, thresholds and tiers of the point-in-time features.

    A cutoff date D is the snapshot at D 00:00 UTC: features use only rows stamped before it, and
    the label window is [D, D + horizon_days) in days, i.e. the horizon days after the last known day.
    The rhythm features' population constants are not parameters: they are fitted at each cutoff
    (features/rhythm_fit.py).
    """

    model_config = ConfigDict(extra="forbid")

    cutoffs: list[dt.date] | CutoffSchedule
    scoring_cutoff: dt.date | None = None  # None: the export date of the data
    horizon_days: int = Field(100, gt=0)
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    new_client_days: int = Field(100, gt=0)
    lapse_tiers_days: list[int] = Field(default_factory=lambda: [90, 180, 360])
    lost_after_days: int = Field(730, gt=0)
    returned_recently_days: int = Field(180, gt=0)
    backend: Literal["duckdb", "pyspark"] = "duckdb"

    @model_validator(mode="before")
    @classmethod
    def _no_rhythm_constants(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rhythm" in data:
            raise ValueError(
                "features.rhythm is no longer a setting: the rhythm constants (rate prior, hazards) are "
                "fitted on the history at each cutoff and the decay constants are the contract's "
                "(decayed_orders_30d ...); remove the rhythm section"
            )
        return data

    @model_validator(mode="after")
    def _check_tiers(self) -> FeatureParams:
        tiers = self.lapse_tiers_days
        if len(tiers) != 3 or tiers != sorted(tiers):
            raise ValueError(
                "features.lapse_tiers_days must be three increasing day counts, e.g. [90, 180, 360]"
            )
        if self.lost_after_days <= tiers[-1]:
            raise ValueError("features.lost_after_days must be beyond the last lapse tier")
        return self

    def cutoff_dates(self, *, export_date: dt.date, first_order: dt.date | None = None) -> list[dt.date]:
        """The dates of ``cutoffs`` for an export (see :func:`resolve_cutoff_schedule`)."""
        resolved = resolve_cutoff_schedule(
            self.cutoffs, export_date=export_date, horizon_days=self.horizon_days, first_order=first_order
        )
        return list(resolved.dates)
