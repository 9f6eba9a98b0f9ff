"""Tiny hand-made clean tables for the feature tests (contract columns and types)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_feature_table
from features.config import FeatureParams
from features.contract import RAW_TABLES
from features.tables import IBIS_TYPES, connect, tables_from_frames

EXPORT = dt.date(2025, 1, 1)
_PANDAS = {"string": "object", "int": "int64", "float": "float64", "bool": "bool"}


def ts(text: str | None) -> pd.Timestamp | None:
    """A UTC timestamp from 'YYYY-MM-DD[ HH:MM:SS]' (None stays None)."""
    return None if text is None else pd.Timestamp(text, tz="UTC")


def frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame with exactly the contract columns of ``table`` (missing optional values -> null)."""
    spec = RAW_TABLES[table]
    data: dict[str, Any] = {}
    for c in spec.columns:
        values = [r.get(c.name, c.default) for r in rows]
        if c.kind == "timestamp":
            data[c.name] = pd.Series(
                [ts(v) if isinstance(v, str) else v for v in values], dtype="datetime64[us, UTC]"
            )
        elif c.kind == "float":
            data[c.name] = pd.Series(values, dtype="float64")
        elif c.kind == "int":
            data[c.name] = pd.Series(values, dtype="Int64" if c.nullable else "int64")
        elif c.kind == "bool":
            data[c.name] = pd.Series(values, dtype="bool")
        else:
            data[c.name] = pd.Series(values, dtype="object")
    assert IBIS_TYPES.keys() >= {c.kind for c in spec.columns}
    return pd.DataFrame(data)


def client(cid: str, created: str = "2020-01-01", **kw: Any) -> dict[str, Any]:
    return {"client_id": cid, "created_at": created, "manager_id": kw.get("manager_id", "m0"), **kw}


_ids = {"n": 0}


def _next(prefix: str) -> str:
    _ids["n"] += 1
    return f"{prefix}{_ids['n']}"


def order(cid: str, at: str, amount: float = 10.0, status: str = "completed", **kw: Any) -> dict[str, Any]:
    return {
        "order_id": kw.pop("order_id", _next("o")),
        "client_id": cid,
        "ordered_at": at,
        "amount": amount,
        "margin": kw.pop("margin", 1.0),
        "status": status,
        **kw,
    }


def complaint(cid: str, at: str, severity: int = 3, **kw: Any) -> dict[str, Any]:
    return {
        "complaint_id": kw.pop("complaint_id", _next("k")),
        "client_id": cid,
        "created_at": at,
        "severity": severity,
        "category": kw.pop("category", "product"),
        "human_factor": kw.pop("human_factor", False),
        **kw,
    }


def contact(cid: str, at: str, campaign: str = "prevention", **kw: Any) -> dict[str, Any]:
    return {
        "contact_id": kw.pop("contact_id", _next("c")),
        "client_id": cid,
        "contacted_at": at,
        "campaign": campaign,
        **kw,
    }


def build(
    clients: list[dict[str, Any]],
    orders: list[dict[str, Any]] = (),  # type: ignore[assignment]
    complaints: list[dict[str, Any]] = (),  # type: ignore[assignment]
    contacts: list[dict[str, Any]] | None = None,
    cutoffs: list[str] = ("2024-01-01",),  # type: ignore[assignment]
    export: dt.date = EXPORT,
    **params: Any,
) -> pd.DataFrame:
    """Build the feature table on DuckDB for the given rows; returns it as pandas."""
    frames = {
        "clients": frame("clients", list(clients)),
        "orders": frame("orders", list(orders)),
        "complaints": frame("complaints", list(complaints)),
    }
    if contacts is not None:
        frames["contacts"] = frame("contacts", contacts)
    days = [dt.date.fromisoformat(c) for c in cutoffs]
    fp = FeatureParams(cutoffs=days, **params)
    con = connect("duckdb", threads=1, memory_limit="512MB")
    expr = build_feature_table(con, tables_from_frames(frames), days, fp, export_date=export)
    return con.to_pandas(expr)


def row(df: pd.DataFrame, cid: str, cutoff: str | None = None) -> pd.Series:
    """The one row of client ``cid`` (at ``cutoff`` when several cutoffs were built)."""
    sel = df[df.client_id == cid]
    if cutoff is not None:
        sel = sel[sel.cutoff_at == ts(cutoff)]
    assert len(sel) == 1, f"expected one row for {cid} at {cutoff}, got {len(sel)}"
    return sel.iloc[0]


