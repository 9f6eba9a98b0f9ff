"""Reasons in words: a client's top feature contributions turned into plain phrases.

Every model input (``features.contract.FEATURE_COLUMNS``) has a template in :data:`TEMPLATES`, so a
raw feature name is never shown. A template is a list of alternatives, the first whose values are
all known is used; ``zero`` is used instead when the feature's own value is 0 (counts and flags).
Placeholders are ``{feature|format}`` with the client's value of any feature:

====================  =====================================================
format                renders
====================  =====================================================
``days``              "140 days" (rounded; "1 day")
``n``                 "3" (rounded integer)
``x.y``               "1.5" (one decimal)
``money``             "1,234" (company currency, rounded)
``pct``               "45%" (a share 0..1)
``severity``          "4 (catastrophe)" (complaint severity 1..5)
``plural:WORD``       "3 late payments" / "1 late payment"
``change:WORD``       "2 more orders" / "1 fewer order" (a signed count)
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
from dataclasses import dataclass

from features.contract import FEATURE_COLUMNS, SEVERITY_MEANING

_PLACEHOLDER = re.compile(r"\{(\w+)(?:\|([^}]+))?\}")


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
class Template:
    """Phrase alternatives for one feature (first fully known one wins) and an optional zero phrase."""

    texts: tuple[str, ...]
    zero: str | None = None
    missing: str = "no data"
    topic: str | None = None  # features telling the same fact share a topic: one phrase per topic
    zero_below: float = 0.0  # |value| below this also gets the zero phrase (continuous features)


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


def _window_templates() -> dict[str, Template]:
    out: dict[str, Template] = {}
    for w in (30, 90, 180, 365):
        out[f"orders_{w}d"] = Template(
            (f"{{orders_{w}d|plural:completed order}} in the last {w} days",),
            zero=f"no completed order in the last {w} days",
        )
        out[f"amount_{w}d"] = Template(
            (f"bought for {{amount_{w}d|money}} in the last {w} days",),
            zero=f"no purchases in the last {w} days",
        )
        out[f"margin_{w}d"] = Template(
            (f"margin of {{margin_{w}d|money}} in the last {w} days",),
            zero=f"no margin in the last {w} days",
        )
    return out


#: feature -> phrase template. Every FEATURE_COLUMNS entry must be here (tests check it).
TEMPLATES: dict[str, Template] = {
    "recency_days": Template(
        (
            "no order for {recency_days|days}; usually orders every {gap_mean_days|n}",
            "no order for {recency_days|days}",
        ),
        missing="no completed order yet",
        topic="recency",
    ),
    "tenure_days": Template(("client for {tenure_days|days}",)),
    "days_since_first_order": Template(
        ("first order {days_since_first_order|days} ago",), missing="no completed order yet"
    ),
    **_window_templates(),
    "orders_total": Template(
        ("{orders_total|plural:completed order} in total",), zero="no completed order yet"
    ),
    "amount_total": Template(("bought for {amount_total|money} in total",), zero="no purchases yet"),
    "margin_total": Template(("margin of {margin_total|money} in total",), zero="no margin yet"),
    "avg_order_amount": Template(("average order of {avg_order_amount|money}",), missing="no order yet"),
    "gap_mean_days": Template(
        ("usually orders every {gap_mean_days|days}",),
        missing="has ordered only once",
        topic="recency",
    ),
    "gap_std_days": Template(
        ("time between orders varies by about {gap_std_days|days}",), missing="too few orders to see a rhythm"
    ),
    "overdue_ratio": Template(
        ("time since the last order is {overdue_ratio|x.y} times the usual gap",),
        missing="too few orders to know the usual gap",
        topic="recency",
    ),
    "orders_trend_90d": Template(
        ("{orders_trend_90d|change:completed order} in the last 90 days than in the 90 before",),
        zero="as many completed orders in the last 90 days as in the 90 before",
        missing="no recent orders",
    ),
    "amount_trend_90d": Template(
        ("spending {amount_trend_90d|logchange} in the last 90 days against the 90 before",),
        zero="spending flat: the last 90 days against the 90 before",
        missing="no recent spending",
        zero_below=0.005,
    ),
    "cancelled_orders_total": Template(
        ("{cancelled_orders_total|plural:cancelled order}",), zero="no cancelled order"
    ),
    "returned_orders_total": Template(
        ("{returned_orders_total|plural:returned order}",), zero="no returned order"
    ),
    "cancelled_share": Template(("{cancelled_share|pct} of orders cancelled",), missing="no orders yet"),
    "returned_share": Template(("{returned_share|pct} of orders returned",), missing="no orders yet"),
    "complaints_90d": Template(
        ("{complaints_90d|plural:complaint} in the last 90 days",), zero="no complaint in the last 90 days"
    ),
    "complaints_365d": Template(
        ("{complaints_365d|plural:complaint} in the last 365 days",), zero="no complaint in the last 365 days"
    ),
    "complaints_total": Template(("{complaints_total|plural:complaint} in total",), zero="never complained"),
    "complaint_severity_max": Template(
        ("worst complaint: severity {complaint_severity_max|severity}",), missing="never complained"
    ),
    "complaint_severity_mean": Template(
        ("complaints average severity {complaint_severity_mean|x.y} of 5",), missing="never complained"
    ),
    "complaint_severity_weighted_365d": Template(
        ("severity-weighted complaints in the last 365 days: {complaint_severity_weighted_365d|x.y}",),
        zero="no complaint in the last 365 days",
    ),
    "open_complaints": Template(
        ("{open_complaints|plural:open complaint}, worst severity {open_complaint_severity_max|severity}",),
        zero="no open complaint",
        topic="open_complaint",
    ),
    "open_complaint_severity_max": Template(
        (
            "open complaint, severity {open_complaint_severity_max|n}, {days_since_last_complaint|days} old",
            "open complaint, severity {open_complaint_severity_max|n}",
        ),
        zero="no open complaint",
        missing="no open complaint",
        topic="open_complaint",
    ),
    "resolved_complaint_share": Template(
        ("{resolved_complaint_share|pct} of complaints resolved",),
        zero="none of its complaints resolved yet",
        missing="never complained",
        topic="open_complaint",
    ),
    "complaint_resolve_days_mean": Template(
        ("complaints took {complaint_resolve_days_mean|days} to resolve on average",),
        missing="no resolved complaint",
        topic="open_complaint",
    ),
    "days_since_last_complaint": Template(
        ("last complaint {days_since_last_complaint|days} ago",), missing="never complained"
    ),
    "human_factor_complaints_365d": Template(
        ("{human_factor_complaints_365d|plural:complaint} about staff in the last 365 days",),
        zero="no complaint about staff in the last 365 days",
    ),
    "last_complaint_resolved": Template(
        ("last complaint was resolved",),
        zero="last complaint is still open",
        missing="never complained",
        topic="open_complaint",
    ),
    "last_complaint_severity": Template(
        ("last complaint: severity {last_complaint_severity|severity}",), missing="never complained"
    ),
    "payment_delay_mean_days": Template(
        ("pays {payment_delay_mean_days|days} after the due date on average",),
        zero="pays by the due date on average",
        missing="no invoice due yet",
        zero_below=0.5,  # rounds to "0 days": the demo lists read "pays 0 days after the due date"
    ),
    "late_payment_share": Template(
        ("{late_payment_share|pct} of invoices paid late",), zero="pays on time", missing="no invoice due yet"
    ),
    "late_payments_365d": Template(
        ("{late_payments_365d|plural:late payment} this year",),
        zero="no late payment this year",
    ),
    "overdue_unpaid_amount": Template(
        ("{overdue_unpaid_amount|money} overdue and unpaid",), zero="nothing overdue"
    ),
    "is_new": Template(
        ("new client: first order {days_since_first_order|days} ago", "new client"),
        zero="not a new client",
    ),
    "days_since_loss": Template(("lost {days_since_loss|days} ago",), missing="never lost before"),
    "times_lost": Template(("lost {times_lost|plural:time} before",), zero="never lost before"),
    "times_returned": Template(
        ("came back {times_returned|plural:time} after being lost",), zero="never came back after a loss"
    ),
    "twice_lost": Template(("lost at least twice before",), zero="not lost twice before"),
    "returned_recently": Template(
        ("came back recently after being lost",), zero="no recent comeback after a loss"
    ),
    "days_since_return": Template(
        ("came back {days_since_return|days} ago",), missing="never came back after a loss"
    ),
    "prevention_contacts_365d": Template(
        ("{prevention_contacts_365d|plural:retention contact} in the last 365 days",),
        zero="not reached by a retention campaign in the last 365 days",
    ),
    "winback_contacts_365d": Template(
        ("{winback_contacts_365d|plural:win-back contact} in the last 365 days",),
        zero="not yet approached by a win-back campaign (in the last 365 days)",
    ),
    "days_since_last_contact": Template(
        ("last campaign contact {days_since_last_contact|days} ago",), missing="never contacted by a campaign"
    ),
    # rhythm (features.rhythm): a buy-till-you-die reading of the client's own pace
    "order_rate_per_day": Template(
        ("orders on about {order_rate_per_day|pct} of days",),
        missing="no completed order yet",
        topic="rhythm",
    ),
    "silence_probability": Template(
        ("at its usual pace a silence this long happens {silence_probability|pct} of the time",),
        missing="no completed order yet",
        topic="rhythm",
    ),
    "alive_probability": Template(
        ("{alive_probability|pct} chance it is still buying, given its pace and its silence",),
        missing="no completed order yet",
        topic="rhythm",
    ),
    "rhythm_no_order_probability": Template(
        ("at its pace, {rhythm_no_order_probability|pct} chance of no order in the coming window",),
        missing="no completed order yet",
        topic="rhythm",
    ),
    "expected_orders_horizon": Template(
        ("about {expected_orders_horizon|x.y} orders expected in the coming window at its pace",),
        missing="no completed order yet",
        topic="rhythm",
    ),
    **{
        f"decayed_orders_{d}d": Template(
            (f"recent buying: {{decayed_orders_{d}d|x.y}} orders {span}, older ones counting less",),
            zero=f"hardly any buying {span}",
            missing="no completed order yet",
            topic="decayed_orders",
            zero_below=0.05,
        )
        for d, span in ((30, "in recent weeks"), (90, "in recent months"), (365, "over the past year"))
    },
    # basket, returns and regularity (features.basket)
    "items_per_order_mean": Template(
        ("about {items_per_order_mean|x.y} different products per order",),
        missing="no basket data",
        topic="basket",
    ),
    "units_per_order_mean": Template(
        ("about {units_per_order_mean|n} units per order",), missing="no basket data", topic="basket"
    ),
    "units_per_item_mean": Template(
        ("about {units_per_item_mean|n} units of each product it buys",),
        missing="no basket data",
        topic="basket",
    ),
    "items_trend_90d": Template(
        ("products per order {items_trend_90d|logchange} in the last 90 days against before",),
        missing="no basket trend (no orders on both sides of the last 90 days)",
        topic="basket",
    ),
    "returned_amount_90d": Template(
        ("returned goods worth {returned_amount_90d|money} in the last 90 days",),
        zero="nothing returned in the last 90 days",
        topic="returns",
    ),
    "returned_amount_365d": Template(
        ("returned goods worth {returned_amount_365d|money} in the last 365 days",),
        zero="nothing returned in the last 365 days",
        topic="returns",
    ),
    "days_since_last_return": Template(
        ("last return {days_since_last_return|days} ago",), missing="never returned an order", topic="returns"
    ),
    "orders_14d": Template(
        ("{orders_14d|plural:order} in the last 14 days",), zero="no order in the last 14 days"
    ),
    "active_months_share": Template(
        ("ordered in {active_months_share|pct} of the 30-day periods since its first order",),
        missing="no completed order yet",
    ),
}


class ReasonRenderer:
    """Renders reasons for clients from a value lookup; templates compiled once."""

    def __init__(self, templates: Mapping[str, Template] = TEMPLATES) -> None:
        self._compiled: dict[str, tuple[tuple[_Compiled, ...], _Compiled | None, str, float]] = {
            name: (
                tuple(_compile(t) for t in tpl.texts),
                _compile(tpl.zero) if tpl.zero is not None else None,
                tpl.missing,
                tpl.zero_below,
            )
            for name, tpl in templates.items()
        }
        self._topics = {name: tpl.topic or name for name, tpl in templates.items()}

    def render_distinct(self, features: Sequence[str], row: Sequence[float], k: int) -> list[str]:
        """Up to ``k`` phrases for the candidate ``features`` (strongest first), one per topic.

        A candidate is skipped when an earlier one told the same fact (same topic, or the same
        phrase), so "1 open complaint" is not followed by "open complaint, severity 1".
        """
        out: list[str] = []
        seen: set[str] = set()
        for feature in features:
            topic = self._topics.get(feature, feature)
            if topic in seen:
                continue
            phrase = self.render_row(feature, row)
            if phrase in out:
                continue
            seen.add(topic)
            out.append(phrase)
            if len(out) == k:
                break
        return out

    def render(self, feature: str, value_of: Callable[[str], float]) -> str:
        """The phrase for ``feature`` of one client; ``value_of(name)`` gives its values (NaN = unknown)."""
        return self.render_row(feature, [value_of(name) for name in FEATURE_COLUMNS])

    def render_row(self, feature: str, row: Sequence[float]) -> str:
        """The phrase for ``feature`` of one client whose values are ``row`` (FEATURE_COLUMNS order).

        The fast path of the batch: pass ``matrix[r].tolist()``.
        """
        try:
            texts, zero, missing, zero_below = self._compiled[feature]
        except KeyError:
            raise KeyError(f"no reason template for feature {feature!r}") from None
        own = row[_COLUMN_INDEX[feature]]
        if zero is not None and (own == 0 or abs(own) < zero_below):
            return _fill(zero, row) or missing
        if own != own:  # NaN: the feature is unknown for this client
            return missing
        for compiled in texts:
            phrase = _fill(compiled, row)
            if phrase is not None:
                return phrase
        return missing


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


def template_table_markdown(templates: Mapping[str, Template] = TEMPLATES) -> str:
    """The template table as Markdown (docs/serving.md embeds it; a test keeps them in sync)."""
    lines = [
        "| feature | phrase (first known alternative) | when 0 | when unknown |",
        "| --- | --- | --- | --- |",
    ]
    for name in FEATURE_COLUMNS:
        tpl = templates[name]
        texts = " / ".join(f"`{_cell(t)}`" for t in tpl.texts)
        zero = f"`{_cell(tpl.zero)}`" if tpl.zero is not None else ""
        if tpl.zero is not None and tpl.zero_below > 0:
            zero += f" (also below {tpl.zero_below:g})"
        lines.append(f"| `{name}` | {texts} | {zero} | `{_cell(tpl.missing)}` |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
