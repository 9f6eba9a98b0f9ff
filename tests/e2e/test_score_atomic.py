"""`comeback score` end to end on a sample, and atomic outputs: a run killed midway (SIGKILL)
leaves every output file readable and whole (the previous version or the new one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

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


def run_score(workdir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMEBACK_API_KEYS": SECRET, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            COMEBACK,
            "score",
            "--features",
            str(workdir / "features.parquet"),
            "--out",
            str(out),
            "--params",
            str(ROOT / "params.yaml"),
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
