"""`comeback generate` on real files: determinism, the raw-table contract, planted effects, the oracle.

Effects are measured from the written tables (what an analyst of the export would see); the latent
truth is used only where the data cannot show an effect on its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from features.contract import RAW_TABLES, check_columns
from pipeline import generate
from pipeline import synthetic as syn
from pipeline.generate import generate_export, load_sections
from pipeline.synthetic import GenerateParams, TruthSpec

REPO = Path(__file__).resolve().parents[2]
EXPORT = pd.Timestamp("2025-01-01", tz="UTC")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TS_COLUMNS = {
    "clients": ["created_at"],
    "orders": ["ordered_at", "due_at", "paid_at"],
    "complaints": ["created_at", "resolved_at"],
    "contacts": ["contacted_at"],
}
DATA_FILES = ("clients", "orders", "complaints", "contacts", "truth", "truth_clients")

# A short history keeps the determinism tests quick; the effect tests use the full default one.
SHORT = {"start": dt.date(2023, 6, 1), "export_date": dt.date(2024, 6, 1)}
SHORT_TRUTH = TruthSpec(cutoffs=(dt.date(2023, 12, 1), dt.date(2024, 2, 1)), horizon_days=100, active_days=90)


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.stem in DATA_FILES
    }


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A raw table as the ingest stage would type it (UTC timestamps, booleans, empty = null)."""
    path = folder / f"{name}.csv"
    if not path.exists():
        df = pd.read_parquet(folder / f"{name}.parquet")
    else:
        df = pd.read_csv(path, dtype={"offer": "string", "manager_id": "string", "segment": "string"})
    for col in TS_COLUMNS[name]:
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default export: 20k clients, 3 years, truth at the cutoffs of the repo's params.yaml."""
    gen, truth = load_sections(REPO / "params.yaml")
    out = tmp_path_factory.mktemp("full")
    generate_export(
        gen.model_copy(update={"clients": 20_000, "seed": 7, "format": "csv"}), truth, out, workers=1
    )
    return out


@pytest.fixture(scope="module")
def tables(full: Path) -> dict[str, pd.DataFrame]:
    return {name: read_table(full, name) for name in TS_COLUMNS}


# -- determinism and formats -------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    gen = GenerateParams(clients=3000, seed=5, **SHORT)
    for name, g in (("a", gen), ("b", gen), ("c", gen.model_copy(update={"seed": 6}))):
        generate_export(g, SHORT_TRUTH, tmp_path / name, workers=1)
    a, b, c = (_digests(tmp_path / n) for n in "abc")
    assert set(a) == {f"{t}.csv" for t in TS_COLUMNS} | {"truth.parquet", "truth_clients.parquet"}
    assert a == b
    assert all(a[k] != c[k] for k in a)


@pytest.mark.slow
def test_output_does_not_depend_on_processes_or_blocks_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(syn, "BLOCK_CLIENTS", 1000)  # 3 blocks; forked workers see the same value
    gen = GenerateParams(clients=2500, seed=9, **SHORT)
    generate_export(gen, SHORT_TRUTH, tmp_path / "one", workers=1)
    generate_export(gen, SHORT_TRUTH, tmp_path / "two", workers=2)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    clients = pd.read_csv(tmp_path / "one" / "clients.csv")
    assert clients["client_id"].tolist() == [f"C{i:07d}" for i in range(1, 2501)]
    orders = pd.read_csv(tmp_path / "one" / "orders.csv")
    assert orders["order_id"].is_unique and orders["order_id"].iloc[-1] == f"O{len(orders):09d}"


