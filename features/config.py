"""Typed parameters of the features stage (the `features:` section of params.yaml)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CutoffSchedule(BaseModel):
    """A regular schedule of cutoff dates: every ``every_days`` from ``start`` to ``end`` inclusive."""

    model_config = ConfigDict(extra="forbid")

    start: dt.date
    end: dt.date
    every_days: int = Field(gt=0)

    def dates(self) -> list[dt.date]:
        out, d = [], self.start
        while d <= self.end:
            out.append(d)
            d += dt.timedelta(days=self.every_days)
        return out


class RhythmParams(BaseModel):
    """Population constants of the rhythm features (features.rhythm; see that module).

    The rate prior is a gamma with mean ``rate_prior_orders / rate_prior_days`` orders per day;
    hazards are the chance per day that an alive client goes dormant (onboarding: within
    ``new_client_days`` of the first order); decay constants are in days.
    """

    model_config = ConfigDict(extra="forbid")

    rate_prior_orders: float = Field(default=1.0, gt=0)
    rate_prior_days: float = Field(default=32.0, gt=0)
    dormancy_hazard_per_day: float = Field(default=0.00125, gt=0)
    onboarding_hazard_per_day: float = Field(default=0.005, gt=0)
    decay_days: list[int] = Field(default_factory=lambda: [30, 90, 365])


class FeatureParams(BaseModel):
    """Cutoffs, horizon, windows, thresholds and tiers of the point-in-time features.

    A cutoff date D is the snapshot at D 00:00 UTC: features use only rows stamped before it, and
    the label window is [D, D + horizon_days) in days, i.e. the horizon days after the last known day.
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
    rhythm: RhythmParams = RhythmParams()

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

    def cutoff_dates(self) -> list[dt.date]:
        return self.cutoffs.dates() if isinstance(self.cutoffs, CutoffSchedule) else sorted(self.cutoffs)
