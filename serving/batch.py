"""Batch scoring outputs: scores.parquet, the CRM campaign lists, the summary and the manifest.

Files of OUT (each written atomically, the manifest last, so a run killed midway leaves every file
either the previous or the new complete version and the manifest names the hashes of one run):

* ``scores.parquet``: every client at the scoring cutoff with every output column;
* ``prevention.csv`` / ``winback.csv``: CRM-ready lists (UTF-8, ISO dates, one row per client,
  sorted by priority descending, reasons as reason_1..reason_3);
* ``summary.json`` / ``summary.png``: counts and expected value by tier, class and offer;
* ``manifest.json``: model versions, cutoff, row counts per list and per exclusion reason, sha256 of
  each file.

Both JSON files also say what the values were computed from (``value_basis``: clients per basis
and the ``score.default_margin_rate`` used) and carry ``warnings``: a list that came out empty, or
a population of which more than ``score.max_unlisted_share`` was left out, with the counts by
exclusion reason (:func:`list_warnings`).
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
from serving.config import ScoreParams
from serving.core import Scorer
from serving.value import VALUE_BASES

log = logging.getLogger(__name__)

SCORES_FILE = "scores.parquet"
LIST_FILES = {PREVENTION: "prevention.csv", WINBACK: "winback.csv"}
#: The population each list is drawn from (the model kind of its rows), in words for the warnings.
POPULATIONS = {
    PREVENTION: ("churn", "churn clients (new, active)"),
    WINBACK: ("winback", "win-back clients (lapsed)"),
}
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


def value_basis_of(scores: pd.DataFrame, scorer: Scorer) -> np.ndarray:
    """The plan's value basis ("margin" | "revenue" | "none") of each row of ``scores``, by client id."""
    snap = scorer.snapshot
    rows = pd.Index(snap.client_ids).get_indexer(scores["client_id"].astype(str).to_numpy(dtype=object))
    if (rows < 0).any():
        raise ValueError("scores hold client ids that are not in the scorer's feature snapshot")
    return np.asarray(snap.plan.value_basis[rows], dtype=object)


def summarize_value_basis(
    scores: pd.DataFrame, value_basis: np.ndarray, params: ScoreParams
) -> dict[str, Any]:
    """What the values were computed from: clients per basis, overall and on each list, and the rate.

    ``value_basis`` is aligned with the rows of ``scores``; "revenue" means amount_total x
    ``default_margin_rate`` (reported as ``default_margin_rate``; None: revenue is never used).
    """
    basis = np.asarray(value_basis, dtype=object)

    def counts(mask: np.ndarray) -> dict[str, int]:
        return {b: int(((basis == b) & mask).sum()) for b in VALUE_BASES}

    campaign = scores["campaign"].to_numpy(dtype=object)
    return {
        "default_margin_rate": params.default_margin_rate,
        "clients": counts(np.ones(len(scores), dtype=bool)),
        "listed": {c: counts(campaign == c) for c in (PREVENTION, WINBACK)},
    }


def list_warnings(scores: pd.DataFrame, params: ScoreParams) -> list[dict[str, Any]]:
    """Warnings for lists that came out empty or leave out most of their population.

    A list's population is the clients its model applies to (churn: new and active; win-back:
    lapsed). A warning is raised when the list is empty, or when more than
    ``params.max_unlisted_share`` of its population is not on it; it carries the counts and the
    not-listed clients by exclusion reason, and a one-line message for the console.
    """
    out: list[dict[str, Any]] = []
    for campaign, (kind, who) in POPULATIONS.items():
        population = (scores["model"] == kind).to_numpy()
        listed = int((scores["campaign"] == campaign).sum())
        n = int(population.sum())
        left_out = n - listed
        share = left_out / n if n else 1.0
        if listed > 0 and share <= params.max_unlisted_share:
            continue
        reasons = (
            scores.loc[population & (scores["campaign"] != campaign).to_numpy(), "excluded_reason"]
            .value_counts()
            .sort_values(ascending=False, kind="stable")
        )
        by_reason = {str(k): int(v) for k, v in reasons.items()}
        why = ", ".join(f"{k} {v:,}" for k, v in by_reason.items()) or "no such client at the cutoff"
        if listed == 0:
            message = f"the {campaign} list is empty: {left_out:,} of {n:,} {who} not listed ({why})"
        else:
            message = (
                f"the {campaign} list leaves out {share:.0%} of {n:,} {who}, above "
                f"score.max_unlisted_share {params.max_unlisted_share:.0%} ({why})"
            )
        out.append(
            {
                "list": campaign,
                "problem": "empty" if listed == 0 else "most_not_listed",
                "population": n,
                "listed": listed,
                "not_listed": left_out,
                "not_listed_share": round(share, 4),
                "not_listed_by_reason": by_reason,
                "message": message,
            }
        )
    return out


def summarize_campaigns(scores: pd.DataFrame, value_basis: np.ndarray, params: ScoreParams) -> dict[str, Any]:
    """Counts and expected value (sum of priorities, company currency) by tier, class and offer.

    Also who was left out and why (``not_listed``), what the values were computed from
    (``value_basis``, see :func:`summarize_value_basis`) and the ``warnings`` of
    :func:`list_warnings`. ``value_basis`` is aligned with the rows of ``scores``.
    """
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
    summary["value_basis"] = summarize_value_basis(scores, value_basis, params)
    summary["warnings"] = list_warnings(scores, params)
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

    The manifest repeats the summary's ``value_basis`` and ``warnings``.

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
    summary = summarize_campaigns(scores, value_basis_of(scores, scorer), scorer.params)
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
        "value_basis": summary["value_basis"],
        "warnings": summary["warnings"],
        "sha256": hashes,
    }
    write_text_atomic(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    if after_write is not None:
        after_write(out / MANIFEST_FILE)
    log.info("wrote %s: %s", out, ", ".join(f"{k}={v}" for k, v in rows.items()))
    return manifest
