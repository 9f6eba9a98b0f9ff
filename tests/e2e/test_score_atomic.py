"""`comeback score` end to end on a sample, and atomic outputs: a run killed midway (SIGKILL)
leaves every output file readable and whole (the previous version or the new one). An export
without margin is valued on revenue and still gets lists; one with no usable value writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.config import BoosterParams, SearchParams, TrainParams
from models.io import sha256_file
from models.train import fit_all, save_trained_model
from tests.api.sample import make_features, write_features

OUTPUTS = ("scores.parquet", "prevention.csv", "winback.csv", "summary.json", "summary.png", "manifest.json")
SECRET = "sup3r-s3cret-api-key"
COMEBACK = str(Path(sys.executable).parent / "comeback")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("score")
    features = make_features(900, seed=11)
    write_features(root / "features.parquet", features)
    booster = BoosterParams(num_boost_round=40, min_data_in_leaf=20, early_stopping_rounds=10, num_leaves=15)
    params = TrainParams(num_threads=1, churn=booster, winback=booster, search=SearchParams(trials=0))
    models = fit_all(features, params, horizon_days=100)
    for kind, tm in models.items():
        save_trained_model(tm, root / "models" / kind)
    return root


def run_score(
    workdir: Path, out: Path, *, features: str = "features.parquet", params: Path = ROOT / "params.yaml"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMEBACK_API_KEYS": SECRET, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [
            COMEBACK,
            "score",
            "--features",
            str(workdir / features),
            "--out",
            str(out),
            "--params",
            str(params),
            "--models-dir",
            str(workdir / "models"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=workdir,
    )


def write_in_process(workdir: Path, out: Path) -> dict[str, object]:
    """A complete scoring run in this process (the previous outputs the killed runs must keep)."""
    from models.scorer import load_model_from_dir
    from pipeline.params import load_params
    from serving.batch import score_all_clients, write_outputs
    from serving.core import Scorer, prepare_snapshot, read_feature_table

    params = load_params(ROOT / "params.yaml").score
    snapshot = prepare_snapshot(read_feature_table(workdir / "features.parquet"), params)
    models = workdir / "models"
    scorer = Scorer(
        snapshot, load_model_from_dir(models / "churn"), load_model_from_dir(models / "winback"), params
    )
    return write_outputs(out, score_all_clients(scorer), scorer, features_source="features.parquet")


def check_whole(out: Path) -> None:
    """Every output parses completely."""
    pd.read_parquet(out / "scores.parquet")
    pd.read_csv(out / "prevention.csv", encoding="utf-8")
    pd.read_csv(out / "winback.csv", encoding="utf-8")
    json.loads((out / "summary.json").read_text(encoding="utf-8"))
    json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_writes_crm_ready_files_and_a_true_manifest(workdir: Path) -> None:
    out = workdir / "out-full"
    done = run_score(workdir, out)
    assert done.returncode == 0, done.stderr
    assert "campaign summary" in done.stdout
    check_whole(out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name in OUTPUTS[:-1]:
        assert manifest["sha256"][name] == sha256_file(out / name)
    scores = pd.read_parquet(out / "scores.parquet")
    assert manifest["rows"]["scores.parquet"] == len(scores) == 900
    assert manifest["models"]["churn"]["version"] == "local"
    assert manifest["cutoff_at"].startswith("2025-01-01")
    with_order = int((scores["state"] != "no_order").sum())
    assert manifest["value_basis"]["clients"] == {
        "margin": with_order,
        "revenue": 0,
        "none": 900 - with_order,
    }
    assert manifest["warnings"] == []  # both lists hold most of their clients
    for campaign in ("prevention", "winback"):
        lst = pd.read_csv(out / f"{campaign}.csv", encoding="utf-8", keep_default_na=False)
        assert len(lst) == manifest["lists"][campaign] == (scores["campaign"] == campaign).sum() > 0
        assert lst["client_id"].is_unique
        assert lst["priority"].is_monotonic_decreasing
        assert (lst["priority"] >= 0).all()  # rounded to cents in the CSV
        assert (scores.loc[scores["campaign"] == campaign, "priority"] > 0).all()
        assert (lst["cutoff_at"] == "2025-01-01").all()
        assert (lst["reason_1"] != "").all()
    # The win-back list names the manager at the time of the loss as the one not to assign (the
    # same column name as the API's), and suggests somebody else.
    winback = pd.read_csv(out / "winback.csv", encoding="utf-8", keep_default_na=False)
    features = pd.read_parquet(workdir / "features.parquet")
    features = features.loc[features["cutoff_at"] == features["cutoff_at"].max()].set_index("client_id")
    at_loss = features.loc[winback["client_id"], "loss_manager_id"].fillna(
        features.loc[winback["client_id"], "manager_id"]
    )
    assert winback["avoid_manager_id"].tolist() == at_loss.tolist()
    assert (winback["suggested_manager_id"] != winback["avoid_manager_id"]).all()
    not_listed = manifest["not_listed_by_reason"]["winback"]
    assert not_listed.get("twice_lost", 0) == int(
        ((scores["model"] == "winback") & (scores["excluded_reason"] == "twice_lost")).sum()
    )
    for name in OUTPUTS:
        assert SECRET.encode() not in (out / name).read_bytes()


def _killed_run(workdir: Path, out: Path, inject: str) -> int:
    """Run the batch writer in a subprocess with ``inject`` code that SIGKILLs it midway."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        import pandas as pd
        from models.scorer import load_model_from_dir
        from pipeline.params import load_params
        from serving.batch import score_all_clients, write_outputs
        from serving.core import Scorer, prepare_snapshot, read_feature_table

        workdir, out = Path({str(workdir)!r}), Path({str(out)!r})
        params = load_params(Path({str(ROOT / "params.yaml")!r})).score
        params = params.model_copy(update={{"class_a_value_share": 0.5}})  # different content than before
        snapshot = prepare_snapshot(read_feature_table(workdir / "features.parquet"), params)
        scorer = Scorer(snapshot, load_model_from_dir(workdir / "models" / "churn"),
                        load_model_from_dir(workdir / "models" / "winback"), params)
        scores = score_all_clients(scorer)
        after_write = None
        {inject}
        write_outputs(out, scores, scorer, features_source="x", after_write=after_write)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, timeout=300, capture_output=True, text=True
    )
    return done.returncode


