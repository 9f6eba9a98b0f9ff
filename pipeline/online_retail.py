"""Real-data adapter: UCI "Online Retail" invoice lines -> a raw CRM export for `comeback ingest`.

The published file has one row per invoice *line*; the contract has one row per *order*. The
adapter does only what a mapping file cannot: aggregate lines into invoices and clients, and
account for every line. Renaming columns and translating codes is left to
``mappings/online_retail.yaml``, so ingest validates the result like any other export.

Decisions (documented with the measured counts in data/README.md):

* One order per invoice (``InvoiceNo``); ``Amount`` = sum of Quantity * UnitPrice over its
  *product* lines, rounded to pence (GBP). ``InvoiceDate`` = the invoice's first line time, naive
  UK local time (ingest reads it in Europe/London). ``ItemCount`` = distinct product stock codes
  and ``Quantity`` = units (absolute value of the summed product-line quantities) of the invoice:
  the optional basket columns of the contract.
* Cancellation invoices (``C...``) become orders with ``Kind = cancellation`` (mapped to status
  ``returned``) and a positive amount (the absolute value of the credited product value). They are
  not complaints, and they are not matched to the invoice they cancel (the data has no link).
* Lines without CustomerID cannot be attributed to a client: counted, not turned into orders.
* ``A...`` bad-debt adjustment invoices (the only negative prices) are accounting entries: counted.
* Exact duplicate lines: the first copy is used, later copies are counted and dropped (ingest's
  ``duplicate_row`` works on orders, and summing a double-exported line would inflate the amount).
* Non-product stock codes (postage, carriage, manual entries, discounts, fees, charity, samples)
  are left out of the amount: they are pass-through costs or bookkeeping, not what the client
  bought. An invoice with only such lines yields no order.
* Clients: one per CustomerID with any attributed line; ``FirstInvoiceDate`` = first line time
  (the data starts 2010-12-01, so older clients look new then); ``Country`` = the country of most
  of their lines (ties: alphabetical) becomes the segment; no manager, no do-not-contact flag.
* Margin, due and paid dates are unknown (mapped to null); there are no complaints (an empty
  complaints table) and no contacts (no file).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table as RichTable

log = logging.getLogger(__name__)

#: Stock codes that are not products: postage (POST, DOT), carriage (C2), manual (M, m), discount
#: (D), samples (S), bank charges, Amazon fee, CRUK charity commission, bad-debt adjustment (B).
NON_PRODUCT_CODES = ("POST", "DOT", "C2", "M", "m", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "B")
ONLINE_RETAIL_FILE = Path("online_retail") / "online_retail_I.parquet"
#: InvoiceDate is naive UK local time: ingest reads it in this zone (ingest.timezone).
TIMEZONE = "Europe/London"
#: Line buckets, in the order a line is assigned to the first that applies.
BUCKETS = ("bad_debt_adjustment", "no_customer_id", "duplicate_line", "non_product", "product")


def shared_data_dir() -> Path:
    """The shared data folder: ``$COMEBACK_SHARED_DATA`` or ``../shared/data`` beside the repo."""
    env = os.environ.get("COMEBACK_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class AdaptedExport:
    """The raw export built from Online Retail, and where every source line went."""

    clients: pa.Table
    orders: pa.Table
    complaints: pa.Table
    lines_by_bucket: dict[str, int]
    orders_by_kind: dict[str, int]
    last_line_at: dt.datetime | None = None  # naive UK local time of the last invoice line

    @property
    def export_date(self) -> dt.date | None:
        """The day after the last invoice line: the export's exclusive end (ingest.export_date)."""
        return None if self.last_line_at is None else self.last_line_at.date() + dt.timedelta(days=1)

    def report(self) -> dict[str, Any]:
        export = self.export_date
        return {
            # what params.yaml's ingest section must say for this export
            "ingest": {"export_date": None if export is None else export.isoformat(), "timezone": TIMEZONE},
            "lines_read": sum(self.lines_by_bucket.values()),
            "lines_by_bucket": self.lines_by_bucket,
            "orders_by_kind": self.orders_by_kind,
            "clients": self.clients.num_rows,
            "non_product_codes": list(NON_PRODUCT_CODES),
        }


