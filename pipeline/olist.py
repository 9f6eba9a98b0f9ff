"""Real-data adapter: the Olist marketplace tables -> a raw CRM export for `comeback ingest`.

Olist publishes one row per order (with a ``customer_id`` minted per order), a customers table
that names the person behind each ``customer_id`` (``customer_unique_id``), one row per order
item and one per payment. The adapter does only what a mapping file cannot: join the tables,
aggregate items into orders, derive complaints from the delivery record, and account for every
source row. Renaming onto the contract and translating codes (order status, complaint reason ->
category) is left to ``mappings/olist.yaml``, so ingest validates the result like any export.

Rules (the measured counts are in data/README.md, section 5):

* **Export date**: the day after the last event the orders table records (purchase, approval,
  hand-over to the carrier, delivery): 2018-10-18 for the published data. Ingest must use the
  same ``ingest.export_date``, and ``ingest.timezone: America/Sao_Paulo``: every timestamp is
  naive Brazilian local time, and the adapter keeps them naive.
* **Clients**: one per ``customer_unique_id`` with an order; ``created_at`` = the person's first
  purchase (any order, also one set aside below); ``segment`` = the state (``customer_state``) of
  that first order's address, known when the client was created (a later move does not leak into
  earlier cutoffs); no managers. The customers row of the first order is kept, the rows of the
  person's further orders are counted as ``same_person``.
* **Orders**: one per ``order_id``. ``Amount`` = the sum of the items' ``price`` (BRL, rounded to
  centavos); freight is left out like Online Retail's postage (a pass-through to the carrier).
  ``item_count`` = distinct products, ``quantity`` = items (each item row is one unit). The
  status is Olist's own code, translated by the mapping. Set aside, by rule: ``duplicate_order``
  (a later row of an ``order_id`` already seen), ``no_customer`` (its ``customer_id`` is not in
  the customers table), ``no_items`` (no item rows, so no amount), ``zero_amount`` (items worth
  0.00). Orders set aside still yield their complaint.
* **Complaints** (one at most per order, rule = the first that applies; ``human_factor`` false
  throughout, since the data records no cause; the ``order_id`` is the complaint id). Point in
  time: a complaint's ``created_at`` is when it became known, and its severity and category are
  those known at that moment; only ``resolved_at`` may come later (the features count a complaint
  as resolved at a cutoff only once ``resolved_at`` is before it). "The promised date passed"
  below means 00:00 of the day after ``order_estimated_delivery_date`` (a date, always 00:00, so
  a delivery on that day is on time).

  - ``canceled_unpaid``: cancelled before the payment was approved: severity 1, category billing.
  - ``canceled``: cancelled after approval (the client paid and got nothing): severity 3, service.
  - ``unavailable``: the product could not be supplied: severity 3, category product.
    The data has no cancellation time; it came at or after the last event the order records,
    and is taken as known when the promised date passed, or at that last event if later. The
    promised date is when the order's failure is known either way: a paid order still undelivered
    then becomes an overdue complaint (below), so from that moment the order has a complaint
    whether the cancellation came before or after it, and a cancellation dated there is not early
    unless it came later still (an assumption; data/README.md counts the orders it may not hold
    for). Resolved at once. A cancellation whose promised date had not passed at the export is
    not dated before it and gives no complaint (``canceled_not_due``).
  - ``late_delivery``: delivered on a calendar day after the estimated day. Created when the
    promised date passed, resolved at delivery; category delivery.
  - ``not_delivered``: paid and still in progress (shipped, invoiced, processing, approved) at the
    export with the promised date passed: created then, open; category delivery.

  Both delivery rules are one overdue complaint, the same until the parcel arrives: severity 2
  (``RULE_SEVERITY``: paid, not received, past the promised date, may still come: above an
  unpaid cancellation, below a paid order that certainly failed). How late the parcel ends up is
  not on the row (a severity graded by the final delay would tell, while the parcel is still late,
  how late it will be; a complaint made only at delivery would leave a parcel late at a cutoff
  without a complaint while one that never arrives has one); it enters the features at delivery,
  as the complaint's resolution time. Orders without a complaint are counted by why:
  ``on_time``, ``not_due_yet``, ``canceled_not_due``, ``delivered_without_date``,
  ``never_approved`` (status created), ``no_estimate``, ``other_status``.
* **Payments**: not mapped. ``due_at`` and ``paid_at`` stay null: Olist takes payment up front
  (card, boleto, voucher) and an order whose payment is not approved is cancelled instead, so
  there is no credit, no due date and no late payment for the payment features to measure. The
  approval delay is the payment method's and the bank's clearing time (hours for cards, days for
  a boleto), not the client's behaviour; as "lateness" it would make score exclude boleto buyers
  as bad payers. Each payment row is accounted to its order, and the report says for how many
  kept orders the payments equal items + freight to the centavo (a cross-check of the amount).
* Not read: products, sellers and the category translation (nothing in the contract takes them).

Hand-written SQL rather than a library: the joins and rules are specific to this data set, and
DuckDB (already the ingest engine) runs them over the 100k-row tables in 2 to 3 s on 2 busy cores.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table as RichTable

from pipeline.online_retail import shared_data_dir

#: Every Olist timestamp is naive Brazilian local time: ingest reads it in this zone (ingest.timezone).
TIMEZONE = "America/Sao_Paulo"
log = logging.getLogger(__name__)

OLIST_DIR = Path("olist")
#: The source tables the adapter reads: report name -> published file.
SOURCE_FILES = {
    "orders": "olist_orders_dataset.parquet",
    "customers": "olist_customers_dataset.parquet",
    "order_items": "olist_order_items_dataset.parquet",
    "order_payments": "olist_order_payments_dataset.parquet",
}
#: Columns each source table must have.
SOURCE_COLUMNS = {
    "orders": (
        "order_id",
        "customer_id",
        "order_status",
        "order_purchase_timestamp",
        "order_approved_at",
        "order_delivered_carrier_date",
        "order_delivered_customer_date",
        "order_estimated_delivery_date",
    ),
    "customers": ("customer_id", "customer_unique_id", "customer_state"),
    "order_items": ("order_id", "order_item_id", "product_id", "price", "freight_value"),
    "order_payments": ("order_id", "payment_value"),
}
KEPT = "kept"
#: Rows of each source table by bucket, in the order a row is assigned to the first that applies.
BUCKETS = {
    "orders": ("duplicate_order", "no_customer", "no_items", "zero_amount", KEPT),
    "customers": ("duplicate_customer_id", "no_unique_id", "no_order", "same_person", KEPT),
    "order_items": ("unknown_order", "duplicate_item", "order_set_aside", KEPT),
    "order_payments": ("unknown_order", "order_set_aside", KEPT),
}
#: Complaint rules, in the order an order is assigned to the first that applies (the order's
#: complaint rule, or why it has none); the first five produce a complaint.
COMPLAINT_RULES = ("canceled_unpaid", "canceled", "unavailable", "late_delivery", "not_delivered")
NO_COMPLAINT = (
    "no_estimate",
    "canceled_not_due",
    "on_time",
    "never_approved",
    "delivered_without_date",
    "other_status",
    "not_due_yet",
)
#: Paid orders still on their way at the export: late once the estimate has passed.
IN_PROGRESS_STATUSES = ("shipped", "invoiced", "processing", "approved")
#: Order statuses of the cancellation rules.
CANCELLED_STATUSES = ("canceled", "unavailable")
#: Severity (1..5) of each complaint rule, fixed when the complaint is created: an overdue parcel
#: (late_delivery until it arrives, not_delivered if it never does) is 2, whatever happens later.
RULE_SEVERITY = {
    "canceled_unpaid": 1,
    "canceled": 3,
    "unavailable": 3,
    "late_delivery": 2,
    "not_delivered": 2,
}


@dataclass
class OlistExport:
    """The raw export built from Olist, and where every source row went.

    ``rows_by_bucket``: per source table, rows per bucket of ``BUCKETS`` (their sum is the rows
    read). ``orders_by_complaint_rule``: every order with a client (not ``duplicate_order`` nor
    ``no_customer``) by its complaint rule or the reason it has none.
    """

    clients: pa.Table
    orders: pa.Table
    complaints: pa.Table
    rows_by_bucket: dict[str, dict[str, int]]
    orders_by_complaint_rule: dict[str, int]
    orders_by_status: dict[str, int]
    export_date: dt.date
    last_event_at: dt.datetime
    payments_match_items_and_freight: int

    def report(self) -> dict[str, Any]:
        """The accounting as JSON-ready data: per table rows read = kept + set aside, by rule."""
        tables = {}
        for name, buckets in self.rows_by_bucket.items():
            aside = {b: n for b, n in buckets.items() if b != KEPT}
            tables[name] = {
                "rows_read": sum(buckets.values()),
                "rows_kept": buckets[KEPT],
                "rows_set_aside": sum(aside.values()),
                "set_aside_by_rule": aside,
            }
        kept_orders = self.rows_by_bucket["orders"][KEPT]
        return {
            # what params.yaml's ingest section must say for this export
            "ingest": {"export_date": self.export_date.isoformat(), "timezone": TIMEZONE},
            "export_date": self.export_date.isoformat(),
            "last_event_at": self.last_event_at.isoformat(),
            "timezone": "America/Sao_Paulo (naive local time, kept naive)",
            "tables": tables,
            "clients": self.clients.num_rows,
            "clients_without_kept_order": self.clients.num_rows
            - len(set(self.orders.column("customer_unique_id").to_pylist())),
            "orders_by_status": self.orders_by_status,
            "orders_by_complaint_rule": self.orders_by_complaint_rule,
            "complaints": self.complaints.num_rows,
            "severity_by_rule": dict(RULE_SEVERITY),
            "payments_match_items_and_freight": {
                "orders": self.payments_match_items_and_freight,
                "of_kept_orders": kept_orders,
            },
        }

    def write(self, out: Path) -> Path:
        """Write ``out/{clients,orders,complaints}.parquet`` and ``out/adapter_report.json``, each
        atomically; return ``out`` (the raw export folder for ``comeback ingest``)."""
        from models.io import write_atomic
        from pipeline.ingest import write_parquet

        for name in ("clients", "orders", "complaints"):
            write_parquet(getattr(self, name), out / f"{name}.parquet")
        text = json.dumps(self.report(), indent=2) + "\n"
        write_atomic(out / "adapter_report.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return out


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _load_sources(con: duckdb.DuckDBPyConnection, source: Path) -> None:
    """Load each source table into ``con`` as ``src_<name>`` with its file row number ``rn``."""
    if not source.is_dir():
        raise FileNotFoundError(f"Olist folder not found: {source} (set --source or COMEBACK_SHARED_DATA)")
    for name, file in SOURCE_FILES.items():
        path = source / file
        if not path.is_file():
            raise FileNotFoundError(f"Olist file not found: {path}")
        present = {
            r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        }
        missing = [c for c in SOURCE_COLUMNS[name] if c not in present]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        con.execute(
            f"CREATE TABLE src_{name} AS SELECT *, file_row_number AS rn "
            "FROM read_parquet(?, file_row_number = true)",
            [str(path)],
        )


def _child_bucket_sql(table: str, duplicate_rule: str | None) -> str:
    """SQL counting the rows of an order's child ``table`` (items, payments) per bucket.

    A row whose order is unknown is ``unknown_order``; with ``duplicate_rule``, a row flagged
    ``dup`` gets that bucket; a row of an order set aside is ``order_set_aside``; the rest kept.
    """
    duplicate = f"WHEN t.dup THEN '{duplicate_rule}'" if duplicate_rule else ""
    return f"""SELECT CASE
            WHEN o.order_id IS NULL THEN 'unknown_order'
            {duplicate}
            WHEN o.bucket <> 'kept' THEN 'order_set_aside'
            ELSE 'kept'
        END, count(*)
        FROM {table} t LEFT JOIN (SELECT order_id, bucket FROM orders WHERE NOT dup) o
            ON t.order_id = o.order_id
        GROUP BY 1"""


def _counts(con: duckdb.DuckDBPyConnection, sql: str, names: tuple[str, ...]) -> dict[str, int]:
    got = dict(con.execute(sql).fetchall())
    return {n: int(got.get(n, 0)) for n in names}


def adapt_olist(source: Path, threads: int = 2) -> OlistExport:
    """Join and aggregate the Olist tables into clients, orders and complaints (module docstring).

    ``source`` is the folder of the published Parquet files. Every row of the four tables read
    lands in exactly one bucket of ``rows_by_bucket``.
    """
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        _load_sources(con, source)
        last_event = con.execute(
            """SELECT max(greatest(order_purchase_timestamp, order_approved_at,
                                   order_delivered_carrier_date, order_delivered_customer_date))
               FROM src_orders"""
        ).fetchone()
        if last_event is None or last_event[0] is None:
            raise ValueError(f"{source / SOURCE_FILES['orders']}: no order has a timestamp")
        last_event_at: dt.datetime = last_event[0]
        export_date = last_event_at.date() + dt.timedelta(days=1)
        con.execute(
            """
            CREATE TABLE customers AS
            SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY rn) > 1 AS dup FROM src_customers;
            CREATE TABLE items AS
            SELECT *, row_number() OVER (PARTITION BY order_id, order_item_id ORDER BY rn) > 1 AS dup
            FROM src_order_items;
            CREATE TABLE orders AS
            WITH o AS (
                SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY rn) > 1 AS dup FROM src_orders
            ), per_order AS (
                SELECT order_id, round(sum(price), 2) AS items_price,
                       CAST(count(DISTINCT product_id) AS BIGINT) AS distinct_products,
                       CAST(count(*) AS DOUBLE) AS items
                FROM items WHERE NOT dup GROUP BY order_id
            )
            SELECT o.*, c.customer_unique_id, c.customer_state,
                it.items_price, it.distinct_products, it.items,
                CASE
                    WHEN o.dup THEN 'duplicate_order'
                    WHEN c.customer_unique_id IS NULL THEN 'no_customer'
                    WHEN it.order_id IS NULL THEN 'no_items'
                    WHEN coalesce(it.items_price, 0) <= 0 THEN 'zero_amount'
                    ELSE 'kept'
                END AS bucket
            FROM o
            LEFT JOIN (SELECT customer_id, customer_unique_id, customer_state FROM customers WHERE NOT dup) c
                ON o.customer_id = c.customer_id
            LEFT JOIN per_order it ON o.order_id = it.order_id;
            """
        )
        # Orders with a client: the person's first order gives created_at and segment.
        con.execute(
            """
            CREATE TABLE placed AS
            SELECT *, row_number() OVER (PARTITION BY customer_unique_id
                                         ORDER BY order_purchase_timestamp NULLS LAST, order_id, rn) AS seq
            FROM orders WHERE bucket NOT IN ('duplicate_order', 'no_customer')
            """
        )
        buckets = {
            "orders": _counts(con, "SELECT bucket, count(*) FROM orders GROUP BY 1", BUCKETS["orders"]),
            "customers": _counts(
                con,
                """SELECT CASE
                       WHEN c.dup THEN 'duplicate_customer_id'
                       WHEN c.customer_unique_id IS NULL THEN 'no_unique_id'
                       WHEN p.customer_id IS NULL THEN 'no_order'
                       WHEN p.first THEN 'kept'
                       ELSE 'same_person'
                   END, count(*)
                   FROM customers c LEFT JOIN (
                       SELECT customer_id, bool_or(seq = 1) AS first FROM placed GROUP BY 1
                   ) p ON NOT c.dup AND c.customer_id = p.customer_id
                   GROUP BY 1""",
                BUCKETS["customers"],
            ),
            "order_items": _counts(con, _child_bucket_sql("items", "duplicate_item"), BUCKETS["order_items"]),
            "order_payments": _counts(
                con, _child_bucket_sql("src_order_payments", None), BUCKETS["order_payments"]
            ),
        }
        cancelled = _sql_list(CANCELLED_STATUSES)
        con.execute(
            f"""
            CREATE TABLE ruled AS
            SELECT *,
                CASE
                    WHEN order_status IN ({cancelled}) AND order_estimated_delivery_date IS NULL
                        THEN 'no_estimate'
                    WHEN order_status IN ({cancelled}) AND passed_at >= DATE '{export_date}'
                        THEN 'canceled_not_due'
                    WHEN order_status = 'canceled' AND order_approved_at IS NULL THEN 'canceled_unpaid'
                    WHEN order_status = 'canceled' THEN 'canceled'
                    WHEN order_status = 'unavailable' THEN 'unavailable'
                    WHEN order_delivered_customer_date IS NOT NULL AND order_estimated_delivery_date IS NULL
                        THEN 'no_estimate'
                    WHEN order_delivered_customer_date >= passed_at THEN 'late_delivery'
                    WHEN order_delivered_customer_date IS NOT NULL THEN 'on_time'
                    WHEN order_status = 'created' THEN 'never_approved'
                    WHEN order_status = 'delivered' THEN 'delivered_without_date'
                    WHEN order_status NOT IN ({_sql_list(IN_PROGRESS_STATUSES)}) OR order_status IS NULL
                        THEN 'other_status'
                    WHEN order_estimated_delivery_date IS NULL THEN 'no_estimate'
                    WHEN passed_at < DATE '{export_date}' THEN 'not_delivered'
                    ELSE 'not_due_yet'
                END AS rule
            FROM (
                -- when the promised date passed: 00:00 of the day after the estimated delivery date
                SELECT *, CAST(CAST(order_estimated_delivery_date AS DATE) + 1 AS TIMESTAMP) AS passed_at
                FROM placed
            )
            """
        )
        rules = _counts(con, "SELECT rule, count(*) FROM ruled GROUP BY 1", (*COMPLAINT_RULES, *NO_COMPLAINT))
        severity = " ".join(f"WHEN '{r}' THEN {n}" for r, n in RULE_SEVERITY.items())
        # Cancellations: known once the promised date passed, or at the last event if later; the
        # delivery rules: once the promised date passed. Either way nothing on the row is later.
        complaints = con.sql(
            f"""
            SELECT order_id, customer_unique_id, complaint_created_at,
                CAST(CASE reason {severity} END AS BIGINT) AS severity, reason, false AS human_factor,
                CASE reason WHEN 'late_delivery' THEN order_delivered_customer_date
                            WHEN 'not_delivered' THEN NULL
                            ELSE complaint_created_at END AS resolved_at
            FROM (
                SELECT *, rule AS reason,
                    CASE WHEN rule IN ('late_delivery', 'not_delivered') THEN passed_at
                        ELSE greatest(passed_at, order_purchase_timestamp, order_approved_at,
                                      order_delivered_carrier_date, order_delivered_customer_date)
                    END AS complaint_created_at
                FROM ruled WHERE rule IN ({_sql_list(COMPLAINT_RULES)})
            )
            ORDER BY complaint_created_at, order_id
            """
        ).to_arrow_table()
        clients = con.sql(
            """
            SELECT customer_unique_id, order_purchase_timestamp AS first_purchase_timestamp, customer_state
            FROM placed WHERE seq = 1 ORDER BY customer_unique_id
            """
        ).to_arrow_table()
        orders = con.sql(
            """
            SELECT order_id, customer_unique_id, order_purchase_timestamp, order_status,
                   items_price, distinct_products, items
            FROM orders WHERE bucket = 'kept' ORDER BY order_purchase_timestamp, order_id
            """
        ).to_arrow_table()
        statuses = dict(
            con.execute(
                "SELECT order_status, count(*) FROM orders WHERE bucket = 'kept' GROUP BY 1"
            ).fetchall()
        )
        matched = con.execute(
            """
            WITH f AS (SELECT order_id, sum(freight_value) AS freight FROM items WHERE NOT dup GROUP BY 1),
                 p AS (SELECT order_id, sum(payment_value) AS paid FROM src_order_payments GROUP BY 1)
            SELECT count(*) FROM orders o JOIN f USING (order_id) JOIN p USING (order_id)
            WHERE o.bucket = 'kept' AND abs(o.items_price + f.freight - p.paid) < 0.005
            """
        ).fetchone()
    finally:
        con.close()
    return OlistExport(
        clients=clients,
        orders=orders,
        complaints=complaints,
        rows_by_bucket=buckets,
        orders_by_complaint_rule=rules,
        orders_by_status={str(k): int(v) for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        export_date=export_date,
        last_event_at=last_event_at,
        payments_match_items_and_freight=int(matched[0]) if matched else 0,
    )


def accounting_table(export: OlistExport, source: Path) -> RichTable:
    """The adapter's accounting as a Rich table: per source table read = kept + set aside, by rule."""
    t = RichTable(title=f"Olist rows ({source})")
    for col in ("table", "read", "kept", "set aside", "by rule"):
        t.add_column(col, justify="left" if col in ("table", "by rule") else "right", overflow="fold")
    for name, entry in export.report()["tables"].items():
        rules = ", ".join(f"{r} {n:,}" for r, n in entry["set_aside_by_rule"].items() if n)
        t.add_row(
            name,
            f"{entry['rows_read']:,}",
            f"{entry['rows_kept']:,}",
            f"{entry['rows_set_aside']:,}",
            rules or "-",
        )
    return t


def command(
    source: Path | None = typer.Option(
        None, "--source", help="Folder of the Olist Parquet files (default: $COMEBACK_SHARED_DATA/olist)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for the raw export (clients/orders/complaints.parquet, adapter_report.json).",
    ),
) -> None:
    """Turn the Olist tables into a raw export (ingest it with mappings/olist.yaml)."""
    console = Console()
    folder = source or shared_data_dir() / OLIST_DIR
    try:
        export = adapt_olist(folder)
    except (FileNotFoundError, ValueError, duckdb.Error) as e:
        console.print(f"[red]adapt-olist failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
    export.write(out)
    console.print(accounting_table(export, folder))
    rules = ", ".join(
        f"{r} {n:,}" for r, n in export.orders_by_complaint_rule.items() if r in COMPLAINT_RULES
    )
    console.print(
        f"{export.clients.num_rows:,} clients, {export.orders.num_rows:,} orders, "
        f"{export.complaints.num_rows:,} complaints ({rules}); export date {export.export_date} "
        f"(ingest.export_date, timezone {TIMEZONE}); written to {out}",
        highlight=False,
    )