def test_kill_between_files_leaves_every_file_whole(workdir: Path) -> None:
    out = workdir / "out-kill-between"
    write_in_process(workdir, out)
    before = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    inject = (
        "after_write = lambda p: os.kill(os.getpid(), signal.SIGKILL) if p.name == 'prevention.csv' else None"
    )
    assert _killed_run(workdir, out, inject) == -9
    check_whole(out)
    # Written before the kill: the new complete files; not reached: the previous ones, untouched.
    assert sha256_file(out / "prevention.csv") != before["sha256"]["prevention.csv"]
    for name in ("winback.csv", "summary.json", "summary.png"):
        assert sha256_file(out / name) == before["sha256"][name]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == before


def test_kill_while_writing_a_file_leaves_the_previous_one(workdir: Path) -> None:
    out = workdir / "out-kill-during"
    write_in_process(workdir, out)
    before = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    inject = textwrap.dedent(
        """
        def half_then_die(self, path, *args, **kwargs):
            Path(path).write_bytes(b"PAR1 half a parquet file")
            os.kill(os.getpid(), signal.SIGKILL)
        pd.DataFrame.to_parquet = half_then_die
        """
    ).replace("\n", "\n        ")
    assert _killed_run(workdir, out, inject) == -9
    check_whole(out)
    for name in OUTPUTS[:-1]:
        assert sha256_file(out / name) == before["sha256"][name]