@pytest.mark.slow
def test_parquet_holds_the_same_rows_as_csv(tmp_path: Path) -> None:
    gen = GenerateParams(clients=1500, seed=4, **SHORT)
    generate_export(gen, SHORT_TRUTH, tmp_path / "csv", workers=1)
    generate_export(gen.model_copy(update={"format": "parquet"}), SHORT_TRUTH, tmp_path / "pq", workers=1)
    for name in TS_COLUMNS:
        a = read_table(tmp_path / "csv", name)
        b = read_table(tmp_path / "pq", name)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    schema = pq.read_schema(tmp_path / "pq" / "orders.parquet")
    assert str(schema.field("ordered_at").type) == "timestamp[us, tz=UTC]"


def test_cli_help_says_what_it_reads_and_writes() -> None:
    app = typer.Typer()
    app.command()(generate.command)
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for word in ("--clients", "--seed", "--out", "--format", "params.yaml", "truth.parquet", "orders"):
        assert word in result.output


@pytest.mark.slow
def test_cli_writes_the_export_and_manifest(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "generate: {clients: 50, seed: 1, start: 2023-06-01, export_date: 2024-06-01, format: parquet}\n"
        "features: {cutoffs: [2024-01-01], horizon_days: 100, lapse_tiers_days: [90, 180, 360]}\n",
        encoding="utf-8",
    )
    app = typer.Typer()
    app.command()(generate.command)
    out = tmp_path / "raw"
    result = CliRunner().invoke(app, ["--clients", "80", "--out", str(out), "--params", str(params)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "generate_manifest.json").read_text(encoding="utf-8"))
    assert manifest["params"]["clients"] == 80 and manifest["seed"] == 1
    assert manifest["rows"]["clients"] == 80 and manifest["rows"]["orders"] > 80
    assert manifest["truth"]["cutoffs"] == ["2024-01-01"]
    assert {p.name for p in out.iterdir()} == {
        *(f"{t}.parquet" for t in (*TS_COLUMNS, "truth", "truth_clients")),
        "generate_manifest.json",
    }


# -- the raw-table contract ----------------------------------------------------------------------------


@pytest.mark.slow
def test_csv_text_follows_the_export_format(full: Path) -> None:
    for name, cols in TS_COLUMNS.items():
        head = pd.read_csv(full / f"{name}.csv", nrows=2000, dtype=str, keep_default_na=False)
        contract = [c.name for c in RAW_TABLES[name].columns]
        # every required column, in contract order; optional ones (basket sizes) may be left out
        assert list(head.columns) == [c for c in contract if c in head.columns], name
        assert {c.name for c in RAW_TABLES[name].columns if c.required} <= set(head.columns), name
        for col in cols:
            values = head[col][head[col] != ""]
            assert values.str.match(TIMESTAMP_RE).all(), (name, col, values.head(3).tolist())
        for col in (c.name for c in RAW_TABLES[name].columns if c.kind == "bool"):
            assert set(head[col]) <= {"true", "false"}
    # empty cell = null: a cancelled order has no due or paid date, a prevention contact no offer
    assert '"cancelled",,\n' in (full / "orders.csv").read_text(encoding="utf-8")
    assert '"prevention",,"M' in (full / "contacts.csv").read_text(encoding="utf-8")