def random_frames(
    n_clients: int, seed: int, *, start: str = "2022-01-01", end: str = "2025-01-01"
) -> dict[str, pd.DataFrame]:
    """A random clean CRM sample (whole-second timestamps) with every feature path exercised."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t0, t1 = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    span = int((t1 - t0).total_seconds())

    def stamps(n: int, lo: np.ndarray | int = 0) -> pd.Series:
        secs = np.minimum(lo + rng.integers(0, span, n) // rng.integers(1, 4, n), span - 1)
        return pd.Series(t0 + pd.to_timedelta(secs, unit="s")).astype("datetime64[us, UTC]")

    ids = np.array([f"c{i:05d}" for i in range(n_clients)], dtype=object)
    clients = pd.DataFrame(
        {
            "client_id": ids,
            "created_at": stamps(n_clients) - pd.Timedelta(days=200),
            "manager_id": rng.choice(np.array(["m1", "m2", None], dtype=object), n_clients),
            "segment": rng.choice(np.array(["retail", "wholesale", None], dtype=object), n_clients),
            "do_not_contact": rng.random(n_clients) < 0.05,
        }
    )
    n_o = n_clients * 8
    o_at = stamps(n_o)
    due = o_at + pd.to_timedelta(rng.integers(0, 40, n_o), unit="D")
    paid = due + pd.to_timedelta(rng.integers(-20 * 86400, 30 * 86400, n_o), unit="s")
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(n_o)],
            "client_id": rng.choice(ids, n_o),
            "ordered_at": o_at,
            "amount": rng.gamma(2.0, 50.0, n_o) + 1,
            "margin": np.where(rng.random(n_o) < 0.1, np.nan, rng.normal(10, 5, n_o)),
            "status": rng.choice(np.array(["completed"] * 8 + ["cancelled", "returned"], dtype=object), n_o),
            "due_at": due.where(rng.random(n_o) < 0.7),
            "paid_at": paid.where(rng.random(n_o) < 0.8),
        }
    )
    # optional basket columns from their own stream, so the draws above stay as they were
    basket = np.random.default_rng(seed + 1_000_003)
    orders["item_count"] = pd.Series(basket.integers(0, 30, n_o), dtype="Int64").where(
        basket.random(n_o) < 0.9
    )
    orders["quantity"] = pd.Series(basket.gamma(2.0, 20.0, n_o)).where(basket.random(n_o) < 0.9)
    n_k = n_clients
    k_at = stamps(n_k)
    complaints = pd.DataFrame(
        {
            "complaint_id": [f"k{i}" for i in range(n_k)],
            "client_id": rng.choice(ids, n_k),
            "created_at": k_at,
            "severity": rng.integers(1, 6, n_k),
            "category": rng.choice(np.array(["product", "service", "staff"], dtype=object), n_k),
            "human_factor": rng.random(n_k) < 0.3,
            "resolved_at": (k_at + pd.to_timedelta(rng.integers(0, 60 * 86400, n_k), unit="s")).where(
                rng.random(n_k) < 0.7
            ),
        }
    )
    n_c = n_clients // 2
    contacts = pd.DataFrame(
        {
            "contact_id": [f"t{i}" for i in range(n_c)],
            "client_id": rng.choice(ids, n_c),
            "contacted_at": stamps(n_c),
            "campaign": rng.choice(np.array(["prevention", "winback"], dtype=object), n_c),
            "offer": None,
            "manager_id": rng.choice(np.array(["m1", "m3", None], dtype=object), n_c),
        }
    )
    return {"clients": clients, "orders": orders, "complaints": complaints, "contacts": contacts}


def write_clean(frames: dict[str, pd.DataFrame], folder: Any) -> None:
    """Write frames as clean Parquet with the contract's Arrow types (timestamp[us, UTC])."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, df in frames.items():
        spec = RAW_TABLES[name]
        arrow = {
            "string": pa.string(),
            "int": pa.int64(),
            "float": pa.float64(),
            "bool": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC"),
        }
        schema = pa.schema([(c.name, arrow[c.kind]) for c in spec.columns])
        pq.write_table(
            pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False),
            folder / f"{name}.parquet",
        )


def mismatched_columns(a: pd.DataFrame, b: pd.DataFrame, tol: float = 1e-9) -> list[str]:
    """Columns of two feature tables (same rows, same order) that differ: numbers beyond ``tol``
    (relative and absolute, NaN equal to NaN), anything else where the values are not equal."""
    out = []
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            xs, ys = x.astype("float64").to_numpy(), y.astype("float64").to_numpy()
            ok = np.allclose(xs, ys, rtol=tol, atol=tol, equal_nan=True)
        else:
            ok = bool(((x == y) | (x.isna() & y.isna())).all())
        if not ok:
            out.append(col)
    return out
