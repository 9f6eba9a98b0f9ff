"""Batch scoring outputs: scores.parquet, the CRM campaign lists, the summary and the manifest.

Files of OUT (each written atomically, the manifest last, so a run killed midway leaves every file
either the previous or the new complete version and the manifest names the hashes of one run):

* ``scores.parquet``: every client at the scoring cutoff with every output column;
* ``prevention.csv`` / ``winback.csv``: CRM-ready lists (UTF-8, ISO dates, one row per client,
  sorted by priority descending, reasons as reason_1..reason_3);
* ``summary.json`` / ``summary.png``: counts and expected value by tier, class and offer;
* ``manifest.json``: model versions, cutoff, row counts per list and per exclusion reason, sha256 of
  each file.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.io import write_atomic, write_bytes_atomic, write_text_atomic
from serving.campaigns import PREVENTION, WINBACK
from serving.core import Scorer

log = logging.getLogger(__name__)

SCORES_FILE = "scores.parquet"
LIST_FILES = {PREVENTION: "prevention.csv", WINBACK: "winback.csv"}
SUMMARY_FILE = "summary.json"
CHART_FILE = "summary.png"
MANIFEST_FILE = "manifest.json"

#: Columns of the CRM lists, in order ({model} is churn or winback).
LIST_COLUMNS = (
    "client_id",
    "cutoff_at",
    "campaign",
    "state",
    "probability",
    "value",
    "value_class",
    "priority",
    "offer",
    "offer_cost",
    "tier",
    "flags",
    "avoid_manager_id",
    "suggested_manager_id",
    "reason_1",
    "reason_2",
    "reason_3",
    "model_version",
)


def score_all_clients(scorer: Scorer) -> pd.DataFrame:
    """Score every client of the scorer's snapshot; reasons for listed clients (or all, per params)."""
    scored = scorer.score(reasons="all" if scorer.params.reasons_for_all else "listed")
    return scorer.to_frame(scored)


def campaign_list(scores: pd.DataFrame, campaign: str) -> pd.DataFrame:
    """The CRM list of one campaign: its clients sorted by priority (desc, ties by client id)."""
    part = scores.loc[scores["campaign"] == campaign]
    part = part.sort_values(["priority", "client_id"], ascending=[False, True], kind="stable")
    kind = "churn" if campaign == PREVENTION else "winback"
    out = pd.DataFrame(
        {
            "client_id": part["client_id"].to_numpy(),
            "cutoff_at": pd.to_datetime(part["cutoff_at"], utc=True).dt.strftime("%Y-%m-%d").to_numpy(),
            "campaign": campaign,
            "state": part["state"].to_numpy(),
            "probability": part[f"{kind}_probability"].round(4).to_numpy(),
            "value": part["value"].round(2).to_numpy(),
            "value_class": part["value_class"].to_numpy(),
            "priority": part["priority"].round(2).to_numpy(),
            "offer": part["offer"].to_numpy(),
            "offer_cost": part["offer_cost"].round(2).to_numpy(),
            "tier": part["tier"].to_numpy(),
            "flags": part["flags"].to_numpy(),
            "avoid_manager_id": part["avoid_manager_id"].to_numpy(),
            "suggested_manager_id": part["suggested_manager_id"].to_numpy(),
            "reason_1": part["reason_1"].to_numpy(),
            "reason_2": part["reason_2"].to_numpy(),
            "reason_3": part["reason_3"].to_numpy(),
            "model_version": part[f"{kind}_model_version"].to_numpy(),
        }
    )
    return out.loc[:, list(LIST_COLUMNS)]


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        frame.to_parquet(tmp, index=False)

    return write