@pytest.mark.slow
def test_tables_follow_the_contract(tables: dict[str, pd.DataFrame]) -> None:
    for name, df in tables.items():
        check_columns(RAW_TABLES[name], df.columns, source=f"{name}.csv")
        key = RAW_TABLES[name].key
        assert key is not None and df[key].notna().all() and df[key].is_unique, name
        for col in TS_COLUMNS[name]:
            if col != "due_at":  # a due date is a promise, legitimately after the export
                assert (df[col].dropna() < EXPORT).all(), (name, col)
        if name != "clients":
            assert df["client_id"].isin(tables["clients"]["client_id"]).all(), name
    o, c, k = tables["orders"], tables["complaints"], tables["contacts"]
    assert (o["amount"] > 0).all()
    assert set(o["status"]) == {"completed", "cancelled", "returned"}
    assert (
        0.02 < (o["status"] == "cancelled").mean() < 0.04 and 0.02 < (o["status"] == "returned").mean() < 0.04
    )
    assert c["severity"].between(1, 5).all()
    assert set(c["category"]) == set(syn.COMPLAINT_CATEGORIES)
    resolved = c["resolved_at"].notna()
    assert (c.loc[resolved, "resolved_at"] >= c.loc[resolved, "created_at"]).all()
    assert 0.55 < resolved.mean() < 0.85
    assert set(k["campaign"]) == {"prevention", "winback"}
    assert set(k.loc[k["campaign"] == "winback", "offer"]) == set(syn.WINBACK_OFFERS)
    own = k.merge(tables["clients"][["client_id", "manager_id"]], on="client_id", suffixes=("", "_client"))
    winback = own["campaign"] == "winback"
    assert (own.loc[winback, "manager_id"] != own.loc[winback, "manager_id_client"]).all()
    dnc = tables["clients"].loc[tables["clients"]["do_not_contact"], "client_id"]
    assert not k.loc[k["campaign"] == "winback", "client_id"].isin(dnc).any()
    first = o[o["status"] == "completed"].groupby("client_id")["ordered_at"].min()
    created = tables["clients"].set_index("client_id")["created_at"]
    assert set(first.index) == set(created.index)  # every client has its first order
    assert (first >= created[first.index]).all() and (
        (first - created[first.index]) < pd.Timedelta(days=1)
    ).all()


# -- planted effects, from the data ------------------------------------------------------------------------


@pytest.mark.slow
def test_repeat_purchase_orders_resolved_none_unresolved(tables: dict[str, pd.DataFrame]) -> None:
    r = syn.repeat_purchase_rates(tables["orders"], tables["complaints"], EXPORT)
    assert min(r["n_resolved"], r["n_unresolved"]) > 500, r
    assert r["resolved"] > r["none"] + 0.03, r
    assert r["none"] > r["unresolved"] + 0.2, r
    assert r["resolved"] > 0.93 and 0.85 < r["none"] < 0.95 and 0.4 < r["unresolved"] < 0.7, r


@pytest.mark.slow
def test_return_rate_falls_with_time_since_loss(tables: dict[str, pd.DataFrame]) -> None:
    losses = syn.loss_episodes(tables["orders"], EXPORT, lapse_days=90)
    rates = [r["rate"] for r in syn.return_rates_by_time(losses)]
    assert all(a > b for a, b in itertools.pairwise(rates)), rates
    assert rates[0] > 4 * rates[-1], rates


@pytest.mark.slow
def test_returned_then_lost_again_rarely_return(full: Path, tables: dict[str, pd.DataFrame]) -> None:
    losses = syn.loss_episodes(tables["orders"], EXPORT, lapse_days=180)
    first = syn.return_within(losses[losses["loss_number"] == 1])
    again = losses[(losses["loss_number"] >= 2) & (losses["observed_days"] >= 365)]
    assert len(again) > 100
    assert syn.return_within(again) < 0.5 * first, (syn.return_within(again), first)
    # in the latent history (the data cannot separate a slow buyer's long gap from a loss)
    tc = pd.read_parquet(full / "truth_clients.parquet")
    twice = tc[tc["times_lost"] >= 2]
    assert len(twice) > 500
    assert (twice["times_returned"] >= 2).mean() < 0.05
    once = tc[tc["times_lost"] >= 1]
    assert 0.2 < (once["times_returned"] >= 1).mean() < 0.5