MARGIN_COLUMNS = ("margin_30d", "margin_90d", "margin_180d", "margin_365d", "margin_total")


def without_margin(workdir: Path) -> str:
    """The sample feature table as an export without order margins makes it (margins all null)."""
    name = "features_no_margin.parquet"
    if not (workdir / name).exists():
        table = pd.read_parquet(workdir / "features.parquet")
        table[list(MARGIN_COLUMNS)] = np.nan
        table.to_parquet(workdir / name, index=False)
    return name


def params_with(workdir: Path, name: str, **score: object) -> Path:
    """params.yaml with ``score`` keys overridden, written to ``workdir / name``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["score"].update(score)
    path = workdir / name
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def test_an_export_without_margin_gets_lists_valued_on_revenue(workdir: Path) -> None:
    out = workdir / "out-no-margin"
    # A low max_unlisted_share: the exclusions of the sample (do_not_contact, bad_payer, ...) leave
    # out more than 1% of both populations, so both lists warn while neither is empty.
    params = params_with(workdir, "params-warn.yaml", max_unlisted_share=0.01)
    done = run_score(workdir, out, features=without_margin(workdir), params=params)
    assert done.returncode == 0, done.stderr
    check_whole(out)
    scores = pd.read_parquet(out / "scores.parquet")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    with_order = int((scores["state"] != "no_order").sum())
    basis = summary["value_basis"]
    assert basis == manifest["value_basis"]
    assert basis["default_margin_rate"] == 0.3
    assert basis["clients"] == {"margin": 0, "revenue": with_order, "none": len(scores) - with_order}
    for campaign in ("prevention", "winback"):
        listed = manifest["lists"][campaign]
        assert listed > 0
        assert basis["listed"][campaign] == {"margin": 0, "revenue": listed, "none": 0}
    assert f"{with_order:,} on revenue x score.default_margin_rate 0.3" in done.stdout
    # Value is revenue x 0.3 over the active span x the retention multiplier (1/1.1 + 0.6/1.21).
    table = pd.read_parquet(workdir / "features.parquet")
    table = table.loc[table["cutoff_at"] == table["cutoff_at"].max()].set_index("client_id")
    one = scores.loc[scores["campaign"] == "prevention"].iloc[0]
    row = table.loc[one["client_id"]]
    span = max(row["days_since_first_order"] - row["recency_days"], 180.0) / 365.25
    assert one["value"] == pytest.approx(row["amount_total"] * 0.3 / span * (1 / 1.1 + 0.6 / 1.21))
    # The warnings: on the console, in summary.json and in manifest.json, counts by reason.
    assert summary["warnings"] == manifest["warnings"]
    assert [w["list"] for w in summary["warnings"]] == ["prevention", "winback"]
    for warning in summary["warnings"]:
        kind = "churn" if warning["list"] == "prevention" else "winback"
        left_out = scores.loc[(scores["model"] == kind) & (scores["campaign"] == "none")]
        assert warning["problem"] == "most_not_listed"
        assert warning["not_listed"] == len(left_out) > 0
        assert warning["not_listed_by_reason"] == left_out["excluded_reason"].value_counts().to_dict()
        assert f"WARNING: {warning['message']}" in done.stdout
    assert "unprofitable" not in scores["excluded_reason"].to_numpy()  # no margin: never unprofitable


def test_no_usable_value_exits_1_and_leaves_the_previous_outputs(workdir: Path) -> None:
    out = workdir / "out-no-value"
    write_in_process(workdir, out)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    params = params_with(workdir, "params-no-rate.yaml", default_margin_rate=None)
    done = run_score(workdir, out, features=without_margin(workdir), params=params)
    assert done.returncode == 1
    message = [line for line in done.stdout.splitlines() if line.startswith("score:")]
    assert len(message) == 1, done.stdout
    assert "'margin_total' is null" in message[0] and "score.default_margin_rate is null" in message[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