def adapt_online_retail(source: Path, threads: int = 2) -> AdaptedExport:
    """Aggregate Online Retail invoice lines into clients and orders (see the module docstring).

    ``source`` is the published Parquet file. Every line lands in exactly one bucket of
    ``lines_by_bucket`` (their sum is the number of lines read).
    """
    if not source.is_file():
        raise FileNotFoundError(
            f"Online Retail file not found: {source} (set --source or COMEBACK_SHARED_DATA)"
        )
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        names = {
            r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(source)]).fetchall()
        }
        needed = {
            "InvoiceNo",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
            "Country",
        }
        if needed - names:
            raise ValueError(f"{source}: missing column(s) {sorted(needed - names)}")
        codes = ", ".join("'" + c.replace("'", "''") + "'" for c in NON_PRODUCT_CODES)
        all_cols = "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country"
        con.execute(
            f"""
            CREATE TABLE lines AS
            SELECT *,
                CASE
                    WHEN InvoiceNo LIKE 'A%' THEN 'bad_debt_adjustment'
                    WHEN CustomerID IS NULL THEN 'no_customer_id'
                    WHEN row_number() OVER (PARTITION BY {all_cols} ORDER BY file_row_number) > 1
                        THEN 'duplicate_line'
                    WHEN StockCode IN ({codes}) THEN 'non_product'
                    ELSE 'product'
                END AS bucket
            FROM read_parquet(?, file_row_number = true)
            """,
            [str(source)],
        )
        buckets = dict(con.execute("SELECT bucket, count(*) FROM lines GROUP BY bucket").fetchall())
        orders = con.sql(
            """
            SELECT InvoiceNo,
                   CAST(any_value(CustomerID) AS VARCHAR) AS CustomerID,
                   min(InvoiceDate) AS InvoiceDate,
                   round(CASE WHEN InvoiceNo LIKE 'C%' THEN -1 ELSE 1 END * sum(Quantity * UnitPrice), 2)
                       AS Amount,
                   CASE WHEN InvoiceNo LIKE 'C%' THEN 'cancellation' ELSE 'invoice' END AS Kind,
                   CAST(count(DISTINCT StockCode) AS BIGINT) AS ItemCount,
                   CAST(abs(sum(Quantity)) AS DOUBLE) AS Quantity
            FROM lines WHERE bucket = 'product'
            GROUP BY InvoiceNo ORDER BY InvoiceDate, InvoiceNo
            """
        ).to_arrow_table()
        clients = con.sql(
            """
            WITH attributed AS (
                SELECT * FROM lines WHERE bucket IN ('duplicate_line', 'non_product', 'product')
            ), countries AS (
                SELECT CustomerID, Country, count(*) AS n FROM attributed GROUP BY ALL
            )
            SELECT CAST(a.CustomerID AS VARCHAR) AS CustomerID,
                   a.FirstInvoiceDate,
                   c.Country
            FROM (SELECT CustomerID, min(InvoiceDate) AS FirstInvoiceDate FROM attributed GROUP BY 1) a
            JOIN (SELECT CustomerID, first(Country ORDER BY n DESC, Country) AS Country
                  FROM countries GROUP BY 1) c USING (CustomerID)
            ORDER BY a.CustomerID
            """
        ).to_arrow_table()
        kinds = dict(con.execute("SELECT Kind, count(*) FROM orders GROUP BY 1").fetchall())
        last_line = con.execute("SELECT max(InvoiceDate) FROM lines").fetchone()
    finally:
        con.close()
    complaints = pa.schema(
        [
            ("complaint_id", pa.string()),
            ("client_id", pa.string()),
            ("created_at", pa.timestamp("us")),
            ("severity", pa.int64()),
            ("category", pa.string()),
            ("human_factor", pa.bool_()),
            ("resolved_at", pa.timestamp("us")),
        ]
    ).empty_table()
    return AdaptedExport(
        clients=clients,
        orders=orders,
        complaints=complaints,
        lines_by_bucket={b: int(buckets.get(b, 0)) for b in BUCKETS},
        orders_by_kind={str(k): int(v) for k, v in sorted(kinds.items())},
        last_line_at=last_line[0] if last_line else None,
    )


def command(
    source: Path | None = typer.Option(
        None,
        "--source",
        help="online_retail_I.parquet (default: $COMEBACK_SHARED_DATA or ../shared/data, online_retail/).",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the raw export (clients/orders/complaints.parquet)."
    ),
) -> None:
    """Turn UCI Online Retail into a raw export (ingest it with mappings/online_retail.yaml)."""
    from pipeline.ingest import write_atomic, write_parquet

    console = Console()
    path = source or shared_data_dir() / ONLINE_RETAIL_FILE
    try:
        export = adapt_online_retail(path)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]adapt-online-retail failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from e
    write_parquet(export.clients, out / "clients.parquet")
    write_parquet(export.orders, out / "orders.parquet")
    write_parquet(export.complaints, out / "complaints.parquet")
    text = json.dumps(export.report(), indent=2) + "\n"

    def _write_report(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    write_atomic(out / "adapter_report.json", _write_report)
    table = RichTable(title=f"Online Retail lines ({path.name})")
    table.add_column("bucket")
    table.add_column("lines", justify="right")
    for bucket, n in export.lines_by_bucket.items():
        table.add_row(bucket, f"{n:,}")
    table.add_row("total", f"{sum(export.lines_by_bucket.values()):,}")
    console.print(table)
    console.print(
        f"{export.clients.num_rows:,} clients, orders by kind {export.orders_by_kind}; written to {out}",
        highlight=False,
    )
