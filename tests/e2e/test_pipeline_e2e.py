"""Every stage on a small seeded sample in a temporary folder, MLflow on a temporary sqlite store.

generate -> ingest -> features -> train -> evaluate -> promote, each as the real `comeback`
command in a subprocess, then the champion is loaded by alias and the DVC outputs are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 3000


def _comeback(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_cli(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"comeback {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _cli() -> str:
    exe = Path(sys.executable).parent / "comeback"
    return str(exe) if exe.exists() else shutil.which("comeback") or "comeback"


@pytest.mark.slow
def test_every_stage_on_a_small_sample(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["generate"]["clients"] = CLIENTS
    params["train"]["num_threads"] = 1
    params["train"]["search"] = {"trials": 2, "seconds": 15}  # the search runs, within a small budget
    params["evaluate"]["bootstrap"] = 50
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {
        **os.environ,
        "COMEBACK_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    features = "data/features/features.parquet"
    _comeback(["generate", "--clients", str(CLIENTS), "--seed", "7", "--out", "data/raw"], tmp_path, env)
    _comeback(["ingest", "--raw", "data/raw", "--out", "data/clean"], tmp_path, env)
    _comeback(["features", "--clean", "data/clean", "--out", "data/features"], tmp_path, env)
    _comeback(["train", "--features", features, "--out", "data/models"], tmp_path, env)
    _comeback(
        [
            "evaluate",
            "--features",
            features,
            "--models",
            "data/models",
            "--out",
            "data/reports",
            "--truth",
            "data/raw/truth.parquet",
        ],
        tmp_path,
        env,
    )
    promoted = _comeback(["promote", "--features", features], tmp_path, env)
    assert promoted.stdout.count("promoted") == 2, promoted.stdout

    for kind in ("churn", "winback"):
        folder = tmp_path / "data/models" / kind
        for name in ("booster.txt", "calibration.json", "feature_names.json", "split.json", "selection.json"):
            assert (folder / name).is_file(), f"{kind}/{name}"
        selection = json.loads((folder / "selection.json").read_text(encoding="utf-8"))
        # the search ran within its budget (2 trials, 15 s), on every fold
        assert 1 <= selection["search"]["trials"] <= 2 and selection["guard"]["passed"]
        assert len(selection["table"]["lightgbm"]["folds"]) == len(selection["folds"]) >= 1
        assert (
            (tmp_path / f"data/reports/model_card_{kind}.md")
            .read_text(encoding="utf-8")
            .startswith("# Model card")
        )
        assert (tmp_path / f"data/reports/plots/{kind}/roc.png").stat().st_size > 1000

    metrics = json.loads((tmp_path / "data/reports/metrics.json").read_text(encoding="utf-8"))
    for kind in ("churn", "winback"):
        assert set(metrics[kind]) == {
            "model",
            "recency",
            "logistic_rfm",
            "bgnbd",
            "oracle",
            "oracle_clairvoyant",
        }
        for forecast in metrics[kind].values():
            assert set(forecast) == {"roc_auc", "pr_auc", "brier", "ece", "lift_10", "capture_10"}
        # a learned model ranks clearly better than chance on held-out time
        assert metrics[kind]["model"]["roc_auc"] > 0.6
    predictions = pd.read_parquet(tmp_path / "data/reports/predictions.parquet")
    assert list(predictions.columns[:5]) == ["client_id", "cutoff_at", "task", "probability", "label"]
    assert set(predictions["task"]) == {"churn", "winback"}
    details = json.loads((tmp_path / "data/reports/details.json").read_text(encoding="utf-8"))
    assert set(details["churn"]["segments"]) == {"new", "established"}
    assert set(details["winback"]["segments"]) == {"lapsed_90", "lapsed_180", "lapsed_360"}

    # the champion loads by alias in a fresh process and scores the scoring cutoff
    code = (
        "import sys, pandas as pd; from models.scorer import load_model; "
        "f = pd.read_parquet(sys.argv[1]); m = load_model('churn'); "
        "p = m.predict_probability(f[f['state'].isin(['new', 'active'])]); "
        "print(m.version, float(p.min()), float(p.max()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / features)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    version, low, high = out.stdout.split()[-3:]
    assert version == "1"
    assert 0 < float(low) <= float(high) < 1
    frame = pd.read_parquet(tmp_path / features, columns=["cutoff_at"])
    assert frame["cutoff_at"].nunique() > 3
