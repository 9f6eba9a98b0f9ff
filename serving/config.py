"""Typed settings of serving: the `score:` section of params.yaml and the API's environment.

Campaign rules (value horizon, classes, exclusion thresholds, offers and their costs) live in
params.yaml and are validated here with ``extra="forbid"``, so a typo in a key is an error. The API
itself reads only environment variables with the prefix ``COMEBACK_`` (pydantic-settings): where the
models and features are, and the API keys. Secrets never go to params.yaml.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Win-back tiers are the lapsed states of the feature table, in escalating order.
WINBACK_TIERS = ("lapsed_90", "lapsed_180", "lapsed_360")
VALUE_CLASSES = ("A", "B", "C")


class Offer(BaseModel):
    """One offer of a campaign: what the client is offered and what it costs the company."""

    model_config = ConfigDict(extra="forbid")

    offer: str = Field(min_length=1, description="offer text shown to the manager")
    cost: float = Field(ge=0.0, description="expected cost of making the offer, company currency")


def _default_winback_offers() -> dict[str, Offer]:
    return {
        "lapsed_90": Offer(offer="we miss you: 5% off the next order", cost=10.0),
        "lapsed_180": Offer(offer="come back: 10% off and free delivery", cost=40.0),
        "lapsed_360": Offer(offer="personal visit with a 15% welcome-back deal", cost=120.0),
    }


def _default_prevention_offers() -> dict[str, Offer]:
    return {
        "A": Offer(offer="personal call from the account manager", cost=25.0),
        "B": Offer(offer="loyalty discount 5% on the next order", cost=10.0),
        "C": Offer(offer="check-in email", cost=1.0),
    }


class ScoreParams(BaseModel):
    """Campaign rules of the `score:` section of params.yaml (every threshold and amount).

    Value (company currency) = yearly margin x sum over years t = 1..horizon_years of
    retention_rate^(t-1) / (1 + discount_rate)^t, with yearly margin = margin_total divided by the
    client's observed active span in years (first to last completed order, at least
    ``min_active_span_days``). Where a client's margin_total is null (many exports carry no
    margin), amount_total x ``default_margin_rate`` stands in for it: an assumed gross margin share
    (a business input, not fitted; set your own), None to refuse revenue-based values. A list that
    comes out empty, or a population (churn rows, win-back rows) of which more than
    ``max_unlisted_share`` is left out, is reported as a warning. See docs/serving.md.
    """

    model_config = ConfigDict(extra="forbid")

    cutoff: dt.date | None = None  # None: the latest cutoff_at in the feature table
    horizon_years: int = Field(default=2, ge=1, le=20)
    retention_rate: float = Field(default=0.6, gt=0.0, le=1.0)
    discount_rate: float = Field(default=0.1, ge=0.0, lt=1.0)
    min_active_span_days: float = Field(default=180.0, gt=0.0)
    # Share of revenue that is margin, used where margin_total is null; None: no value without margin.
    default_margin_rate: float | None = Field(default=0.3, gt=0.0, le=1.0)
    max_unlisted_share: float = Field(default=0.8, gt=0.0, le=1.0)  # warn above this share left out
    class_a_value_share: float = Field(default=0.80, gt=0.0, lt=1.0)
    class_b_value_share: float = Field(default=0.15, gt=0.0, lt=1.0)
    bad_payer_late_share: float = Field(default=0.5, gt=0.0, le=1.0)
    bad_payer_overdue_amount: float = Field(default=1000.0, ge=0.0)
    unprofitable_margin_below: float = 0.0
    severe_complaint_min: int = Field(default=4, ge=1, le=5)
    new_client_days: float = Field(default=100.0, gt=0.0)
    reasons_per_client: int = Field(default=3, ge=1, le=10)
    reason_method: Literal["path", "shap"] = "path"  # see serving/explain.py
    reasons_for_all: bool = False  # batch: reasons for every scored client, not only listed ones
    winback_offers: dict[str, Offer] = Field(default_factory=_default_winback_offers)
    prevention_offers: dict[str, Offer] = Field(default_factory=_default_prevention_offers)

    @model_validator(mode="after")
    def _check(self) -> ScoreParams:
        if self.class_a_value_share + self.class_b_value_share >= 1.0:
            raise ValueError("score.class_a_value_share + score.class_b_value_share must be below 1")
        if set(self.winback_offers) != set(WINBACK_TIERS):
            raise ValueError(f"score.winback_offers must have exactly the tiers {list(WINBACK_TIERS)}")
        if set(self.prevention_offers) != set(VALUE_CLASSES):
            raise ValueError(f"score.prevention_offers must have exactly the classes {list(VALUE_CLASSES)}")
        costs = [self.winback_offers[t].cost for t in WINBACK_TIERS]
        if costs != sorted(costs):
            raise ValueError("score.winback_offers: costs must escalate from lapsed_90 to lapsed_360")
        return self


class ApiSettings(BaseSettings):
    """Environment settings of the scoring API (prefix ``COMEBACK_``), e.g. COMEBACK_API_KEYS.

    API keys are comma-separated lists; an admin key is also a valid API key. With no keys set every
    keyed route answers 401, so a forgotten variable never opens the API.
    """

    model_config = SettingsConfigDict(env_prefix="COMEBACK_", extra="ignore")

    tracking_uri: str | None = None  # None: models.scorer.tracking_uri_from_env()
    model_alias: str = "champion"
    features: Path = Path("data/features/features.parquet")
    cutoff: dt.date | None = None
    api_keys: SecretStr = SecretStr("")
    admin_keys: SecretStr = SecretStr("")
    max_clients_per_request: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    canary_rows: int = Field(default=64, ge=1)
    num_threads: int = Field(default=1, ge=1)

    def keys(self, *, admin: bool) -> tuple[bytes, ...]:
        """The configured keys as bytes (admin keys only, or every key valid on non-admin routes)."""
        raw = self.admin_keys.get_secret_value()
        if not admin:
            raw = raw + "," + self.api_keys.get_secret_value()
        return tuple(k.strip().encode() for k in raw.split(",") if k.strip())
