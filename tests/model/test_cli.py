"""The train/evaluate/promote commands fail at the door with messages that name what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMEBACK_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def test_train_names_the_missing_column(workdir: Path, fabricated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    fabricated[0].head(100).drop(columns=["recency_days"]).to_parquet(workdir / "features.parquet")
    result = CliRunner().invoke(app, ["train", "--features", "features.parquet", "--out", "models"])
    assert result.exit_code == 1
    assert "recency_days" in result.output and "features.parquet" in result.output
    assert not (workdir / "models").exists()


def test_evaluate_names_the_missing_model_folder(
    workdir: Path, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    fabricated[0].to_parquet(workdir / "features.parquet")
    result = CliRunner().invoke(
        app, ["evaluate", "--features", "features.parquet", "--models", "nowhere", "--out", "reports"]
    )
    assert result.exit_code == 1
    assert "booster.txt" in result.output and "nowhere" in result.output


def test_promote_without_a_trained_model_says_what_to_run(
    workdir: Path, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    fabricated[0].to_parquet(workdir / "features.parquet")
    result = CliRunner().invoke(app, ["promote", "--features", "features.parquet"])
    assert result.exit_code == 1
    assert "comeback-churn@challenger" in result.output and "comeback train" in result.output


def test_a_typo_in_the_train_section_is_an_error(
    workdir: Path, fabricated: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    text = (workdir / "params.yaml").read_text(encoding="utf-8")
    (workdir / "params.yaml").write_text(text.replace("    learning_rate: 0.05", "    learnin_rate: 0.05", 1))
    fabricated[0].head(100).to_parquet(workdir / "features.parquet")
    result = CliRunner().invoke(app, ["train", "--features", "features.parquet", "--out", "models"])
    assert result.exit_code == 1
    assert "train.churn.learnin_rate" in result.output
