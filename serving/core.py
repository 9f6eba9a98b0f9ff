"""The scoring core: champion models + a feature table at one cutoff -> one answer per client.

The batch `score` stage and the API both call :class:`Scorer`. Everything that does not depend on
a model is prepared once per feature table (:func:`prepare_snapshot`): a float64 feature matrix in
``FEATURE_COLUMNS`` order, a client_id -> row index, and the model-independent campaign plan
(value, classes, exclusions, offers, flags, managers). Scoring a set of rows is then two native
LightGBM calls (churn rows, win-back rows), vectorised priorities, and reasons in words.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.contract import FEATURE_COLUMNS, ContractError, check_feature_table
from serving.campaigns import CampaignPlan, assign_campaigns, plan_campaigns
from serving.config import ScoreParams
from serving.explain import PathExplainer
from serving.reasons import ReasonRenderer

log = logging.getLogger(__name__)

FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
ReasonsMode = Literal["all", "listed", "none"]
CANDIDATE_SPARE = 4  # extra top contributions looked at so that k distinct reasons remain


class ReasonLike(Protocol):
    """A feature contribution (models.scorer.Reason)."""

    @property
    def feature(self) -> str: ...

    @property
    def contribution(self) -> float: ...


class ScoringModel(Protocol):
    """What the core needs of a champion (models.scorer.LoadedModel satisfies it)."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def feature_names(self) -> list[str]: ...

    @property
    def metrics(self) -> dict[str, float]: ...

    @property
    def booster(self) -> Any: ...  # lightgbm.Booster (path attribution reads its trees)

    def predict_probability(self, X: Any) -> np.ndarray: ...

    def top_reasons(self, X: Any, k: int = 3) -> Sequence[Sequence[ReasonLike]]: ...


