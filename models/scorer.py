"""The models -> serving interface: a calibrated LightGBM model held natively, and how to load it.

Serving calls :func:`load_model` (the registry, by alias) or :func:`load_model_from_dir` (a trained
folder) once at start-up and then :meth:`LoadedModel.predict_with_reasons` per request. The request
path is the native ``lightgbm.Booster`` with one thread plus a numpy calibrator: no pyfunc, no
sklearn, so a single row costs well under a millisecond.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.contract import FEATURE_COLUMNS, ContractError
from models.calibration import Calibrator

log = logging.getLogger(__name__)

#: Files of a trained model folder (OUT/<kind>/) and of the pyfunc artifact of the same name.
BOOSTER_FILE = "booster.txt"
CALIBRATION_FILE = "calibration.json"
FEATURES_FILE = "feature_names.json"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.json"
SELECTION_FILE = "selection.json"
#: Key of the model folder among the pyfunc artifacts of the logged model.
PYFUNC_ARTIFACT = "model"


class ModelNotFoundError(LookupError):
    """No registered model version behind the requested name and alias, or no model in a folder."""


@dataclass(frozen=True)
class Reason:
    """One feature's push on a client's score (LightGBM pred_contrib on the raw log-odds)."""

    feature: str  # feature column name (serving turns it into words; never shown raw)
    value: float | None  # the client's value of that feature (None when missing)
    contribution: float  # log-odds contribution; > 0 raises the probability of the event


def registered_name(kind: str) -> str:
    """The registry name of a model kind: ``comeback-churn`` / ``comeback-winback``."""
    return f"comeback-{kind}"


def tracking_uri_from_env() -> str:
    """COMEBACK_TRACKING_URI, else MLFLOW_TRACKING_URI, else ``sqlite:///<cwd>/mlflow.db``."""
    for var in ("COMEBACK_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class LoadedModel:
    """A calibrated LightGBM model (native booster + calibrator) with its metadata."""

    def __init__(
        self,
        *,
        kind: Literal["churn", "winback"],
        name: str,
        version: str,
        booster: lgb.Booster,
        calibrator: Calibrator,
        feature_names: list[str],
        metrics: dict[str, float] | None = None,
        num_threads: int = 1,
    ) -> None:
        unknown = [f for f in feature_names if f not in FEATURE_COLUMNS]
        if unknown:
            raise ContractError(f"model {name}: input column(s) not in the feature contract: {unknown}")
        if booster.num_feature() != len(feature_names):
            raise ContractError(
                f"model {name}: booster has {booster.num_feature()} inputs but feature_names lists "
                f"{len(feature_names)}"
            )
        self.kind: Literal["churn", "winback"] = kind
        self.name = name
        self.version = version
        self.booster = booster
        self.calibrator = calibrator
        self.feature_names = list(feature_names)
        self.metrics: dict[str, float] = dict(metrics or {})
        self.num_threads = num_threads
        self._predict_kwargs: dict[str, Any] = {"num_threads": num_threads}

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, version={self.version!r}, inputs={len(self.feature_names)})"

    def matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The inputs as a float64 array in ``feature_names`` order.

        A DataFrame may carry extra columns (ignored); a missing input column raises ContractError
        naming it. An array must already have ``len(feature_names)`` columns in that order. The
        array is the fast path for single rows (tens of µs in total); selecting columns of a
        DataFrame alone costs a few hundred µs in pandas.
        """
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_names if c not in X.columns]
            if missing:
                raise ContractError(
                    f"table 'features': missing model input column(s) {', '.join(map(repr, missing))} "
                    f"for model {self.name}"
                )
            sub = X[self.feature_names]
            try:
                return sub.to_numpy(dtype="float64", na_value=np.nan)
            except (TypeError, ValueError):
                # Mixed extension dtypes (nullable bool/int): convert column by column.
                from models.dataset import feature_matrix

                return feature_matrix(sub, self.feature_names)
        arr = np.asarray(X, dtype="float64")
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.feature_names):
            raise ContractError(
                f"model {self.name}: expected {len(self.feature_names)} input columns "
                f"({self.feature_names[0]}..{self.feature_names[-1]}), got array of shape {arr.shape}"
            )
        return arr

    def predict_raw(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Uncalibrated raw scores (log-odds), shape (n,)."""
        raw = self.booster.predict(self.matrix(X), raw_score=True, **self._predict_kwargs)
        return np.asarray(raw, dtype="float64")

    def predict_probability(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of the event (churn / win-back within the horizon), shape (n,)."""
        return self.calibrator(self.predict_raw(X))

    def contributions(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, pred_contrib) where pred_contrib has one column per input plus the bias last."""
        arr = self.matrix(X)
        contrib = self.booster.predict(arr, pred_contrib=True, **self._predict_kwargs)
        return arr, np.asarray(contrib, dtype="float64")

    def top_reasons(self, X: pd.DataFrame | np.ndarray, k: int = 3) -> list[list[Reason]]:
        """Per row the k inputs with the largest positive contribution to the event, largest first."""
        return self.predict_with_reasons(X, k)[1]

    def predict_with_reasons(
        self, X: pd.DataFrame | np.ndarray, k: int = 3
    ) -> tuple[np.ndarray, list[list[Reason]]]:
        """Calibrated probabilities and top-k reasons in one booster pass.

        The contributions of a row sum to its raw score, so one ``pred_contrib`` call gives both.
        """
        arr, contrib = self.contributions(X)
        probability = self.calibrator(contrib.sum(axis=1))
        per_feature = contrib[:, :-1]
        reasons: list[list[Reason]] = []
        names = self.feature_names
        if k <= 0:
            return probability, [[] for _ in range(len(arr))]
        kk = min(k, per_feature.shape[1])
        top = np.argsort(-per_feature, axis=1, kind="stable")[:, :kk]
        for row, cols in enumerate(top):
            row_reasons = []
            for c in cols:
                value = per_feature[row, c]
                if value <= 0:
                    break
                x = arr[row, c]
                row_reasons.append(
                    Reason(
                        feature=names[c], value=None if np.isnan(x) else float(x), contribution=float(value)
                    )
                )
            reasons.append(row_reasons)
        return probability, reasons


def find_model_dir(path: Path) -> Path:
    """The folder holding booster.txt: ``path`` itself, or inside a logged pyfunc model
    (``path/artifacts/<folder>/``, where MLflow copies the model folder)."""
    if (path / BOOSTER_FILE).is_file():
        return path
    found = sorted(p.parent for p in (path / "artifacts").glob(f"*/{BOOSTER_FILE}"))
    if len(found) == 1:
        return found[0]
    raise ModelNotFoundError(f"no {BOOSTER_FILE} in {path} (nor in exactly one {path / 'artifacts'}/*/)")


def load_model_from_dir(path: Path, *, num_threads: int = 1, version: str = "local") -> LoadedModel:
    """Load a trained model folder (booster.txt, calibration.json, feature_names.json, ...)."""
    folder = find_model_dir(Path(path))
    meta = _read_json(folder / MODEL_FILE, default={})
    features = _read_json(folder / FEATURES_FILE)
    metrics = _read_json(folder / METRICS_FILE, default={})
    kind: Literal["churn", "winback"]
    raw_kind = meta.get("kind") or folder.name
    if raw_kind == "churn":
        kind = "churn"
    elif raw_kind == "winback":
        kind = "winback"
    else:
        raise ModelNotFoundError(f"{folder}: cannot tell the model kind (model.json 'kind' is {raw_kind!r})")
    # Thread count goes with each predict call: Booster(model_str=...) ignores a params argument.
    booster = lgb.Booster(model_str=(folder / BOOSTER_FILE).read_text(encoding="utf-8"))
    return LoadedModel(
        kind=kind,
        name=meta.get("name", registered_name(kind)),
        version=version,
        booster=booster,
        calibrator=Calibrator.load(folder / CALIBRATION_FILE),
        feature_names=list(features),
        metrics={k: float(v) for k, v in metrics.get("test", {}).items() if isinstance(v, int | float)},
        num_threads=num_threads,
    )


def load_model(
    kind: Literal["churn", "winback"],
    *,
    tracking_uri: str | None = None,
    alias: str = "champion",
    num_threads: int = 1,
    name: str | None = None,
) -> LoadedModel:
    """Load ``models:/comeback-<kind>@<alias>`` from the MLflow registry as a native LoadedModel.

    Raises ModelNotFoundError when the registered model or the alias does not exist.
    """
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or tracking_uri_from_env()
    model_name = name or registered_name(kind)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as e:
        raise ModelNotFoundError(
            f"no model version {model_name}@{alias} in the registry at {_safe_uri(uri)}: "
            "train and promote a model first (comeback train, comeback promote)"
        ) from e
    with tempfile.TemporaryDirectory(prefix="comeback-model-") as tmp:
        local = download_artifacts(
            artifact_uri=f"models:/{model_name}/{mv.version}",
            dst_path=tmp,
            tracking_uri=uri,
            registry_uri=uri,
        )
        model = load_model_from_dir(Path(local), num_threads=num_threads, version=str(mv.version))
    log.info("loaded %s version %s (alias %s)", model_name, mv.version, alias)
    return model


def _safe_uri(uri: str) -> str:
    """The tracking URI without credentials (user:password@ is never logged)."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        if default is not None:
            return default
        raise ModelNotFoundError(f"model folder {path.parent}: missing {path.name}")
    return json.loads(path.read_text(encoding="utf-8"))
