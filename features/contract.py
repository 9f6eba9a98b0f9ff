"""The table contract: one place that says what every table of comeback looks like.

Raw CRM tables (clients, orders, complaints, contacts) are checked against it on ingest; the
feature table is checked where the features stage writes it and where training and scoring read
it. Errors always name the table and the column, so a bad export fails at the door instead of as a
LightGBM shape error three stages later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["string", "int", "float", "bool", "timestamp"]

#: Arrow/DuckDB type used to store each kind in clean Parquet.
DUCKDB_TYPES: dict[Kind, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}


class ContractError(ValueError):
    """A table does not match its contract; the message names the table and the column."""


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    required: bool = True
    nullable: bool = False
    rule: str = ""
    meaning: str = ""
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    min_exclusive: bool = False
    default: object | None = None


@dataclass(frozen=True)
class Table:
    """A contract table: its columns, its key, the tables it references and its clean row order.

    ``sort_by``: the clean table's rows are sorted by these columns (then file order), so a
    client's rows lie together: grouping by client then touches each group's state in a run
    instead of at random (the features stage's grouped aggregates run several times faster).
    """

    name: str
    columns: tuple[Column, ...]
    key: str | None = None
    references: Mapping[str, str] = field(default_factory=dict)
    optional_table: bool = False
    meaning: str = ""
    sort_by: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ContractError(f"table {self.name!r} has no column {name!r} in its contract")


SEVERITY_MEANING = {
    1: "trifle",
    2: "small problem",
    3: "problem",
    4: "catastrophe",
    5: "end of the world",
}
ORDER_STATUSES = ("completed", "cancelled", "returned")
COMPLAINT_CATEGORIES = ("product", "service", "delivery", "billing", "staff", "other")
CONTACT_CAMPAIGNS = ("prevention", "winback")

CLIENTS = Table(
    name="clients",
    key="client_id",
    sort_by=("client_id",),
    meaning="One row per client of the company.",
    columns=(
        Column("client_id", "string", rule="unique, not empty", meaning="CRM id of the client"),
        Column(
            "created_at",
            "timestamp",
            rule="not after the export date",
            meaning="when the client was created in the CRM",
        ),
        Column(
            "manager_id", "string", nullable=True, meaning="account manager now responsible for the client"
        ),
        Column("segment", "string", nullable=True, meaning="CRM segment (free text, e.g. retail, wholesale)"),
        Column(
            "do_not_contact",
            "bool",
            required=False,
            default=False,
            meaning="client asked not to be contacted; never put on a campaign list",
        ),
    ),
)

ORDERS = Table(
    name="orders",
    key="order_id",
    sort_by=("client_id", "ordered_at"),
    references={"client_id": "clients"},
    meaning="One row per order; only completed orders count as purchases.",
    columns=(
        Column("order_id", "string", rule="unique, not empty", meaning="CRM id of the order"),
        Column("client_id", "string", rule="references clients.client_id", meaning="who ordered"),
        Column(
            "ordered_at", "timestamp", rule="not after the export date", meaning="when the order was placed"
        ),
        Column(
            "amount",
            "float",
            rule="> 0",
            min_value=0.0,
            min_exclusive=True,
            meaning="order value, company currency",
        ),
        Column("margin", "float", nullable=True, meaning="gross margin of the order, may be negative"),
        Column(
            "status",
            "string",
            allowed=ORDER_STATUSES,
            rule="one of completed|cancelled|returned",
            meaning="order outcome",
        ),
        Column("due_at", "timestamp", nullable=True, meaning="payment due date"),
        Column(
            "paid_at", "timestamp", nullable=True, meaning="when it was paid; later than due_at = paid late"
        ),
        Column(
            "item_count",
            "int",
            required=False,
            nullable=True,
            min_value=0,
            rule=">= 0; optional column",
            meaning="distinct products (invoice lines) in the order; basket features are null without it",
        ),
        Column(
            "quantity",
            "float",
            required=False,
            nullable=True,
            min_value=0,
            rule=">= 0; optional column",
            meaning="units in the order (all lines); basket features are null without it",
        ),
    ),
)

COMPLAINTS = Table(
    name="complaints",
    key="complaint_id",
    sort_by=("client_id", "created_at"),
    references={"client_id": "clients"},
    meaning="One row per complaint, as the client saw the problem.",
    columns=(
        Column("complaint_id", "string", rule="unique, not empty", meaning="CRM id of the complaint"),
        Column("client_id", "string", rule="references clients.client_id", meaning="who complained"),
        Column(
            "created_at", "timestamp", rule="not after the export date", meaning="when the complaint was made"
        ),
        Column(
            "severity",
            "int",
            min_value=1,
            max_value=5,
            rule="1..5",
            meaning="1 trifle, 2 small problem, 3 problem, 4 catastrophe, 5 end of the world (client's view)",
        ),
        Column(
            "category",
            "string",
            allowed=COMPLAINT_CATEGORIES,
            rule="one of " + "|".join(COMPLAINT_CATEGORIES),
            meaning="what went wrong",
        ),
        Column(
            "human_factor",
            "bool",
            meaning="caused by a person (rudeness, broken promise) rather than a technical failure",
        ),
        Column(
            "resolved_at",
            "timestamp",
            nullable=True,
            rule="not before created_at",
            meaning="when it was resolved; empty = still open",
        ),
    ),
)

CONTACTS = Table(
    name="contacts",
    key="contact_id",
    sort_by=("client_id", "contacted_at"),
    references={"client_id": "clients"},
    optional_table=True,
    meaning="Retention contacts made by the company (optional table).",
    columns=(
        Column("contact_id", "string", rule="unique, not empty", meaning="CRM id of the contact"),
        Column("client_id", "string", rule="references clients.client_id", meaning="who was contacted"),
        Column("contacted_at", "timestamp", rule="not after the export date", meaning="when"),
        Column(
            "campaign",
            "string",
            allowed=CONTACT_CAMPAIGNS,
            rule="prevention|winback",
            meaning="which campaign",
        ),
        Column("offer", "string", nullable=True, meaning="offer made, if any"),
        Column("manager_id", "string", nullable=True, meaning="who made the contact"),
    ),
)

RAW_TABLES: dict[str, Table] = {t.name: t for t in (CLIENTS, ORDERS, COMPLAINTS, CONTACTS)}

# ---------------------------------------------------------------------------------------------
# The feature table: one row per (client_id, cutoff_at). Written by the features stage, read by
# training, evaluation and scoring. Day counts are DOUBLE days (fractional where timestamps are).
# ---------------------------------------------------------------------------------------------

#: States at a cutoff, from the last completed order before it (see features.lifecycle).
STATES = ("new", "active", "lapsed_90", "lapsed_180", "lapsed_360", "lost", "no_order")
CHURN_STATES = ("new", "active")
WINBACK_STATES = ("lapsed_90", "lapsed_180", "lapsed_360")

FEATURE_KEYS = ("client_id", "cutoff_at")
#: Columns carried for serving and campaigns; never model inputs.
FEATURE_INFO_COLUMNS = (
    "state",
    "manager_id",
    "segment",
    "do_not_contact",
    "first_order_at",
    "last_order_at",
    "loss_at",
    "loss_manager_id",
)
LABEL_COLUMNS = ("churn_label", "winback_label")

WINDOWS = (30, 90, 180, 365)
#: Decay constants (days) of the decayed_orders_{d}d rhythm features.
DECAY_DAYS = (30, 90, 365)

#: Basket, return and regularity features (features.basket); the basket ones need the optional
#: orders.item_count / orders.quantity columns and are null without them.
BASKET_FEATURES: tuple[str, ...] = (
    "items_per_order_mean",
    "units_per_order_mean",
    "units_per_item_mean",
    "items_trend_90d",
    "returned_amount_90d",
    "returned_amount_365d",
    "days_since_last_return",
    "orders_14d",
    "active_months_share",
)

#: Model inputs, in a fixed order. The features stage must write every one of them.
FEATURE_COLUMNS: tuple[str, ...] = (
    # RFM
    "recency_days",
    "tenure_days",
    "days_since_first_order",
    *(f"orders_{w}d" for w in WINDOWS),
    "orders_total",
    *(f"amount_{w}d" for w in WINDOWS),
    "amount_total",
    *(f"margin_{w}d" for w in WINDOWS),
    "margin_total",
    "avg_order_amount",
    "gap_mean_days",
    "gap_std_days",
    "overdue_ratio",
    "orders_trend_90d",
    "amount_trend_90d",
    "cancelled_orders_total",
    "returned_orders_total",
    "cancelled_share",
    "returned_share",
    # complaints
    "complaints_90d",
    "complaints_365d",
    "complaints_total",
    "complaint_severity_max",
    "complaint_severity_mean",
    "complaint_severity_weighted_365d",
    "open_complaints",
    "open_complaint_severity_max",
    "resolved_complaint_share",
    "complaint_resolve_days_mean",
    "days_since_last_complaint",
    "human_factor_complaints_365d",
    "last_complaint_resolved",
    "last_complaint_severity",
    # payments
    "payment_delay_mean_days",
    "late_payment_share",
    "late_payments_365d",
    "overdue_unpaid_amount",
    # lifecycle and loss history
    "is_new",
    "days_since_loss",
    "times_lost",
    "times_returned",
    "twice_lost",
    "returned_recently",
    "days_since_return",
    # contacts
    "prevention_contacts_365d",
    "winback_contacts_365d",
    "days_since_last_contact",
    # rhythm (features.rhythm)
    "order_rate_per_day",
    "silence_probability",
    "alive_probability",
    "rhythm_no_order_probability",
    "expected_orders_horizon",
    *(f"decayed_orders_{d}d" for d in DECAY_DAYS),
    # basket, returns and regularity (features.basket)
    *BASKET_FEATURES,
)


def check_columns(
    table: Table, present: Mapping[str, str] | Iterable[str], *, source: str | None = None
) -> None:
    """Fail with a named-column error when a required column of ``table`` is missing.

    ``present`` is either the column names or a mapping name -> type string. ``source`` names the
    file, so the message says where to look.
    """
    names = set(present.keys() if isinstance(present, Mapping) else present)
    where = f" in {source}" if source else ""
    missing = [c.name for c in table.columns if c.required and c.name not in names]
    if missing:
        raise ContractError(
            f"table {table.name!r}{where}: missing required column(s) {', '.join(repr(m) for m in missing)}"
        )


def check_feature_table(columns: Iterable[str], *, source: str = "feature table") -> None:
    """Fail naming the column when a feature table lacks a key, info or feature column."""
    names = set(columns)
    missing = [c for c in (*FEATURE_KEYS, *FEATURE_INFO_COLUMNS, *FEATURE_COLUMNS) if c not in names]
    if missing:
        raise ContractError(
            f"table 'features' ({source}): missing column(s) {', '.join(repr(m) for m in missing)}"
        )