@dataclass(frozen=True)
class FeatureSnapshot:
    """The feature table at one cutoff, prepared for scoring (independent of the models)."""

    cutoff_at: pd.Timestamp
    client_ids: np.ndarray
    row_of: dict[str, int]
    matrix: np.ndarray
    state: np.ndarray
    plan: CampaignPlan
    source: str

    @property
    def n_clients(self) -> int:
        return int(self.client_ids.shape[0])

    def rows_for(self, client_ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Row indices of the known ids (in the given order) and the ids that are not in the table."""
        rows, unknown = [], []
        for cid in client_ids:
            r = self.row_of.get(cid)
            if r is None:
                unknown.append(cid)
            else:
                rows.append(r)
        return np.asarray(rows, dtype=np.int64), unknown


def read_feature_table(path: Path, cutoff: dt.date | None = None) -> pd.DataFrame:
    """Rows of the feature table at the scoring cutoff: ``cutoff`` (a date) or the latest cutoff_at.

    Checks the contract before reading the rows, so a missing column fails naming the file and the
    column; a cutoff absent from the table is an error naming the cutoffs that exist.
    """
    if not path.exists():
        raise FileNotFoundError(f"feature table not found: {path}")
    schema = pq.read_schema(path)
    check_feature_table(schema.names, source=str(path))
    cutoffs = pq.read_table(path, columns=["cutoff_at"]).column("cutoff_at").unique().to_pandas()
    if len(cutoffs) == 0:
        raise ContractError(f"table 'features' ({path}): no rows")
    stamps = pd.to_datetime(pd.Series(cutoffs), utc=True)
    if cutoff is None:
        chosen = stamps.max()
    else:
        wanted = pd.Timestamp(cutoff, tz="UTC")
        if not (stamps == wanted).any():
            have = ", ".join(sorted(str(s.date()) for s in stamps)[-5:])
            raise ContractError(f"table 'features' ({path}): no rows at cutoff {cutoff} (latest: {have})")
        chosen = wanted
    frame = pq.read_table(path, filters=[("cutoff_at", "==", chosen)]).to_pandas()
    return frame


def prepare_snapshot(
    frame: pd.DataFrame, params: ScoreParams, *, cutoff: dt.date | None = None, source: str = "features"
) -> FeatureSnapshot:
    """Prepare the rows of one cutoff of a feature table for scoring.

    ``frame`` may hold several cutoffs; the rows of ``cutoff`` (default: the latest cutoff_at) are
    used. Fails with a ContractError naming the column when a contract column is missing and naming
    the client when a client appears twice at the cutoff.
    """
    check_feature_table(frame.columns, source=source)
    stamps = pd.to_datetime(frame["cutoff_at"], utc=True)
    chosen = stamps.max() if cutoff is None else pd.Timestamp(cutoff, tz="UTC")
    at = frame.loc[(stamps == chosen).to_numpy()].reset_index(drop=True)
    if at.empty:
        raise ContractError(f"table 'features' ({source}): no rows at cutoff {chosen}")
    ids = at["client_id"].astype(str).to_numpy(dtype=object)
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise ContractError(
            f"table 'features' ({source}): client_id {ids[int(np.argmax(dup.to_numpy()))]!r} "
            f"appears twice at cutoff {chosen}"
        )
    bad = [
        c
        for c in FEATURE_COLUMNS
        if not pd.api.types.is_numeric_dtype(at[c]) and not pd.api.types.is_bool_dtype(at[c])
    ]
    if bad:
        raise ContractError(
            f"table 'features' ({source}): column(s) {', '.join(map(repr, bad))} are not numeric"
        )
    matrix = np.ascontiguousarray(
        at.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    )
    return FeatureSnapshot(
        cutoff_at=chosen,
        client_ids=ids,
        row_of={cid: i for i, cid in enumerate(ids.tolist())},
        matrix=matrix,
        state=at["state"].astype(str).to_numpy(dtype=object),
        plan=plan_campaigns(at, params),
        source=source,
    )


@dataclass(frozen=True)
class ScoredRows:
    """The core's answer for a set of rows (arrays aligned with ``rows``)."""

    rows: np.ndarray
    churn_probability: np.ndarray
    winback_probability: np.ndarray
    priority: np.ndarray
    campaign: np.ndarray
    excluded_reason: np.ndarray
    reasons: list[list[str]]  # per row; empty where no reasons were asked for
    model_versions: dict[str, str]


class Scorer:
    """Champion models bound to a prepared feature table; one instance is swapped on reload."""

    def __init__(
        self, snapshot: FeatureSnapshot, churn: ScoringModel, winback: ScoringModel, params: ScoreParams
    ) -> None:
        self.snapshot = snapshot
        self.churn = churn
        self.winback = winback
        self.params = params
        self._cols = {m.kind: self._columns_of(m) for m in (churn, winback)}
        self._renderer = ReasonRenderer()
        self._explainers = (
            {m.kind: PathExplainer.from_booster(m.booster, m.feature_names) for m in (churn, winback)}
            if params.reason_method == "path"
            else {}
        )

    @staticmethod
    def _columns_of(model: ScoringModel) -> np.ndarray:
        unknown = [f for f in model.feature_names if f not in FEATURE_INDEX]
        if unknown:
            raise ContractError(
                f"model {model.name} v{model.version} needs column(s) {', '.join(map(repr, unknown))} "
                "that are not in the feature contract"
            )
        return np.asarray([FEATURE_INDEX[f] for f in model.feature_names], dtype=np.int64)

    @property
    def model_versions(self) -> dict[str, str]:
        return {"churn": self.churn.version, "winback": self.winback.version}

    def _top_features(self, model: ScoringModel, X: np.ndarray) -> list[list[str]]:
        """Names of the top positive contributions per row (path attribution or TreeSHAP, per params)."""
        # A few spare candidates: phrases telling the same fact are merged in _words.
        k = self.params.reasons_per_client + CANDIDATE_SPARE
        if self.params.reason_method == "shap":
            return [[r.feature for r in row] for row in model.top_reasons(X, k=k)]
        explainer = self._explainers[model.kind]
        contributions = explainer.contributions(
            model.booster, X, num_threads=getattr(model, "num_threads", 1)
        )
        names = model.feature_names
        return [[names[c] for c in cols] for cols in explainer.top_features(contributions, k)]

    def _words(self, rows: np.ndarray, features: Sequence[Sequence[str]]) -> list[list[str]]:
        matrix, render = self.snapshot.matrix, self._renderer.render_distinct
        k = self.params.reasons_per_client
        return [render(f, matrix[r].tolist(), k) for r, f in zip(rows.tolist(), features, strict=True)]

    def score(self, rows: np.ndarray | None = None, *, reasons: ReasonsMode = "all") -> ScoredRows:
        """Score ``rows`` of the snapshot (default: every row).

        ``reasons``: "all" gives reasons to every row a model applies to (the API), "listed" only to
        rows that end up on a campaign list (the batch), "none" to no row. The reasons of a client
        do not depend on the mode or on the other rows scored with it.
        """
        snap = self.snapshot
        rows = np.arange(snap.n_clients, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        n = rows.shape[0]
        kind = snap.plan.model_kind[rows]
        churn_p = np.full(n, np.nan)
        winback_p = np.full(n, np.nan)
        for model, target in ((self.churn, churn_p), (self.winback, winback_p)):
            pos = np.flatnonzero(kind == model.kind)
            if pos.size == 0:
                continue
            X = snap.matrix[np.ix_(rows[pos], self._cols[model.kind])]
            p = np.asarray(model.predict_probability(X), dtype=np.float64)
            if not np.all((p >= 0.0) & (p <= 1.0)):
                raise ValueError(f"model {model.name} v{model.version} returned probabilities outside [0, 1]")
            target[pos] = p
        probability = np.where(kind == "churn", churn_p, winback_p)
        priority, campaign, excluded = assign_campaigns(snap.plan, rows, probability)
        words: list[list[str]] = [[] for _ in range(n)]
        if reasons != "none":
            for model in (self.churn, self.winback):
                wanted = kind == model.kind
                if reasons == "listed":
                    wanted &= campaign != "none"
                pos = np.flatnonzero(wanted)
                if pos.size == 0:
                    continue
                X = snap.matrix[np.ix_(rows[pos], self._cols[model.kind])]
                phrases = self._words(rows[pos], self._top_features(model, X))
                for i, row_phrases in zip(pos.tolist(), phrases, strict=True):
                    words[i] = row_phrases
        return ScoredRows(
            rows=rows,
            churn_probability=churn_p,
            winback_probability=winback_p,
            priority=priority,
            campaign=campaign,
            excluded_reason=excluded,
            reasons=words,
            model_versions=self.model_versions,
        )

    def to_frame(self, scored: ScoredRows) -> pd.DataFrame:
        """One row per scored client with every output column (scores.parquet and the CSV lists)."""
        snap, plan, rows = self.snapshot, self.snapshot.plan, scored.rows
        k = self.params.reasons_per_client
        flags = flag_strings(plan, rows)
        frame = pd.DataFrame(
            {
                "client_id": snap.client_ids[rows],
                "cutoff_at": snap.cutoff_at,
                "state": snap.state[rows],
                "model": plan.model_kind[rows],
                "churn_probability": scored.churn_probability,
                "winback_probability": scored.winback_probability,
                "value": plan.value[rows],
                "value_class": plan.value_class[rows],
                "campaign": scored.campaign,
                "priority": scored.priority,
                "offer": np.where(plan.model_kind[rows] != "", plan.offer[rows], ""),
                "offer_cost": plan.offer_cost[rows],
                "excluded_reason": scored.excluded_reason,
                "tier": plan.tier[rows],
                "flags": flags,
                "returned_client": plan.returned_client[rows],
                "new_client": plan.new_client[rows],
                "open_severe_complaint": plan.open_severe_complaint[rows],
                "avoid_manager_id": plan.avoid_manager_id[rows],
                "suggested_manager_id": plan.suggested_manager_id[rows],
            }
        )
        for j in range(k):
            frame[f"reason_{j + 1}"] = [r[j] if len(r) > j else "" for r in scored.reasons]
        frame["churn_model_version"] = scored.model_versions["churn"]
        frame["winback_model_version"] = scored.model_versions["winback"]
        return frame


FLAG_NAMES = ("returned_client", "new_client", "open_severe_complaint")


def flag_lists(plan: CampaignPlan, rows: np.ndarray) -> list[list[str]]:
    """Flags per row as lists of names: returned_client, new_client, open_severe_complaint."""
    cols = [getattr(plan, name)[rows] for name in FLAG_NAMES]
    return [
        [name for name, col in zip(FLAG_NAMES, cols, strict=True) if col[i]] for i in range(rows.shape[0])
    ]


def flag_strings(plan: CampaignPlan, rows: np.ndarray) -> np.ndarray:
    """Flags per row joined with ';' ("" when none), built column-wise for large batches."""
    out = np.full(rows.shape[0], "", dtype=object)
    for name in FLAG_NAMES:
        hit = getattr(plan, name)[rows]
        out[hit] = np.where(out[hit] == "", name, out[hit] + ";" + name)
    return out


def _num(x: float) -> float | None:
    return None if x != x else float(x)


def _text(x: object) -> str | None:
    return None if x is None or x == "" or x != x else str(x)


def to_records(scorer: Scorer, scored: ScoredRows) -> list[dict[str, Any]]:
    """The core's answer as one JSON-ready dict per scored row (the API's ClientScore).

    Carries no personal data beyond the client id: state, numbers, offers, flags, manager ids
    (staff, not client data) and reasons in words.
    """
    snap, plan = scorer.snapshot, scorer.snapshot.plan
    rows = scored.rows
    flags = flag_lists(plan, rows)
    cutoff = snap.cutoff_at.isoformat()
    out: list[dict[str, Any]] = []
    for i, r in enumerate(rows.tolist()):
        kind = plan.model_kind[r]
        out.append(
            {
                "client_id": snap.client_ids[r],
                "cutoff_at": cutoff,
                "state": snap.state[r],
                "model": kind or None,
                "churn_probability": _num(scored.churn_probability[i]),
                "winback_probability": _num(scored.winback_probability[i]),
                "value": float(plan.value[r]),
                "value_class": plan.value_class[r],
                "campaign": scored.campaign[i],
                "priority": _num(scored.priority[i]),
                "offer": _text(plan.offer[r]) if kind else None,
                "offer_cost": float(plan.offer_cost[r]) if kind else None,
                "excluded_reason": _text(scored.excluded_reason[i]),
                "tier": _text(plan.tier[r]),
                "flags": flags[i],
                "avoid_manager_id": _text(plan.avoid_manager_id[r]),
                "suggested_manager_id": _text(plan.suggested_manager_id[r]),
                "reasons": scored.reasons[i],
                "model_version": scored.model_versions.get(kind) if kind else None,
            }
        )
    return out
