"""MLflow tracking and registry: log a training run, register it as challenger, promote by alias.

* Every trained model is logged as an MLflow pyfunc (:class:`ComebackPyfunc`, booster + calibrator
  for generic consumers) whose artifacts hold the native model folder (booster.txt,
  calibration.json, ...) that :func:`models.scorer.load_model` reads for the fast path.
* It is registered as ``comeback-<kind>`` and the new version gets the alias ``challenger``.
* :func:`promote_kind` moves ``champion`` to the challenger only when it is not worse than the
  champion beyond the tolerances, on the same test cutoff; the comparison is kept as version tags.

Aliases only: no deprecated stages, never "latest". The tracking URI comes from the caller
(``models.scorer.tracking_uri_from_env``); credentials in it are never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import warnings
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

import features
import models
from models.config import ModelKind, PromoteParams
from models.dataset import choose_test_cutoff, population, take_rows
from models.metrics import brier, roc_auc
from models.scorer import (
    PYFUNC_ARTIFACT,
    LoadedModel,
    ModelNotFoundError,
    _safe_uri,
    load_model,
    load_model_from_dir,
    registered_name,
)
from models.train import TrainedModel

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Version tags of the registration guard (models.selection.guard_verdict).
GUARD_TAG = "guard_passed"
GUARD_REASON_TAG = "guard_reasons"


class ComebackPyfunc(PythonModel):
    """Generic MLflow pyfunc: the calibrated probability of the event for each input row.

    Serving does not use it (it loads the native booster); it is for ``mlflow.pyfunc.load_model``
    consumers such as batch jobs in other tools.
    """

    def load_context(self, context: Any) -> None:
        self.model = load_model_from_dir(Path(context.artifacts[PYFUNC_ARTIFACT]))

    # No type hints on purpose: MLflow 3 reads them as an input schema and would override the
    # signature inferred from the feature table.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.predict_probability(frame)


@dataclass(frozen=True)
class Registration:
    """Where a trained model went in MLflow."""

    run_id: str
    name: str
    version: str


def default_artifact_location(tracking_uri: str) -> str | None:
    """``mlartifacts/`` beside a sqlite store (as a file URI), so artifacts never land in the cwd.

    For a tracking server the server decides (None).
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        db = Path(tracking_uri[len(prefix) :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created with an explicit artifact location if missing."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri)))


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the git work tree holding the code (or ``cwd``); None outside git or without git."""
    cwd = cwd or Path(models.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def log_and_register(
    trained: TrainedModel,
    model_dir: Path,
    *,
    tracking_uri: str,
    experiment: str,
    params: dict[str, Any],
    data_source: str,
    register: bool = True,
) -> Registration:
    """Log one training run (params, metrics, feature list, data digest, git commit, pyfunc model)
    and register the model with the alias ``challenger``; returns run id and version."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    kind = trained.kind
    name = registered_name(kind)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment_id = ensure_experiment(tracking_uri, experiment)
    example = trained.input_example.astype("float64")
    signature = infer_signature(example, trained.model.predict_probability(example))
    commit = git_commit()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{kind}") as run:
        mlflow.set_tags({"kind": kind, "git_commit": commit or "unknown", "stage": "train"})
        mlflow.log_params({k: v for k, v in params.items()})
        metrics = {f"{part}_{k}": v for part, ms in trained.metrics.items() for k, v in ms.items()}
        metrics.update(trained.calibration_check)
        metrics["best_iteration"] = float(trained.best_iteration)
        metrics["fit_seconds"] = trained.fit_seconds
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_text(json.dumps(trained.model.feature_names, indent=1), "feature_names.json")
        mlflow.log_dict(trained.split.to_json(), "split.json")
        if trained.selection:
            mlflow.log_dict(trained.selection, "selection.json")
            for candidate, row in trained.selection.get("table", {}).items():
                mlflow.log_metric(f"valid_folds_roc_auc_{candidate}", float(row["mean"]))
        train_cols = [*trained.model.feature_names, "label"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "source can be interpreted in multiple ways": it is a file
            dataset = from_pandas(
                trained.train_frame[train_cols].astype("float64"),
                source=data_source,
                targets="label",
                name=f"{kind}-train",
            )
        mlflow.log_input(dataset, context="training")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ComebackPyfunc(),
            artifacts={PYFUNC_ARTIFACT: str(model_dir)},
            signature=signature,
            input_example=example,
            registered_model_name=name if register else None,
            # Explicit requirements and code: MLflow's inference would re-import the model in a
            # subprocess (seconds per run), and the pyfunc must load without comeback installed.
            pip_requirements=_pip_requirements(),
            code_paths=[str(Path(models.__file__).parent), str(Path(features.__file__).parent)],
        )
        run_id = run.info.run_id
    version = str(info.registered_model_version) if register else ""
    if register:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        guard = trained.selection.get("guard", {"passed": True, "reasons": []})
        tags = {
            "kind": kind,
            "run_id": run_id,
            "git_commit": commit or "unknown",
            "candidate": str(trained.selection.get("winner", "lightgbm")),
            "test_cutoff": trained.split.test_cutoff.isoformat(),
            "test_roc_auc": f"{trained.metrics['test']['roc_auc']:.4f}",
            "test_brier": f"{trained.metrics['test']['brier']:.4f}",
            GUARD_TAG: "true" if guard["passed"] else "false",
        }
        if not guard["passed"]:
            tags[GUARD_REASON_TAG] = "; ".join(guard["reasons"])
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if guard["passed"]:
            client.set_registered_model_alias(name, CHALLENGER, version)
            log.info(
                "registered %s version %s as %s at %s", name, version, CHALLENGER, _safe_uri(tracking_uri)
            )
        else:
            # the previous challenger is superseded by this run: promote must see the refusal, not it
            if _version_by_alias(client, name, CHALLENGER) is not None:
                client.delete_registered_model_alias(name, CHALLENGER)
            log.warning(
                "registered %s version %s WITHOUT the %s alias: %s",
                name,
                version,
                CHALLENGER,
                tags[GUARD_REASON_TAG],
            )
    return Registration(run_id=run_id, name=name, version=version)


def _pip_requirements() -> list[str]:
    """The packages the pyfunc imports, pinned to the versions that trained it."""
    return [
        f"{name}=={package_version(name)}"
        for name in ("mlflow", "lightgbm", "numpy", "pandas", "scikit-learn", "scipy", "pydantic")
    ]


def log_evaluation(
    tracking_uri: str, run_id: str, *, metrics: dict[str, float], files: list[Path], artifact_path: str
) -> None:
    """Attach evaluation metrics and files (plots, model card) to the training run ``run_id``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in metrics.items():
        if np.isfinite(value):
            client.log_metric(run_id, key, float(value))
    for path in files:
        sub = artifact_path if path.suffix != ".md" else None
        client.log_artifact(run_id, str(path), artifact_path=sub)


def _version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def compare_on_test(
    features: pd.DataFrame,
    models: dict[str, LoadedModel],
    kind: ModelKind,
    horizon_days: int,
    test_cutoff: dt.date | None = None,
) -> tuple[str, dict[str, dict[str, float]]]:
    """ROC-AUC and Brier of each named model on the test cutoff of ``features``."""
    cutoff = choose_test_cutoff(features, kind, horizon_days, test_cutoff)
    test = take_rows(population(features, kind), kind, cutoff)
    y = test["label"].to_numpy()
    scores = {}
    for role, model in models.items():
        p = model.predict_probability(test)
        scores[role] = {"roc_auc": roc_auc(y, p), "brier": brier(y, p)}
    return cutoff.isoformat(), scores


def _latest_version(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version)) if versions else None


def promote_kind(
    kind: ModelKind,
    features: pd.DataFrame,
    params: PromoteParams,
    *,
    horizon_days: int,
    tracking_uri: str,
    test_cutoff: dt.date | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to the challenger if it is not worse beyond the tolerances; returns the record.

    The first registered model becomes champion without comparison. A model that failed the
    registration guard (constant, or no better than recency on validation) is refused with the
    guard's reason, whether it is the newest version without the challenger alias or a version
    tagged as failed. The decision and both models' scores are written as tags on the challenger
    version.
    """
    from mlflow import MlflowClient

    name = registered_name(kind)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    challenger = _version_by_alias(client, name, CHALLENGER)
    latest = _latest_version(client, name)
    if latest is None:
        raise ModelNotFoundError(f"no {name}@{CHALLENGER} in the registry: run comeback train first")
    failed = latest if (latest.tags or {}).get(GUARD_TAG) == "false" else None
    if challenger is not None and (challenger.tags or {}).get(GUARD_TAG) == "false":
        failed = challenger
    if failed is not None and (challenger is None or int(failed.version) >= int(challenger.version)):
        reason = (failed.tags or {}).get(GUARD_REASON_TAG, "failed the registration guard")
        champion = _version_by_alias(client, name, CHAMPION)
        client.set_model_version_tag(name, str(failed.version), "promotion_decision", "refused")
        log.warning("%s: version %s refused (%s)", name, failed.version, reason)
        return {
            "kind": kind,
            "name": name,
            "challenger": str(failed.version),
            "decision": "refused",
            "reason": reason,
            "champion": str(champion.version) if champion is not None else None,
        }
    if challenger is None:
        raise ModelNotFoundError(f"no {name}@{CHALLENGER} in the registry: run comeback train first")
    champion = _version_by_alias(client, name, CHAMPION)
    record: dict[str, Any] = {"kind": kind, "name": name, "challenger": str(challenger.version)}
    if champion is None:
        client.set_registered_model_alias(name, CHAMPION, str(challenger.version))
        record.update(decision="promoted", reason="first model: no champion yet", champion=None)
    elif str(champion.version) == str(challenger.version):
        record.update(
            decision="unchanged", reason="challenger is already champion", champion=str(champion.version)
        )
    else:
        loaded = {
            CHAMPION: load_model(kind, tracking_uri=tracking_uri, alias=CHAMPION),
            CHALLENGER: load_model(kind, tracking_uri=tracking_uri, alias=CHALLENGER),
        }
        cutoff, scores = compare_on_test(features, loaded, kind, horizon_days, test_cutoff)
        ch, cp = scores[CHALLENGER], scores[CHAMPION]
        auc_ok = ch["roc_auc"] >= cp["roc_auc"] - params.tolerance_roc_auc
        brier_ok = ch["brier"] <= cp["brier"] + params.tolerance_brier
        promoted = bool(auc_ok and brier_ok)
        reasons = []
        if not auc_ok:
            reasons.append(f"roc_auc {ch['roc_auc']:.4f} < {cp['roc_auc']:.4f} - {params.tolerance_roc_auc}")
        if not brier_ok:
            reasons.append(f"brier {ch['brier']:.4f} > {cp['brier']:.4f} + {params.tolerance_brier}")
        record.update(
            decision="promoted" if promoted else "rejected",
            reason="not worse than the champion within the tolerances" if promoted else "; ".join(reasons),
            champion=str(champion.version),
            test_cutoff=cutoff,
            scores=scores,
        )
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, str(challenger.version))
    tags = {
        "promotion_decision": record["decision"],
        "promotion_reason": record["reason"],
        "promotion_compared_to": record["champion"] or "none",
    }
    for role, s in record.get("scores", {}).items():
        for metric, value in s.items():
            tags[f"promotion_{role}_{metric}"] = f"{value:.5f}"
    if "test_cutoff" in record:
        tags["promotion_test_cutoff"] = record["test_cutoff"]
    for key, value in tags.items():
        client.set_model_version_tag(name, str(challenger.version), key, value)
    log.info("%s: %s (%s)", name, record["decision"], record["reason"])
    return record


def read_registration(model_dir: Path) -> dict[str, Any]:
    """The ``registration`` block train wrote into model.json (run_id, version), or {}."""
    path = model_dir / "model.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    reg: dict[str, Any] = data.get("registration") or {}
    return reg