def _csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    """UTF-8 CSV with a header, fields quoted only where needed (Arrow's writer: fast on 1M rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def write(tmp: Path) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="needed"))

    return write


def _group(part: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    grouped = part.groupby(column, sort=True)["priority"].agg(["size", "sum"])
    return {
        str(k): {"clients": int(row["size"]), "expected_value": round(float(row["sum"]), 2)}
        for k, row in grouped.iterrows()
    }


def summarize_campaigns(scores: pd.DataFrame) -> dict[str, Any]:
    """Counts and expected value (sum of priorities, company currency) by tier, class and offer."""
    summary: dict[str, Any] = {"clients_scored": len(scores)}
    for campaign in (PREVENTION, WINBACK):
        part = scores.loc[scores["campaign"] == campaign]
        entry: dict[str, Any] = {
            "clients": len(part),
            "expected_value": round(float(part["priority"].sum()), 2),
            "by_value_class": _group(part, "value_class"),
            "by_offer": _group(part, "offer"),
        }
        if campaign == WINBACK:
            entry["by_tier"] = _group(part, "tier")
        summary[campaign] = entry
    reasons = scores.loc[scores["excluded_reason"] != "", "excluded_reason"].value_counts().sort_index()
    summary["not_listed"] = {str(k): int(v) for k, v in reasons.items()}
    summary["states"] = {str(k): int(v) for k, v in scores["state"].value_counts().sort_index().items()}
    return summary


def render_summary_chart(summary: dict[str, Any]) -> bytes:
    """A PNG with clients and expected value per offer of both campaigns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, campaign in zip(axes, (PREVENTION, WINBACK), strict=True):
        offers = summary[campaign]["by_offer"]
        labels = list(offers)
        values = [offers[o]["expected_value"] for o in labels]
        counts = [offers[o]["clients"] for o in labels]
        y = np.arange(len(labels))
        ax.barh(y, values, color="#3b7dd8" if campaign == PREVENTION else "#d8843b")
        ax.set_yticks(y, [f"{o[:38]} (n={c})" for o, c in zip(labels, counts, strict=True)], fontsize=8)
        ax.set_xlabel("expected value (sum of priorities, company currency)")
        ax.set_title(f"{campaign}: {summary[campaign]['clients']} clients")
        ax.invert_yaxis()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(
    out: Path,
    scores: pd.DataFrame,
    scorer: Scorer,
    *,
    features_source: str,
    after_write: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Write every output file of a scoring run atomically, the manifest last; return the manifest.

    ``after_write(path)`` is called after each file is in place (progress reporting; tests use it to
    kill the process between files).
    """
    out.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}
    rows: dict[str, int] = {}

    def done(name: str, digest: str, n: int | None = None) -> None:
        hashes[name] = digest
        if n is not None:
            rows[name] = n
        if after_write is not None:
            after_write(out / name)

    done(
        SCORES_FILE,
        write_atomic(out / SCORES_FILE, _parquet_writer(scores)),
        len(scores),
    )
    for campaign, name in LIST_FILES.items():
        frame = campaign_list(scores, campaign)
        done(name, write_atomic(out / name, _csv_writer(frame)), len(frame))
    summary = summarize_campaigns(scores)
    done(SUMMARY_FILE, write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n"))
    done(CHART_FILE, write_bytes_atomic(out / CHART_FILE, render_summary_chart(summary)))

    excluded = scores.loc[scores["excluded_reason"] != ""]
    manifest: dict[str, Any] = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cutoff_at": scorer.snapshot.cutoff_at.isoformat(),
        "features": features_source,
        "models": {m.kind: {"name": m.name, "version": m.version} for m in (scorer.churn, scorer.winback)},
        "rows": rows,
        "lists": {c: rows[LIST_FILES[c]] for c in LIST_FILES},
        "not_listed_by_reason": {
            c: {
                str(k): int(v)
                for k, v in excluded.loc[excluded["model"] == kind, "excluded_reason"]
                .value_counts()
                .sort_index()
                .items()
            }
            for c, kind in ((PREVENTION, "churn"), (WINBACK, "winback"))
        },
        "sha256": hashes,
    }
    write_text_atomic(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    if after_write is not None:
        after_write(out / MANIFEST_FILE)
    log.info("wrote %s: %s", out, ", ".join(f"{k}={v}" for k, v in rows.items()))
    return manifest