@pytest.mark.slow
def test_onboarding_dropout_unprofitable_clients_and_bad_payers(
    full: Path, tables: dict[str, pd.DataFrame]
) -> None:
    tc = pd.read_parquet(full / "truth_clients.parquet")
    seen = tc[tc["created_at"] <= EXPORT - pd.Timedelta(days=100)]
    assert abs(seen["onboarding_dropped"].mean() - 0.40) < 0.03
    o = tables["orders"]
    done = o[o["status"] == "completed"]
    margin = done.groupby("client_id")["margin"].sum()
    assert 0.01 < (margin < 0).mean() < 0.08
    late_days = (done["paid_at"] - done["due_at"]).dt.total_seconds() / 86400
    overdue_unpaid = done["paid_at"].isna() & (done["due_at"] < EXPORT - pd.Timedelta(days=130))
    bad = done.assign(bad=(late_days >= 20) | overdue_unpaid).groupby("client_id")["bad"].mean() > 0.5
    assert 0.04 < bad.mean() < 0.12
    assert 0.06 < tc["bad_payer"].mean() < 0.10
    orders_per_client = len(o) / len(tables["clients"])
    assert 7 < orders_per_client < 13


# -- the oracle against realised labels ------------------------------------------------------------------


@pytest.mark.slow
def test_truth_rows_and_oracle_agree_with_realised_labels(
    full: Path, tables: dict[str, pd.DataFrame]
) -> None:
    gen, spec = load_sections(REPO / "params.yaml")
    truth = pd.read_parquet(full / "truth.parquet")
    assert set(truth["state"]) == {"active", "lapsed"}
    active = truth["state"] == "active"
    assert truth.loc[active, "churn_probability"].notna().all()
    assert truth.loc[active, "winback_probability"].isna().all()
    assert truth.loc[~active, "winback_probability"].notna().all()
    assert (np.ceil(truth["recency_days"]) < spec.active_days).eq(active).all()  # whole days, as the tiers
    horizon = pd.Timedelta(days=spec.horizon_days)
    assert truth["label_complete"].eq(truth["cutoff_at"] + horizon <= EXPORT).all()
    cutoffs = sorted(truth["cutoff_at"].unique())
    assert [c.date() for c in cutoffs] == [c for c in spec.cutoffs if c < gen.export_date]
    created = tables["clients"].set_index("client_id")["created_at"]
    for d, g in truth.groupby("cutoff_at"):
        assert g["client_id"].is_unique and len(g) == int((created < d).sum())

    done = tables["orders"][tables["orders"]["status"] == "completed"]
    aucs: dict[tuple[str, str], float] = {}
    for oracle, suffix in (("clairvoyant", ""), ("observable", "_observable")):
        rows = []
        for d, g in truth[truth["label_complete"]].groupby("cutoff_at"):
            window = done[(done["ordered_at"] >= d) & (done["ordered_at"] < d + horizon)]
            p = g[f"churn_probability{suffix}"].fillna(1 - g[f"winback_probability{suffix}"])
            rows.append(
                pd.DataFrame(
                    {
                        "p": p.to_numpy(),
                        "y": ~g["client_id"].isin(window["client_id"]).to_numpy(),
                        "state": g["state"].to_numpy(),
                        "recency": g["recency_days"].to_numpy(),
                    }
                )
            )
            z = (rows[-1]["y"].sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
            assert abs(z) < 4.5, (oracle, d, z)
        a = pd.concat(rows, ignore_index=True)
        a["bin"] = pd.qcut(a["p"], 10, labels=False, duplicates="drop")
        cal = a.groupby("bin").agg(p=("p", "mean"), y=("y", "mean"), n=("y", "size"))
        assert (abs(cal["p"] - cal["y"]) < 0.02).all(), (oracle, cal)
        for state, g in a.groupby("state"):
            aucs[oracle, str(state)] = _auc(g["y"].to_numpy(), g["p"].to_numpy())
            aucs["recency", str(state)] = _auc(g["y"].to_numpy(), g["recency"].to_numpy())
    for state in ("active", "lapsed"):
        # history alone < the fair oracle (hidden state integrated out) < the clairvoyant one
        assert aucs["recency", state] < aucs["observable", state] < aucs["clairvoyant", state], aucs
        assert aucs["clairvoyant", state] > 0.8, aucs


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """Rank AUC (Mann-Whitney), ties averaged."""
    ranks = pd.Series(score).rank().to_numpy()
    pos = y.astype(bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
