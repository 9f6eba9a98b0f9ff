"""Prototype features for the real data that the feature stage does not compute (yet), point in time.

Built straight from the UCI Online Retail invoice lines for every cutoff of a feature table, so
``bench/realdata_validation.py --extra OUT`` can judge them on the validation cutoff before anyone
adds them to features/. Only lines stamped before the cutoff count; the product-line rules follow
the adapter (no CustomerID, ``A...`` bad-debt invoices and non-product stock codes left out,
exact duplicate lines counted once).

* ``x_distinct_products``: distinct stock codes bought (variety);
* ``x_products_per_order``: distinct stock codes per invoice;
* ``x_unit_price``: amount / units bought (wholesale buyers pay less per unit);
* ``x_xmas_share``: share of the amount on CHRISTMAS / XMAS / ADVENT items (seasonal buyers);
* ``x_repeat_product_share``: share of distinct products bought on two or more invoices (habit);
* ``x_cancel_lines_share``: share of the client's lines that are cancellations;
* ``x_is_uk``: the client's main country is the United Kingdom;
* ``x_early``: first invoice in December 2010, i.e. a client before the data starts or one of
  last year's Christmas buyers (null at cutoffs before 2011-01-01);
* ``x_dec2010_orders``: invoices in December 2010 (same, and null before 2011-01-01).

    .venv/bin/python bench/realdata_extra_features.py \\
        --features data/realdata/online_retail/features/features.parquet --out /tmp/extra.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# the repo root before bench/ (which holds a features.py that would shadow the package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.online_retail import NON_PRODUCT_CODES, ONLINE_RETAIL_FILE, shared_data_dir

DATA_START = pd.Timestamp("2011-01-01", tz="UTC")  # end of the first month of the data


def read_lines(source: Path) -> pd.DataFrame:
    """Attributable product and cancellation lines with a UTC timestamp ``t`` and line amount."""
    r = pd.read_parquet(source)
    r = r[r.CustomerID.notna() & ~r.InvoiceNo.str.startswith("A") & ~r.StockCode.isin(NON_PRODUCT_CODES)]
    r = r.drop_duplicates().copy()
    local = r.InvoiceDate.dt.tz_localize("Europe/London", ambiguous="NaT", nonexistent="shift_forward")
    r["t"] = local.dt.tz_convert("UTC")
    r["client_id"] = r.CustomerID.astype("int64").astype(str)
    r["cancel"] = r.InvoiceNo.str.startswith("C")
    r["amt"] = r.Quantity * r.UnitPrice
    r["xmas"] = r.Description.fillna("").str.upper().str.contains("CHRISTMAS|XMAS|ADVENT")
    return r


def build_extra_features(lines: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """One row per (client_id, cutoff_at) with the ``x_*`` columns of the module docstring."""
    country = lines.groupby("client_id").Country.agg(lambda s: s.value_counts().index[0])
    frames = []
    for cutoff in cutoffs:
        before = lines[lines.t < cutoff]
        bought = before[~before.cancel]
        g = bought.groupby("client_id")
        invoices = g.InvoiceNo.nunique()
        units = g.Quantity.sum()
        amount = g.amt.sum()
        xmas = bought[bought.xmas].groupby("client_id").amt.sum()
        per_product = bought.groupby(["client_id", "StockCode"]).InvoiceNo.nunique()
        f = pd.DataFrame(
            {
                "x_distinct_products": g.StockCode.nunique(),
                "x_products_per_order": g.StockCode.nunique() / invoices,
                "x_unit_price": (amount / units.where(units > 0)),
                "x_xmas_share": xmas.reindex(invoices.index, fill_value=0) / amount.where(amount > 0),
                "x_repeat_product_share": (per_product >= 2).groupby("client_id").mean(),
                "x_cancel_lines_share": before.groupby("client_id").cancel.mean(),
            }
        )
        f["x_is_uk"] = (country.reindex(f.index) == "United Kingdom").astype(float)
        december = bought[bought.t < DATA_START].groupby("client_id").InvoiceNo.nunique()
        if cutoff >= DATA_START:
            f["x_dec2010_orders"] = december.reindex(f.index, fill_value=0).astype(float)
            f["x_early"] = (f["x_dec2010_orders"] > 0).astype(float)
        else:
            f["x_dec2010_orders"] = np.nan
            f["x_early"] = np.nan
        f["cutoff_at"] = cutoff
        frames.append(f.rename_axis("client_id").reset_index())
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="feature table whose cutoffs to use")
    ap.add_argument("--source", type=Path, default=shared_data_dir() / ONLINE_RETAIL_FILE)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cut = pd.to_datetime(pd.read_parquet(args.features, columns=["cutoff_at"]).cutoff_at, utc=True)
    extra = build_extra_features(read_lines(args.source), sorted(cut.unique()))
    extra.to_parquet(args.out)
    print(f"{len(extra)} rows, columns {[c for c in extra.columns if c.startswith('x_')]} -> {args.out}")


if __name__ == "__main__":
    main()
