"""Tiny hand-made clean tables for the feature tests (contract columns and types)."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
            data[c.name] = pd.Series([ts(v) if isinstance(v, str) else v for v in values], dtype="datetime64[us, UTC]")
        elif c.kind == "float":
            data[c.name] = pd.Series(values, dtype="float64")
        elif c.kind == "int":
            data[c.name] = pd.Series(values, dtype="int64")
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
    return {"order_id": kw.pop("order_id", _next("o")), "client_id": cid, "ordered_at": at, "amount": amount,
            "margin": kw.pop("margin", 1.0), "status": status, **kw}


def complaint(cid: str, at: str, severity: int = 3, **kw: Any) -> dict[str, Any]:
    return {"complaint_id": kw.pop("complaint_id", _next("k")), "client_id": cid, "created_at": at,
            "severity": severity, "category": kw.pop("category", "product"),
            "human_factor": kw.pop("human_factor", False), **kw}


def contact(cid: str, at: str, campaign: str = "prevention", **kw: Any) -> dict[str, Any]:
    return {"contact_id": kw.pop("contact_id", _next("c")), "client_id": cid, "contacted_at": at,
            "campaign": campaign, **kw}


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
