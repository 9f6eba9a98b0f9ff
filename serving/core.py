"""The scoring core: champion models + a feature table at one cutoff -> one answer per client.

The batch `score` stage and the API both call :class:`Scorer`. Everything that does not depend on
a model is prepared once per feature table (:func:`prepare_snapshot`): a float64 feature matrix in
``FEATURE_COLUMNS`` order, a client_id -> row index, and the model-independent campaign plan
(value, classes, exclusions, offers, flags, managers). Scoring a set of rows is then two native
LightGBM calls (churn rows, win-back rows), vectorised priorities, and reasons in words.

:meth:`Scorer.score_one` is the API's single-client path: the same answer as scoring a batch of
one, through LightGBM's single-row C API (:class:`serving.explain.RowPredictor`) instead of
``booster.predict``, whose per-call set-up costs more than the trees themselves.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.contract import FEATURE_COLUMNS, ContractError, check_feature_table
from serving.campaigns import (
    NO_CAMPAIGN,
    CampaignPlan,
    assign_campaign_one,
    assign_campaigns,
    plan_campaigns,
)
from serving.config import ScoreParams
from serving.explain import PathExplainer, RowPredictor
from serving.reasons import KINDS, PeerReasons, PeerStats, ReasonRenderer, peer_stats

log = logging.getLogger(__name__)

FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
ReasonsMode = Literal["all", "listed", "none"]
# Extra top contributions looked at so that k reasons remain: a candidate gives no phrase when its
# value is on the reassuring side of the comparable median, and phrases telling one fact are merged.
# On the 20k-client sample, 4 spares left 43 of 6,884 listed churn clients without any reason and
# 1,348 with fewer than three; 9 leave 10 and 502, 20 leave 1 and 134 (docs/serving.md). With the
# 21-day default schedule, 9 spares gave three reasons to 88.6% of the 8,000-client test sample's
# listed churn clients (tests/model/test_reasons_sample.py asks for 90%); 14 do.
CANDIDATE_SPARE = 14
CHUNK_ROWS = 65536  # rows per leaf pass of a large batch (bounds the leaf-index array)
WORDS_BLOCK = 4096  # rows whose values are turned into Python floats at once for the phrases


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

    def predict_probability(self, X: Any) -> np.ndarray: ...  # calibrator(raw score)

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
    peers: Mapping[str, PeerStats]  # model kind -> medians and shares of its population (reasons)

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
    plan = plan_campaigns(at, params)
    return FeatureSnapshot(
        cutoff_at=chosen,
        client_ids=ids,
        row_of={cid: i for i, cid in enumerate(ids.tolist())},
        matrix=matrix,
        state=at["state"].astype(str).to_numpy(dtype=object),
        plan=plan,
        source=source,
        # "similar clients" of a reason: the same model population at the same cutoff
        peers={kind: peer_stats(matrix, np.flatnonzero(plan.model_kind == kind)) for kind in KINDS},
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
        renderer = ReasonRenderer()
        self._reasons: dict[str, PeerReasons] = {
            m.kind: renderer.for_peers(m.kind, snapshot.peers[m.kind], m.feature_names)
            for m in (churn, winback)
        }
        self._explainers = (
            {m.kind: PathExplainer.from_booster(m.booster, m.feature_names) for m in (churn, winback)}
            if params.reason_method == "path"
            else {}
        )
        self._row_predictors = self._fast_paths() if params.reason_method == "path" else {}

    def _fast_paths(self) -> dict[str, tuple[RowPredictor, Any]]:
        """Single-row predictors and calibrators per model kind; {} (score_one falls back to
        :meth:`score`) for a model that is not a calibrated native booster or that the fast API
        does not reproduce."""
        out: dict[str, tuple[RowPredictor, Any]] = {}
        for m in (self.churn, self.winback):
            calibrator = getattr(m, "calibrator", None)
            if calibrator is None or getattr(m, "num_threads", 1) != 1:
                continue
            try:
                out[m.kind] = (RowPredictor(m.booster, len(m.feature_names)), calibrator)
            except Exception as e:  # serve through the general path rather than not at all
                log.warning("model %s v%s: no single-row fast path (%s)", m.name, m.version, e)
        return out

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
    def single_row_fast_path(self) -> tuple[str, ...]:
        """Model kinds whose single clients go through LightGBM's single-row API (score_one)."""
        return tuple(self._row_predictors)

    @property
    def model_versions(self) -> dict[str, str]:
        return {"churn": self.churn.version, "winback": self.winback.version}

    def _top_features(self, model: ScoringModel, X: np.ndarray) -> list[list[int]]:
        """Model columns of the top positive contributions per row (path attribution or TreeSHAP)."""
        # Spare candidates: some give no phrase, phrases telling the same fact are merged (_words).
        k = self.params.reasons_per_client + CANDIDATE_SPARE
        if self.params.reason_method == "shap":
            column = {name: c for c, name in enumerate(model.feature_names)}
            return [[column[r.feature] for r in row] for row in model.top_reasons(X, k=k)]
        explainer = self._explainers[model.kind]
        contributions = explainer.contributions(
            model.booster, X, num_threads=getattr(model, "num_threads", 1)
        )
        return explainer.top_features(contributions, k)

    def _words(self, kind: str, rows: np.ndarray, columns: Sequence[Sequence[int]]) -> list[list[str]]:
        """Reasons of ``rows`` from their candidates (model column positions, strongest first)."""
        matrix, render = self.snapshot.matrix, self._reasons[kind].render_columns
        k = self.params.reasons_per_client
        out: list[list[str]] = []
        # The rows' values as Python floats in one call per block (not one call per row), in
        # blocks so a million-row batch never holds them all.
        for start in range(0, rows.shape[0], WORDS_BLOCK):
            values = matrix[rows[start : start + WORDS_BLOCK]].tolist()
            out += [
                render(c, v, k) for v, c in zip(values, columns[start : start + WORDS_BLOCK], strict=True)
            ]
        return out

    def _leaf_path(self, model: ScoringModel) -> tuple[PathExplainer, Any] | None:
        """Explainer and calibrator when one ``pred_leaf`` pass can give a batch both its
        probabilities and its reasons (path attribution whose leaf sums are LightGBM's raw scores)."""
        explainer = self._explainers.get(model.kind)
        calibrator = getattr(model, "calibrator", None)
        if explainer is None or calibrator is None or not explainer.raw_from_leaves:
            return None
        return explainer, calibrator

    def _score_through_leaves(
        self,
        model: ScoringModel,
        rows: np.ndarray,
        target: np.ndarray,
        words: list[list[str]],
        listed_only: bool,
    ) -> None:
        """Probabilities (into ``target``) and reasons (into ``words``) of ``rows`` of one model.

        One leaf pass per chunk: raw scores are the leaf-value sums (equal to booster.predict's),
        reasons come from the same leaves; with ``listed_only`` only rows the campaign rules put on
        a list get reasons (the rules are per row, so a chunk decides its own rows).
        """
        leaf_path = self._leaf_path(model)
        assert leaf_path is not None
        explainer, calibrator = leaf_path
        snap, cols = self.snapshot, self._cols[model.kind]
        k = self.params.reasons_per_client + CANDIDATE_SPARE
        threads = getattr(model, "num_threads", 1)
        for start in range(0, rows.shape[0], CHUNK_ROWS):
            part = rows[start : start + CHUNK_ROWS]
            leaves = explainer.leaves(model.booster, snap.matrix[np.ix_(part, cols)], num_threads=threads)
            p = np.asarray(calibrator(explainer.raw_scores(leaves)), dtype=np.float64)
            _check_probabilities(model, p)
            target[start : start + part.shape[0]] = p
            if listed_only:
                _, campaign, _ = assign_campaigns(snap.plan, part, p)
                sel = np.flatnonzero(campaign != NO_CAMPAIGN)
            else:
                sel = np.arange(part.shape[0])
            if sel.size == 0:
                continue
            top = explainer.top_features(explainer.contributions_from_leaves(leaves[sel]), k)
            phrases = self._words(model.kind, part[sel], top)
            for i, row_phrases in zip((start + sel).tolist(), phrases, strict=True):
                words[i] = row_phrases

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
        words: list[list[str]] = [[] for _ in range(n)]
        explained: set[str] = set()  # models whose rows got their reasons with their probabilities
        for model, target in ((self.churn, churn_p), (self.winback, winback_p)):
            pos = np.flatnonzero(kind == model.kind)
            if pos.size == 0:
                continue
            if reasons != "none" and self._leaf_path(model) is not None:
                got = np.full(pos.size, np.nan)
                model_words: list[list[str]] = [[] for _ in range(pos.size)]
                self._score_through_leaves(model, rows[pos], got, model_words, reasons == "listed")
                target[pos] = got
                for i, row_words in zip(pos.tolist(), model_words, strict=True):
                    words[i] = row_words
                explained.add(model.kind)
                continue
            X = snap.matrix[np.ix_(rows[pos], self._cols[model.kind])]
            p = np.asarray(model.predict_probability(X), dtype=np.float64)
            _check_probabilities(model, p)
            target[pos] = p
        probability = np.where(kind == "churn", churn_p, winback_p)
        priority, campaign, excluded = assign_campaigns(snap.plan, rows, probability)
        if reasons != "none":
            for model in (self.churn, self.winback):
                if model.kind in explained:
                    continue
                wanted = kind == model.kind
                if reasons == "listed":
                    wanted &= campaign != "none"
                pos = np.flatnonzero(wanted)
                if pos.size == 0:
                    continue
                X = snap.matrix[np.ix_(rows[pos], self._cols[model.kind])]
                phrases = self._words(model.kind, rows[pos], self._top_features(model, X))
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

    def score_one(self, row: int) -> dict[str, Any]:
        """The answer for one row as a JSON-ready dict, with reasons (the API's single-client route).

        Equal to ``to_records(self, self.score([row], reasons="all"))[0]``, field for field and
        number for number (tests/api checks it on every client of the sample, and every reload
        checks it on a canary batch): the raw score comes from the same trees through LightGBM's
        single-row API; the calibrator, the path attribution and the record builder are the ones
        :meth:`score` uses; the campaign rules are :func:`assign_campaign_one`, the scalar twin of
        the batch's :func:`assign_campaigns` (numpy's per-call overhead on 1-element arrays cost
        more than the rules themselves).
        """
        snap = self.snapshot
        kind = str(snap.plan.model_kind[row])
        fast = self._row_predictors.get(kind)
        if fast is None:  # no model applies, or no fast path for this model: the general path
            return to_records(self, self.score(np.array([row], dtype=np.int64), reasons="all"))[0]
        predictor, calibrator = fast
        model = self.churn if kind == self.churn.kind else self.winback
        x = snap.matrix[row, self._cols[kind]]
        raw, leaves = predictor.raw_score_and_leaves(x)
        p = np.asarray(calibrator(np.array([raw], dtype=np.float64)), dtype=np.float64)
        if not 0.0 <= float(p[0]) <= 1.0:  # NaN fails too, as in _check_probabilities
            _check_probabilities(model, p)
        probability = float(p[0])
        plan = snap.plan
        priority, campaign, excluded = assign_campaign_one(plan, row, probability)
        explainer = self._explainers[kind]
        k = self.params.reasons_per_client + CANDIDATE_SPARE
        top = explainer.top_features(explainer.row_contributions(leaves)[None, :], k)[0]
        words = self._reasons[kind].render_columns(
            top, snap.matrix[row].tolist(), self.params.reasons_per_client
        )
        return _record(
            snap.client_ids[row],
            snap.state[row],
            kind,
            probability if kind == "churn" else math.nan,
            probability if kind == "winback" else math.nan,
            plan.value[row],
            plan.value_class[row],
            campaign,
            priority,
            plan.offer[row],
            plan.offer_cost[row],
            excluded,
            plan.tier[row],
            [name for name in FLAG_NAMES if getattr(plan, name)[row]],
            plan.avoid_manager_id[row],
            plan.suggested_manager_id[row],
            words,
            cutoff=snap.cutoff_at.isoformat(),
            versions=self.model_versions,
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


def _check_probabilities(model: ScoringModel, p: np.ndarray) -> None:
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError(f"model {model.name} v{model.version} returned probabilities outside [0, 1]")


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


def to_records(scorer: Scorer, scored: ScoredRows) -> list[dict[str, Any]]:
    """The core's answer as one JSON-ready dict per scored row (the API's ClientScore).

    Carries no personal data beyond the client id: state, numbers, offers, flags, manager ids
    (staff, not client data) and reasons in words. Columns are gathered with numpy and turned into
    Python lists once, so the per-row work is only building the dict.
    """
    snap, plan = scorer.snapshot, scorer.snapshot.plan
    rows = scored.rows
    kinds = plan.model_kind[rows].tolist()
    cutoff = snap.cutoff_at.isoformat()
    versions = scored.model_versions
    columns = zip(
        snap.client_ids[rows].tolist(),
        snap.state[rows].tolist(),
        kinds,
        scored.churn_probability.tolist(),
        scored.winback_probability.tolist(),
        plan.value[rows].tolist(),
        plan.value_class[rows].tolist(),
        scored.campaign.tolist(),
        scored.priority.tolist(),
        plan.offer[rows].tolist(),
        plan.offer_cost[rows].tolist(),
        scored.excluded_reason.tolist(),
        plan.tier[rows].tolist(),
        flag_lists(plan, rows),
        plan.avoid_manager_id[rows].tolist(),
        plan.suggested_manager_id[rows].tolist(),
        scored.reasons,
        strict=True,
    )
    return [_record(*fields, cutoff=cutoff, versions=versions) for fields in columns]


def _record(
    client_id: str,
    state: str,
    kind: str,
    churn_p: float,
    winback_p: float,
    value: float,
    value_class: str,
    campaign: str,
    priority: float,
    offer: str,
    offer_cost: float,
    excluded: str,
    tier: str | None,
    flags: list[str],
    avoid: str | None,
    suggested: str | None,
    reasons: list[str],
    *,
    cutoff: str,
    versions: dict[str, str],
) -> dict[str, Any]:
    """One client's answer as a JSON-ready dict (plain Python values; NaN and "" become None)."""
    return {
        "client_id": client_id,
        "cutoff_at": cutoff,
        "state": state,
        "model": kind or None,
        "churn_probability": _num(churn_p),
        "winback_probability": _num(winback_p),
        "value": float(value),
        "value_class": value_class,
        "campaign": campaign,
        "priority": _num(priority),
        "offer": _text(offer) if kind else None,
        "offer_cost": float(offer_cost) if kind else None,
        "excluded_reason": _text(excluded),
        "tier": _text(tier),
        "flags": flags,
        "avoid_manager_id": _text(avoid),
        "suggested_manager_id": _text(suggested),
        "reasons": reasons,
        "model_version": versions.get(kind) if kind else None,
    }


def _num(x: float) -> float | None:
    return None if x != x else float(x)


def _text(x: object) -> str | None:
    return None if x is None or x == "" or x != x else str(x)
