"""Reasons in words: a client's top feature contributions said against what is usual for its peers.

Every model input (``features.contract.FEATURE_COLUMNS``) has a template in :data:`TEMPLATES`, so a
raw feature name is never shown. A reason argues for the score: it is shown only when the model's
contribution of the feature is positive (it raises the probability of the event: churn for
prevention, an order for win-back) **and** the client's value lies on the side of the comparable
clients' median that the template says raises that score (``raises``, per model kind), and the
phrase says both numbers: "2 completed orders in the last 365 days, where similar clients have 7".
"Similar clients" are the rows of the same model population at the same cutoff
(:func:`peer_stats`, computed once per feature table). A value on the other side, at the median,
or a contribution that lowers the score gives no phrase: the next candidate fills the slot. The
direction is declared, not read off the model, because the words are what Marketing reads: a
phrase reads as risk or as reassurance whatever the trees learned (docs/serving.md).

A score raised by a signal that is *absent* (never complained, not yet approached by a win-back
campaign) is said only where the template has an :class:`Absence` phrase for that model kind,
which names what is missing, how common it is among similar clients and why it matters; other
absences are never shown.

The client's fact is a list of alternatives, the first whose values are all known is used;
``zero`` is used instead when the feature's own value is 0 (counts and flags). Placeholders are
``{feature|format}`` with the client's value of any feature, and ``{median|format}`` in the
comparison (``peer``) with the median of similar clients:

====================  =====================================================
format                renders
====================  =====================================================
``days``              "140 days" (rounded; "1 day")
``n``                 "3" (rounded integer)
``x.y``               "1.5" (one decimal)
``money``             "1,234" (company currency, rounded)
``pct``               "45%" (a share 0..1)
``1-pct``             "55%" for 0.45: the complement of a share, in percent
``severity``          "4 (catastrophe)" (complaint severity 1..5)
``plural:WORD``       "3 late payments" / "1 late payment"
``change:WORD``       "2 more orders" / "1 fewer order" / "as many orders" (a signed count)
``logchange``         "up 35%" / "down 20%" (a log ratio x shown as e**x - 1)
====================  =====================================================

``zero_below`` widens the ``zero`` phrase to small values of continuous features (a decayed
order count of 0.03 reads "hardly any buying in recent weeks", not "0.0 orders").

The table is rendered for docs/serving.md by :func:`template_table_markdown`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from features.contract import FEATURE_COLUMNS, SEVERITY_MEANING

_PLACEHOLDER = re.compile(r"\{(\w+)(?:\|([^}]+))?\}")

#: The model kinds a reason can argue for: churn risk (prevention) and win-back likelihood.
KINDS: tuple[str, ...] = ("churn", "winback")
#: Rows of a population the comparable-client statistics are computed on at most (evenly spaced).
PEER_ROWS = 32768

Side = Literal["higher", "lower"]


def _days(x: float) -> str:
    n = round(x)
    return f"{n} day" if n == 1 else f"{n} days"


def _plural(word: str) -> Callable[[float], str]:
    def render(x: float) -> str:
        n = round(x)
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    return render


def _severity(x: float) -> str:
    n = round(x)
    meaning = SEVERITY_MEANING.get(n)
    return f"{n} ({meaning})" if meaning else str(n)


def _change(word: str) -> Callable[[float], str]:
    def render(x: float) -> str:
        n = round(x)
        if n == 0:
            return f"as many {word}s"
        more = "more" if n > 0 else "fewer"
        return f"{abs(n)} {more} {word}" if abs(n) == 1 else f"{abs(n)} {more} {word}s"

    return render


def _logchange(x: float) -> str:
    if x > math.log(100):
        return "up more than 100-fold"
    pct = round(100 * math.expm1(x))
    if pct == 0:
        return "about the same"
    return f"up {pct:,}%" if pct > 0 else f"down {-pct}%"


_FORMATS: dict[str, Callable[[float], str]] = {
    "days": _days,
    "n": lambda x: str(round(x)),
    "x.y": lambda x: f"{x:.1f}",
    "money": lambda x: f"{x:,.0f}",
    "pct": lambda x: f"{100 * x:.0f}%",
    "1-pct": lambda x: f"{100 * (1 - x):.0f}%",
    "severity": _severity,
    "logchange": _logchange,
}


def _formatter(spec: str | None) -> Callable[[float], str]:
    if spec is None:
        return _FORMATS["x.y"]
    if spec.startswith("plural:"):
        return _plural(spec.removeprefix("plural:"))
    if spec.startswith("change:"):
        return _change(spec.removeprefix("change:"))
    try:
        return _FORMATS[spec]
    except KeyError:
        raise ValueError(f"unknown reason format {spec!r}") from None


@dataclass(frozen=True)
class Absence:
    """The phrase for a score raised by a missing signal: what is missing and why it matters.

    ``{share}`` in ``text`` becomes the share of similar clients who have the signal: whose
    feature ``share_of`` (default the template's own) is not absent in the sense of that feature's
    ``absent_when``. The phrase is not shown when that share rounds to 0%: a signal no similar
    client has is not something this client lacks against them.
    """

    text: str
    share_of: str | None = None


@dataclass(frozen=True)
class Template:
    """How one feature becomes a reason.

    ``texts``: the client's fact (alternatives, first fully known one wins), ``zero`` when its value
    is 0 (or below ``zero_below``). ``peer``: the comparison with similar clients appended to the
    fact, ``{median|format}`` being their median; ``peer_zero`` replaces it when that median is 0
    (or below ``zero_below``), e.g. "where similar clients have none". ``raises``: per model kind,
    the side of the median on which the value raises that model's score; a kind not named never
    gets this reason from a comparison. ``absent``: per model kind, the phrase for a score raised
    by the signal's absence, which is an unknown value, or also 0 when ``absent_when`` is "zero"
    (a count of complaints: 0 is no complaint; a resolved share of 0 is not an absence).
    """

    texts: tuple[str, ...]
    zero: str | None = None
    topic: str | None = None  # features telling the same fact share a topic: one phrase per topic
    zero_below: float = 0.0  # |value| below this also gets the zero phrase (continuous features)
    peer: str | None = None
    peer_zero: str | None = None
    raises: Mapping[str, Side] = field(default_factory=dict)
    absent: Mapping[str, Absence] = field(default_factory=dict)
    absent_when: Literal["unknown", "zero"] = "unknown"


#: More of it keeps a client buying: a low value raises churn risk, a high one win-back likelihood.
ENGAGEMENT: Mapping[str, Side] = {"churn": "lower", "winback": "higher"}
#: More of it drives a client away: a high value raises churn risk, a low one win-back likelihood.
FRICTION: Mapping[str, Side] = {"churn": "higher", "winback": "lower"}


def _friction_count(
    text: str,
    zero: str,
    *,
    absent: Mapping[str, Absence] | None = None,
    absent_when: Literal["unknown", "zero"] = "unknown",
) -> Template:
    """A count of something that drives clients away (complaints, late payments, cancellations):
    "2 complaints in the last 365 days, where similar clients have none" (or "... have 1")."""
    return Template(
        (text,),
        zero=zero,
        peer="where similar clients have {median|n}",
        peer_zero="where similar clients have none",
        raises=FRICTION,
        absent=absent or {},
        absent_when=absent_when,
    )


NO_RESOLVED_COMPLAINT = Absence(
    "never had a complaint resolved (where {share} of similar clients have), "
    "so it lacks the loyalty a resolved complaint brings",
    share_of="complaint_resolve_days_mean",
)
NO_RECENT_COMPLAINT = Absence(
    "no complaint in the last 365 days (where {share} of similar clients had one), "
    "so no recent complaint was resolved to win its loyalty",
    share_of="complaints_365d",
)
NEVER_COMPLAINED = Absence(
    "never complained (where {share} of similar clients have), "
    "so no grievance stands in the way of its return",
    share_of="complaints_total",
)
#: churn: the missing complaint history lowers loyalty; win-back: no grievance stands in the way
_COMPLAINT_HISTORY_ABSENT = {"churn": NO_RESOLVED_COMPLAINT, "winback": NEVER_COMPLAINED}


def _window_templates() -> dict[str, Template]:
    out: dict[str, Template] = {}
    for w in (30, 90, 180, 365):
        out[f"orders_{w}d"] = Template(
            (f"{{orders_{w}d|plural:completed order}} in the last {w} days",),
            zero=f"no completed order in the last {w} days",
            peer="where similar clients have {median|n}",
            raises=ENGAGEMENT,
        )
        out[f"amount_{w}d"] = Template(
            (f"bought for {{amount_{w}d|money}} in the last {w} days",),
            zero=f"no purchases in the last {w} days",
            peer="where similar clients bought for {median|money}",
            peer_zero="where similar clients bought nothing",
            raises=ENGAGEMENT,
        )
        out[f"margin_{w}d"] = Template(
            (f"margin of {{margin_{w}d|money}} in the last {w} days",),
            zero=f"no margin in the last {w} days",
            peer="where similar clients' margin is {median|money}",
            raises=ENGAGEMENT,
        )
    return out


#: feature -> phrase template. Every FEATURE_COLUMNS entry must be here (tests check it).
TEMPLATES: dict[str, Template] = {
    "recency_days": Template(
        (
            "no order for {recency_days|days} (usually every {gap_mean_days|days})",
            "no order for {recency_days|days}",
        ),
        topic="recency",
        peer="where similar clients' last order was {median|days} ago",
        raises=FRICTION,
    ),
    "tenure_days": Template(
        ("client for {tenure_days|days}",),
        peer="where similar clients have been for {median|days}",
        raises={"churn": "lower"},
    ),
    "days_since_first_order": Template(
        ("first order {days_since_first_order|days} ago",),
        peer="where similar clients' first order was {median|days} ago",
        raises={"churn": "lower"},
    ),
    **_window_templates(),
    "orders_total": Template(
        ("{orders_total|plural:completed order} in total",),
        zero="no completed order yet",
        peer="where similar clients have {median|n}",
        raises=ENGAGEMENT,
    ),
    "amount_total": Template(
        ("bought for {amount_total|money} in total",),
        zero="no purchases yet",
        peer="where similar clients bought for {median|money}",
        raises=ENGAGEMENT,
    ),
    "margin_total": Template(
        ("margin of {margin_total|money} in total",),
        zero="no margin yet",
        peer="where similar clients' margin is {median|money}",
        raises=ENGAGEMENT,
    ),
    # the size of an order says nothing by itself about staying or coming back: never a reason
    "avg_order_amount": Template(("average order of {avg_order_amount|money}",)),
    "gap_mean_days": Template(
        ("usually orders every {gap_mean_days|days}",),
        topic="recency",
        peer="where similar clients order every {median|days}",
        raises=FRICTION,
        absent={
            "churn": Absence(
                "has ordered only once (where {share} of similar clients have ordered again), "
                "so it has no buying habit yet"
            )
        },
    ),
    "gap_std_days": Template(
        ("time between orders varies by about {gap_std_days|days}",),
        peer="where for similar clients it varies by {median|days}",
        raises=FRICTION,
    ),
    "overdue_ratio": Template(
        ("time since the last order is {overdue_ratio|x.y} times the usual gap",),
        topic="recency",
        peer="where for similar clients it is {median|x.y} times",
        raises=FRICTION,
    ),
    "orders_trend_90d": Template(
        ("{orders_trend_90d|change:completed order} in the last 90 days than in the 90 before",),
        zero="as many completed orders in the last 90 days as in the 90 before",
        peer="where similar clients have {median|change:order}",
        raises=ENGAGEMENT,
    ),
    "amount_trend_90d": Template(
        ("spending {amount_trend_90d|logchange} in the last 90 days against the 90 before",),
        zero="spending flat: the last 90 days against the 90 before",
        zero_below=0.005,
        peer="where similar clients' spending is {median|logchange}",
        peer_zero="where similar clients' spending is flat",
        raises=ENGAGEMENT,
    ),
    "cancelled_orders_total": _friction_count(
        "{cancelled_orders_total|plural:cancelled order}",
        "no cancelled order",
    ),
    "returned_orders_total": _friction_count(
        "{returned_orders_total|plural:returned order}",
        "no returned order",
    ),
    "cancelled_share": Template(
        ("{cancelled_share|pct} of orders cancelled",),
        peer="where similar clients cancel {median|pct}",
        peer_zero="where similar clients cancel none",
        raises=FRICTION,
    ),
    "returned_share": Template(
        ("{returned_share|pct} of orders returned",),
        peer="where similar clients return {median|pct}",
        peer_zero="where similar clients return none",
        raises=FRICTION,
    ),
    "complaints_90d": _friction_count(
        "{complaints_90d|plural:complaint} in the last 90 days",
        "no complaint in the last 90 days",
    ),
    "complaints_365d": _friction_count(
        "{complaints_365d|plural:complaint} in the last 365 days",
        "no complaint in the last 365 days",
        absent={"churn": NO_RECENT_COMPLAINT},
        absent_when="zero",
    ),
    "complaints_total": Template(
        ("{complaints_total|plural:complaint} in total",),
        zero="never complained",
        peer="where similar clients have {median|plural:complaint}",
        peer_zero="where similar clients have none",
        raises=FRICTION,
        absent=_COMPLAINT_HISTORY_ABSENT,
        absent_when="zero",
    ),
    "complaint_severity_max": Template(
        ("worst complaint: severity {complaint_severity_max|severity}",),
        peer="where similar clients' worst is severity {median|severity}",
        raises=FRICTION,
        absent=_COMPLAINT_HISTORY_ABSENT,
    ),
    "complaint_severity_mean": Template(
        ("complaints average severity {complaint_severity_mean|x.y} of 5",),
        peer="where similar clients' complaints average {median|x.y}",
        raises=FRICTION,
        absent=_COMPLAINT_HISTORY_ABSENT,
    ),
    "complaint_severity_weighted_365d": Template(
        ("severity-weighted complaints in the last 365 days: {complaint_severity_weighted_365d|x.y}",),
        zero="no complaint in the last 365 days",
        peer="where for similar clients it is {median|x.y}",
        peer_zero="where similar clients have none",
        raises=FRICTION,
        absent={"churn": NO_RECENT_COMPLAINT},
        absent_when="zero",
    ),
    "open_complaints": Template(
        ("{open_complaints|plural:open complaint}, worst severity {open_complaint_severity_max|severity}",),
        zero="no open complaint",
        topic="open_complaint",
        peer="where similar clients have {median|n}",
        peer_zero="where similar clients have none open",
        raises=FRICTION,
    ),
    "open_complaint_severity_max": Template(
        (
            "open complaint, severity {open_complaint_severity_max|n}, {days_since_last_complaint|days} old",
            "open complaint, severity {open_complaint_severity_max|n}",
        ),
        zero="no open complaint",
        topic="open_complaint",
        peer="where similar clients' worst open one is {median|n}",
        peer_zero="where similar clients have none open",
        raises=FRICTION,
    ),
    "resolved_complaint_share": Template(
        ("{resolved_complaint_share|pct} of complaints resolved",),
        zero="none of its complaints resolved yet",
        topic="open_complaint",
        peer="where similar clients have {median|pct} resolved",
        peer_zero="where similar clients have none resolved",
        raises=ENGAGEMENT,
        absent=_COMPLAINT_HISTORY_ABSENT,
    ),
    "complaint_resolve_days_mean": Template(
        ("complaints took {complaint_resolve_days_mean|days} to resolve on average",),
        topic="open_complaint",
        peer="where similar clients' complaints took {median|days}",
        raises=FRICTION,
        absent={"churn": NO_RESOLVED_COMPLAINT},
    ),
    "days_since_last_complaint": Template(
        ("last complaint {days_since_last_complaint|days} ago",),
        peer="where similar clients' last complaint was {median|days} ago",
        # a fresh complaint raises churn risk and stands in the way of a return
        raises={"churn": "lower", "winback": "higher"},
        absent=_COMPLAINT_HISTORY_ABSENT,
    ),
    "human_factor_complaints_365d": _friction_count(
        "{human_factor_complaints_365d|plural:complaint} about staff in the last 365 days",
        "no complaint about staff in the last 365 days",
    ),
    "last_complaint_resolved": Template(
        ("last complaint was resolved",),
        zero="last complaint is still open",
        topic="open_complaint",
        peer="where the typical similar client's last one was resolved",
        peer_zero="where the typical similar client's last one is still open",
        raises=ENGAGEMENT,
        absent=_COMPLAINT_HISTORY_ABSENT,
    ),
    "last_complaint_severity": Template(
        ("last complaint: severity {last_complaint_severity|severity}",),
        peer="where similar clients' last one was severity {median|severity}",
        raises=FRICTION,
        absent=_COMPLAINT_HISTORY_ABSENT,
    ),
    "payment_delay_mean_days": Template(
        ("pays {payment_delay_mean_days|days} after the due date on average",),
        zero="pays by the due date on average",
        zero_below=0.5,  # rounds to "0 days": the demo lists read "pays 0 days after the due date"
        peer="where similar clients pay {median|days} late",
        peer_zero="where similar clients pay by the due date",
        raises=FRICTION,
    ),
    "late_payment_share": Template(
        ("{late_payment_share|pct} of invoices paid late",),
        zero="pays on time",
        peer="where similar clients pay {median|pct} late",
        peer_zero="where similar clients pay on time",
        raises=FRICTION,
    ),
    "late_payments_365d": _friction_count(
        "{late_payments_365d|plural:late payment} this year",
        "no late payment this year",
    ),
    "overdue_unpaid_amount": Template(
        ("{overdue_unpaid_amount|money} overdue and unpaid",),
        zero="nothing overdue",
        peer="where similar clients have {median|money} overdue",
        peer_zero="where similar clients have nothing overdue",
        raises=FRICTION,
    ),
    "is_new": Template(
        ("new client: first order {days_since_first_order|days} ago", "new client"),
        zero="not a new client",
        peer_zero="where the typical similar client is not new",
        raises={"churn": "higher"},
    ),
    "days_since_loss": Template(
        ("lost {days_since_loss|days} ago",),
        peer="where similar clients were lost {median|days} ago",
        raises={"winback": "lower"},
    ),
    "times_lost": Template(
        ("lost {times_lost|plural:time} before",),
        zero="never lost before",
        peer="where similar clients were lost {median|plural:time}",
        peer_zero="where similar clients were never lost",
        raises={"churn": "higher"},
    ),
    "times_returned": Template(
        ("came back {times_returned|plural:time} after being lost",),
        zero="never came back after a loss",
        peer="where similar clients came back {median|plural:time}",
        peer_zero="where similar clients never came back",
        raises={"winback": "higher"},
    ),
    "twice_lost": Template(
        ("lost at least twice before",),
        zero="not lost twice before",
        peer_zero="where the typical similar client was not",
        raises={"churn": "higher"},
    ),
    "returned_recently": Template(
        ("came back recently after being lost",),
        zero="no recent comeback after a loss",
        peer_zero="where the typical similar client did not",
        raises={"churn": "higher"},
    ),
    "days_since_return": Template(
        ("came back {days_since_return|days} ago",),
        peer="where similar clients came back {median|days} ago",
        # a fresh comeback is fragile (churn); a comeback at all shows the way back (win-back)
        raises={"churn": "lower", "winback": "lower"},
    ),
    # being chosen for a retention campaign is the company's decision, not the client's behaviour
    "prevention_contacts_365d": Template(
        ("{prevention_contacts_365d|plural:retention contact} in the last 365 days",),
        zero="not reached by a retention campaign in the last 365 days",
    ),
    "winback_contacts_365d": Template(
        ("{winback_contacts_365d|plural:win-back contact} in the last 365 days",),
        zero="not approached by a win-back campaign in the last 365 days",
        peer="where similar clients had {median|n}",
        peer_zero="where similar clients had none",
        # churn: won back only recently; win-back: every approach it ignored makes the next less
        # likely, so an untried client is the better prospect
        raises={"churn": "higher", "winback": "lower"},
        absent={
            "winback": Absence(
                "not approached by a win-back campaign in the last 365 days (where {share} of "
                "similar clients were), so it has turned down no recent offer"
            )
        },
        absent_when="zero",
    ),
    "days_since_last_contact": Template(
        ("last campaign contact {days_since_last_contact|days} ago",),
        peer="where similar clients' last contact was {median|days} ago",
        # churn: out of touch for long; win-back: a recent approach is still fresh
        raises={"churn": "higher", "winback": "lower"},
    ),
    # rhythm (features.rhythm): a buy-till-you-die reading of the client's own pace, each said as
    # a risk ("chance it has stopped buying") so that no phrase reads as reassurance
    "order_rate_per_day": Template(
        ("orders on about {order_rate_per_day|pct} of days",),
        topic="rhythm",
        peer="where similar clients order on {median|pct}",
        raises=ENGAGEMENT,
    ),
    "silence_probability": Template(
        ("at its usual pace a silence this long happens {silence_probability|pct} of the time",),
        topic="rhythm",
        peer="where for similar clients it is {median|pct}",
        raises=ENGAGEMENT,
    ),
    "alive_probability": Template(
        ("{alive_probability|1-pct} chance it has stopped buying, given its pace and its silence",),
        topic="rhythm",
        peer="where for similar clients it is {median|1-pct}",
        raises=ENGAGEMENT,
    ),
    "rhythm_no_order_probability": Template(
        ("at its pace, {rhythm_no_order_probability|pct} chance of no order in the coming window",),
        topic="rhythm",
        peer="where for similar clients it is {median|pct}",
        raises=FRICTION,
    ),
    "expected_orders_horizon": Template(
        ("about {expected_orders_horizon|x.y} orders expected in the coming window at its pace",),
        topic="rhythm",
        peer="where similar clients are expected to place {median|x.y}",
        raises=ENGAGEMENT,
    ),
    **{
        f"decayed_orders_{d}d": Template(
            (f"recent buying: {{decayed_orders_{d}d|x.y}} orders {span}, older ones counting less",),
            zero=f"hardly any buying {span}",
            topic="decayed_orders",
            zero_below=0.05,
            peer="where similar clients have {median|x.y}",
            peer_zero="where similar clients hardly buy",
            raises=ENGAGEMENT,
        )
        for d, span in ((30, "in recent weeks"), (90, "in recent months"), (365, "over the past year"))
    },
    # basket, returns and regularity (features.basket); the basket's size argues for nothing
    "items_per_order_mean": Template(
        ("about {items_per_order_mean|x.y} different products per order",),
        topic="basket",
    ),
    "units_per_order_mean": Template(("about {units_per_order_mean|n} units per order",), topic="basket"),
    "units_per_item_mean": Template(
        ("about {units_per_item_mean|n} units of each product it buys",),
        topic="basket",
    ),
    "items_trend_90d": Template(
        ("products per order {items_trend_90d|logchange} in the last 90 days against before",),
        topic="basket",
        peer="where for similar clients they are {median|logchange}",
        raises=ENGAGEMENT,
    ),
    "returned_amount_90d": Template(
        ("returned goods worth {returned_amount_90d|money} in the last 90 days",),
        zero="nothing returned in the last 90 days",
        topic="returns",
        peer="where similar clients returned {median|money}",
        peer_zero="where similar clients returned nothing",
        raises=FRICTION,
    ),
    "returned_amount_365d": Template(
        ("returned goods worth {returned_amount_365d|money} in the last 365 days",),
        zero="nothing returned in the last 365 days",
        topic="returns",
        peer="where similar clients returned {median|money}",
        peer_zero="where similar clients returned nothing",
        raises=FRICTION,
    ),
    "days_since_last_return": Template(
        ("last return {days_since_last_return|days} ago",),
        topic="returns",
        peer="where similar clients' last return was {median|days} ago",
        raises={"churn": "lower"},
    ),
    "orders_14d": Template(
        ("{orders_14d|plural:order} in the last 14 days",),
        zero="no order in the last 14 days",
        peer="where similar clients have {median|n}",
        raises=ENGAGEMENT,
    ),
    "active_months_share": Template(
        ("ordered in {active_months_share|pct} of the 30-day periods since its first order",),
        peer="where similar clients ordered in {median|pct}",
        raises=ENGAGEMENT,
    ),
}


@dataclass(frozen=True)
class PeerStats:
    """What is usual among comparable clients, per ``FEATURE_COLUMNS`` entry (same order).

    ``median`` is the lower median of the known values (an actual value of the population, so a
    count or a flag stays whole; NaN when no value is known), ``known_share`` the share of rows
    whose value is known, ``nonzero_share`` the share known and not 0; ``rows`` the number of
    rows they were computed on.
    """

    median: np.ndarray
    known_share: np.ndarray
    nonzero_share: np.ndarray
    rows: int


def peer_stats(matrix: np.ndarray, rows: np.ndarray, *, max_rows: int = PEER_ROWS) -> PeerStats:
    """Medians and shares of ``matrix`` (n, FEATURE_COLUMNS) over ``rows``, the comparable clients.

    Computed once per feature table and model population. Above ``max_rows`` rows, on
    ``max_rows`` evenly spaced ones (first and last included): the medians of a million-client
    table then cost about 0.1 s instead of about 1 s (each needs a partition of its column),
    and the sample median of 32,768 rows sits within about 0.3 percentile points (one standard
    error) of the population's. Hand-written over ``np.nanmedian`` for the lower median and
    the shares in one pass over each column.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size > max_rows:
        rows = rows[np.linspace(0, rows.size - 1, max_rows).round().astype(np.int64)]
    n_features = matrix.shape[1]
    median = np.full(n_features, np.nan)
    known_share = np.zeros(n_features)
    nonzero_share = np.zeros(n_features)
    if rows.size:
        columns = np.ascontiguousarray(matrix[rows].T)  # one contiguous row per feature
        for j, column in enumerate(columns):
            known = column[~np.isnan(column)]
            if known.size == 0:
                continue
            mid = (known.size - 1) // 2
            median[j] = np.partition(known, mid)[mid]
            known_share[j] = known.size / rows.size
            nonzero_share[j] = np.count_nonzero(known) / rows.size
    return PeerStats(median=median, known_share=known_share, nonzero_share=nonzero_share, rows=int(rows.size))


@dataclass(frozen=True)
class _Compiled:
    # (literal text, column index in FEATURE_COLUMNS or -1, formatter or None) per part
    parts: tuple[tuple[str, int, Callable[[float], str] | None], ...]


_COLUMN_INDEX = {name: i for i, name in enumerate(FEATURE_COLUMNS)}


def _compile(text: str) -> _Compiled:
    parts: list[tuple[str, int, Callable[[float], str] | None]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        name, spec = m.group(1), m.group(2)
        if name not in _COLUMN_INDEX:
            raise ValueError(f"reason template {text!r} names unknown feature {name!r}")
        parts.append((text[pos : m.start()], _COLUMN_INDEX[name], _formatter(spec)))
        pos = m.end()
    if pos < len(text):
        parts.append((text[pos:], -1, None))
    return _Compiled(tuple(parts))


def _stat_spec(feature: str, text: str | None, name: str) -> str | None:
    """The format of ``{name|...}`` in ``text`` (None when absent); any other placeholder is an error."""
    found: str | None = None
    for m in _PLACEHOLDER.finditer(text or ""):
        if m.group(1) != name:
            raise ValueError(f"reason template of {feature!r}: {text!r} may only name {{{name}}}")
        found = m.group(2) or ("pct" if name == "share" else "x.y")
        _formatter(found)
    return found


def _resolution(spec: str) -> float:
    """A difference beyond which two values always read differently in ``spec`` (inf: no such bound).

    A format that rounds to the nearest step renders a and b alike only if |a - b| <= step.
    """
    if spec == "x.y":
        return 0.1 * (1 + 1e-6)
    if spec in ("pct", "1-pct"):
        return 0.01 * (1 + 1e-6)
    if spec in ("days", "n", "money", "severity") or spec.startswith(("plural:", "change:")):
        return 1.0 * (1 + 1e-6)
    return math.inf  # logchange: a log ratio, capped at "more than 100-fold"


def _render_stat(text: str, value: float, name: str) -> str:
    default = "pct" if name == "share" else None
    return _PLACEHOLDER.sub(lambda m: _formatter(m.group(2) or default)(value), text)


@dataclass(frozen=True)
class _Rules:
    """A template compiled once, independent of the population."""

    index: int
    texts: tuple[_Compiled, ...]
    zero: _Compiled | None
    zero_below: float
    topic: str
    template: Template


@dataclass(frozen=True, slots=True)
class _Bound:
    """A template bound to one model kind and one population's statistics (see PeerReasons)."""

    index: int
    texts: tuple[_Compiled, ...]
    zero: _Compiled | None
    zero_below: float
    topic: str
    sign: int  # +1: a value above the median raises the score, -1: below, 0: no comparison
    median: float
    median_small: bool  # the median is 0 (or below zero_below)
    clause: str  # ", where similar clients ..." with the median filled in
    peer_format: Callable[[float], str] | None  # formats the client's value as the clause's number
    median_text: str | None
    resolution: float  # values further than this from the median never read as the median does
    absent: str | None  # the absence phrase (share filled in), or None
    absent_on_zero: bool  # 0 (or below zero_below) is an absence too, not only an unknown value


class ReasonRenderer:
    """Compiles the templates once; :meth:`for_peers` binds them to a model kind and a population."""

    def __init__(self, templates: Mapping[str, Template] = TEMPLATES) -> None:
        self._rules: dict[str, _Rules] = {}
        for name, tpl in templates.items():
            if name not in _COLUMN_INDEX:
                raise ValueError(f"reason template for unknown feature {name!r}")
            for kind, side in tpl.raises.items():
                if kind not in KINDS or side not in ("higher", "lower"):
                    raise ValueError(f"reason template of {name!r}: raises {kind!r}: {side!r} is not valid")
            for kind, absence in tpl.absent.items():
                if kind not in KINDS:
                    raise ValueError(f"reason template of {name!r}: absent phrase for unknown kind {kind!r}")
                if (absence.share_of or name) not in templates:
                    raise ValueError(
                        f"reason template of {name!r}: share_of {absence.share_of!r} has no template"
                    )
                _stat_spec(name, absence.text, "share")
            _stat_spec(name, tpl.peer, "median")
            _stat_spec(name, tpl.peer_zero, "median")
            self._rules[name] = _Rules(
                index=_COLUMN_INDEX[name],
                texts=tuple(_compile(t) for t in tpl.texts),
                zero=_compile(tpl.zero) if tpl.zero is not None else None,
                zero_below=tpl.zero_below,
                topic=tpl.topic or name,
                template=tpl,
            )

    def fact(self, feature: str, row: Sequence[float]) -> str | None:
        """The client's own fact for ``feature`` ("3 late payments this year"), no comparison.

        ``row`` holds the client's values in FEATURE_COLUMNS order (NaN = unknown); None when the
        value or another value the phrase needs is unknown.
        """
        r = self._rule(feature)
        own = row[r.index]
        if own != own:
            return None
        return _fact(r.texts, r.zero, r.zero_below, own, row)

    def for_peers(
        self, kind: str, stats: PeerStats, features: Sequence[str] = FEATURE_COLUMNS
    ) -> PeerReasons:
        """The templates bound to model ``kind`` and the statistics of its population.

        ``features``: the model's inputs in its order, so that :meth:`PeerReasons.render_columns`
        takes the column positions of its contributions.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r} (expected one of {', '.join(KINDS)})")
        bound: dict[str, _Bound] = {}
        for name, r in self._rules.items():
            tpl = r.template
            median = float(stats.median[r.index])
            small = median == 0 or abs(median) < r.zero_below
            clause = tpl.peer_zero if small and tpl.peer_zero is not None else tpl.peer
            side = tpl.raises.get(kind)
            sign = (
                0 if side is None or clause is None or median != median else (1 if side == "higher" else -1)
            )
            spec = _stat_spec(name, clause, "median") if sign else None
            fmt = _formatter(spec) if spec is not None else None
            bound[name] = _Bound(
                index=r.index,
                texts=r.texts,
                zero=r.zero,
                zero_below=r.zero_below,
                topic=r.topic,
                sign=sign,
                median=median,
                median_small=small,
                clause=", " + _render_stat(clause, median, "median") if sign and clause else "",
                peer_format=fmt,
                median_text=fmt(median) if fmt is not None else None,
                resolution=_resolution(spec) if spec is not None else math.inf,
                absent=self._absence(name, tpl, kind, stats),
                absent_on_zero=tpl.absent_when == "zero",
            )
        unknown = [f for f in features if f not in bound]
        if unknown:
            raise KeyError(f"no reason template for feature(s) {', '.join(map(repr, unknown))}")
        return PeerReasons(kind, bound, [bound[f] for f in features])

    def _absence(self, name: str, tpl: Template, kind: str, stats: PeerStats) -> str | None:
        absence = tpl.absent.get(kind)
        if absence is None:
            return None
        signal = absence.share_of or name
        on_zero = self._rule(signal).template.absent_when == "zero"
        shares = stats.nonzero_share if on_zero else stats.known_share
        share = float(shares[_COLUMN_INDEX[signal]])
        if round(100 * share) == 0:
            return None
        return _render_stat(absence.text, share, "share")

    def _rule(self, feature: str) -> _Rules:
        try:
            return self._rules[feature]
        except KeyError:
            raise KeyError(f"no reason template for feature {feature!r}") from None


class PeerReasons:
    """Reasons for one model kind, said against one population (see :meth:`ReasonRenderer.for_peers`)."""

    def __init__(self, kind: str, bound: Mapping[str, _Bound], columns: Sequence[_Bound]) -> None:
        self.kind = kind
        self._bound = dict(bound)
        self._columns = tuple(columns)

    def phrase(self, feature: str, row: Sequence[float], contribution: float) -> str | None:
        """The reason ``feature`` gives for this kind's score, or None when it gives none.

        A phrase only when ``contribution`` (the feature's share of the client's raw score) is
        positive and the value lies on the side of the median that raises the score (then the
        phrase says both numbers), or the signal is absent and the template says why that
        matters. ``row``: the client's values in FEATURE_COLUMNS order (NaN = unknown).
        """
        if not contribution > 0:
            return None
        return _phrase(self._get(feature), row)

    def render_distinct(self, features: Sequence[str], row: Sequence[float], k: int) -> list[str]:
        """Up to ``k`` reasons from ``features``, positive contributions strongest first, one per topic.

        A candidate that gives no phrase (wrong side of the median, an absence without a phrase)
        leaves its slot to the next; one that tells a fact already told (same topic, or the same
        phrase) is skipped, so "1 open complaint" is not followed by "open complaint, severity 1".
        """
        return _distinct([self._get(f) for f in features], row, k)

    def render_columns(self, columns: Sequence[int], row: Sequence[float], k: int) -> list[str]:
        """:meth:`render_distinct` for candidates given as positions in the bound ``features``
        (the batch's fast path: the contributions' column indices, no names looked up)."""
        by_position = self._columns
        return _distinct([by_position[c] for c in columns], row, k)

    def _get(self, feature: str) -> _Bound:
        try:
            return self._bound[feature]
        except KeyError:
            raise KeyError(f"no reason template for feature {feature!r}") from None


def _distinct(candidates: Sequence[_Bound], row: Sequence[float], k: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for b in candidates:
        if b.topic in seen:
            continue
        phrase = _phrase(b, row)
        if phrase is None or phrase in out:
            continue
        seen.add(b.topic)
        out.append(phrase)
        if len(out) == k:
            break
    return out


def _phrase(b: _Bound, row: Sequence[float]) -> str | None:
    own = row[b.index]
    if own != own:  # unknown: only an absence can be said
        return b.absent
    small = own == 0 or abs(own) < b.zero_below
    if (
        b.sign
        and (own - b.median) * b.sign > 0
        and not (small and b.median_small)
        and (
            b.peer_format is None or abs(own - b.median) > b.resolution or b.peer_format(own) != b.median_text
        )
    ):
        fact = _fact(b.texts, b.zero, b.zero_below, own, row)
        if fact is not None:
            return fact + b.clause
    if small and b.absent_on_zero:
        return b.absent
    return None


def _fact(
    texts: tuple[_Compiled, ...], zero: _Compiled | None, zero_below: float, own: float, row: Sequence[float]
) -> str | None:
    if zero is not None and (own == 0 or abs(own) < zero_below):
        return _fill(zero, row)
    for compiled in texts:
        phrase = _fill(compiled, row)
        if phrase is not None:
            return phrase
    return None


def _fill(compiled: _Compiled, row: Sequence[float]) -> str | None:
    out: list[str] = []
    for literal, index, fmt in compiled.parts:
        out.append(literal)
        if fmt is None:
            continue
        x = row[index]
        if x is None or not math.isfinite(x):
            return None
        out.append(fmt(float(x)))
    return "".join(out)


_SIDE_WORDS = {"higher": "above", "lower": "below"}


def template_table_markdown(templates: Mapping[str, Template] = TEMPLATES) -> str:
    """The template table as Markdown (docs/serving.md embeds it; a test keeps them in sync)."""
    lines = [
        "| feature | the client's fact (first known alternative) | when 0 | similar clients "
        "(median 0) | raises churn when | raises win-back when | when absent |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in FEATURE_COLUMNS:
        tpl = templates[name]
        texts = " / ".join(f"`{_cell(t)}`" for t in tpl.texts)
        zero = f"`{_cell(tpl.zero)}`" if tpl.zero is not None else ""
        if tpl.zero is not None and tpl.zero_below > 0:
            zero += f" (also below {tpl.zero_below:g})"
        peer = f"`{_cell(tpl.peer)}`" if tpl.peer else ""
        if tpl.peer_zero:
            peer += f" (`{_cell(tpl.peer_zero)}`)"
        sides = [_SIDE_WORDS[s] + " median" if (s := tpl.raises.get(k)) else "never" for k in KINDS]
        absent = "; ".join(f"{k}: `{_cell(a.text)}`" for k, a in tpl.absent.items())
        if absent:
            absent += " (when 0 or unknown)" if tpl.absent_when == "zero" else " (when unknown)"
        lines.append(f"| `{name}` | {texts} | {zero} | {peer} | {sides[0]} | {sides[1]} | {absent} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
