"""Fast per-client feature contributions for reasons: path attribution on the native LightGBM trees.

LightGBM's exact TreeSHAP (``pred_contrib``) costs about 0.5 ms per client for the sample models
on this machine (leaf-wise trees are deep, and TreeSHAP is O(trees x leaves x depth^2)), so reasons
for a million-client batch would take minutes. Path attribution (Saabas; "treeinterpreter") gives
each split on the client's path the change in the node's expected raw score to the feature it
splits on. Precomputed once per leaf, it costs one ``pred_leaf`` call plus a table lookup per
tree: about 100x cheaper. Like TreeSHAP, the contributions plus the bias sum exactly to the raw
score (log-odds), and a positive contribution raises the probability of the event; unlike
TreeSHAP it is not consistent in the Shapley sense (splits near the root weigh more).

``score.reason_method: shap`` switches serving back to the models' ``top_reasons``
(``pred_contrib``) for both the batch and the API.

:class:`RowPredictor` is the single-client fast path: one row through LightGBM's single-row C API
for the raw score and the leaf indices (a few µs each, against about 45 µs for ``booster.predict``
on one row, most of it Python-side set-up repeated on every call).
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

CHUNK_ROWS = 65536
SMALL_ROWS = 64
BLOCK_ROWS = 2048  # rows accumulated together: (BLOCK_ROWS, num_features) float64 stays in cache


@dataclass(frozen=True)
class PathExplainer:
    """Per-tree tables: ``tables[t][leaf]`` is the contribution vector of a row ending in ``leaf``.

    ``leaf_values[t][leaf]`` is the tree's output there, so a row's raw score is the sum over trees
    of its leaves' values, added tree by tree as LightGBM adds them. ``raw_from_leaves`` says whether
    that sum reproduced ``booster.predict(raw_score=True)`` exactly on probe rows (it does for
    constant-leaf trees; not for linear trees), in which case one ``pred_leaf`` pass gives both the
    probabilities and the reasons of a batch.
    """

    feature_names: tuple[str, ...]
    tables: tuple[np.ndarray, ...]  # one (num_leaves, num_features) float64 array per tree
    bias: float  # sum of the root expected values (raw score units)
    leaf_values: tuple[np.ndarray, ...] = ()  # one (num_leaves,) float64 array per tree
    raw_from_leaves: bool = False

    @classmethod
    def from_booster(cls, booster: Any, feature_names: list[str]) -> PathExplainer:
        """Build the leaf tables from ``booster.dump_model()`` (a lightgbm.Booster)."""
        dump = booster.dump_model()
        names = list(dump.get("feature_names") or feature_names)
        n_features = len(names)
        tables: list[np.ndarray] = []
        leaf_values: list[np.ndarray] = []
        bias = 0.0
        for tree in dump["tree_info"]:
            table = np.zeros((int(tree["num_leaves"]), n_features), dtype=np.float64)
            values = np.zeros(int(tree["num_leaves"]), dtype=np.float64)
            leaf_values.append(values)
            root = tree["tree_structure"]
            if "leaf_value" in root and "split_feature" not in root:
                bias += float(root["leaf_value"])
                values[0] = float(root["leaf_value"])
                tables.append(table)
                continue
            bias += float(root["internal_value"])
            # Depth-first walk carrying the contribution vector of the path so far (sparse dict).
            stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
            while stack:
                node, path = stack.pop()
                if "split_feature" not in node:
                    leaf = int(node.get("leaf_index", 0))
                    values[leaf] = float(node["leaf_value"])
                    row = table[leaf]
                    for f, c in path.items():
                        row[f] = c
                    continue
                f = int(node["split_feature"])
                parent = float(node["internal_value"])
                for side in ("left_child", "right_child"):
                    child = node[side]
                    value = float(
                        child["leaf_value"] if "split_feature" not in child else child["internal_value"]
                    )
                    nxt = dict(path)
                    nxt[f] = nxt.get(f, 0.0) + value - parent
                    stack.append((child, nxt))
            tables.append(table)
        explainer = cls(
            feature_names=tuple(names), tables=tuple(tables), bias=bias, leaf_values=tuple(leaf_values)
        )
        exact = explainer._raw_matches(booster, dump)
        return dataclasses.replace(explainer, raw_from_leaves=exact)

    def _raw_matches(self, booster: Any, dump: dict[str, Any]) -> bool:
        """Whether leaf-value sums equal ``booster.predict(raw_score=True)`` bit for bit on probe
        rows whose values sit on both sides of every split threshold, and NaN."""
        n_features = len(self.feature_names)
        if not self.tables or n_features == 0:
            return False
        cuts: list[list[float]] = [[] for _ in range(n_features)]
        for tree in dump["tree_info"]:
            stack = [tree["tree_structure"]]
            while stack:
                node = stack.pop()
                if "split_feature" in node:
                    threshold = node.get("threshold")
                    if isinstance(threshold, int | float):
                        cuts[int(node["split_feature"])].append(float(threshold))
                    stack += [node["left_child"], node["right_child"]]
        rng = np.random.default_rng(0)
        probe = np.empty((256, n_features), dtype=np.float64)
        for f in range(n_features):
            options = np.array([*cuts[f], *(c + 1e-6 for c in cuts[f]), *(c - 1e-6 for c in cuts[f])])
            probe[:, f] = rng.choice(options, 256) if options.size else 0.0
        probe[rng.random(probe.shape) < 0.1] = np.nan
        want = np.asarray(booster.predict(probe, raw_score=True, num_threads=1), dtype=np.float64)
        got = self.raw_scores(self.leaves(booster, probe))
        return bool(np.array_equal(got, want))

    def leaves(self, booster: Any, X: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
        """(n, num_trees) leaf index of each row of ``X`` in each tree (int32)."""
        out = booster.predict(np.asarray(X, dtype=np.float64), pred_leaf=True, num_threads=num_threads)
        return np.asarray(out).astype(np.int32).reshape(X.shape[0], -1)

    def raw_scores(self, leaves: np.ndarray) -> np.ndarray:
        """(n,) raw scores from leaf indices: leaf values added tree by tree, from 0.0, in tree
        order (LightGBM's own order, so the sums are its numbers when ``raw_from_leaves``)."""
        out = np.zeros(leaves.shape[0], dtype=np.float64)
        for t, values in enumerate(self.leaf_values):
            out += values[leaves[:, t]]
        return out

    def contributions(self, booster: Any, X: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
        """(n, num_features) raw-score contributions of each input column for each row of ``X``."""
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((X.shape[0], len(self.feature_names)), dtype=np.float64)
        if X.shape[0] == 0 or not self.tables:
            return out
        for start in range(0, X.shape[0], CHUNK_ROWS):
            chunk = X[start : start + CHUNK_ROWS]
            out[start : start + chunk.shape[0]] = self.contributions_from_leaves(
                self.leaves(booster, chunk, num_threads=num_threads)
            )
        return out

    def contributions_from_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """(n, num_features) contributions from the leaf indices of n rows (see :meth:`leaves`).

        Each row's contributions are added tree by tree in tree order, whatever n is, so a client
        gets the same numbers alone (the API) as in a batch.
        """
        n = leaves.shape[0]
        out = np.zeros((n, len(self.feature_names)), dtype=np.float64)
        if n == 0 or not self.tables:
            return out
        if n <= SMALL_ROWS:
            # Few rows (the API): one gather over all trees beats a Python loop over them.
            flat, offsets = self._flat
            out += flat[leaves + offsets].sum(axis=1)
            return out
        # Blocks of rows, so the accumulator stays in cache across the trees.
        for start in range(0, n, BLOCK_ROWS):
            acc = out[start : start + BLOCK_ROWS]
            block = leaves[start : start + BLOCK_ROWS]
            for t, table in enumerate(self.tables):
                acc += table[block[:, t]]
        return out

    def row_contributions(self, leaves: np.ndarray) -> np.ndarray:
        """(num_features,) contributions of one row from its leaf index in every tree (tree order).

        Summed tree by tree in the same order as :meth:`contributions`, so the numbers are the same.
        """
        flat, offsets = self._flat
        return np.asarray(flat[leaves + offsets].sum(axis=0))

    @cached_property
    def _flat(self) -> tuple[np.ndarray, np.ndarray]:
        """All leaf tables stacked, and each tree's first row in the stack."""
        sizes = np.array([t.shape[0] for t in self.tables], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return np.vstack(self.tables), offsets

    def top_features(self, contributions: np.ndarray, k: int) -> list[list[int]]:
        """Per row the column indices of the k largest positive contributions, largest first."""
        n, f = contributions.shape
        if n == 0 or k <= 0:
            return [[] for _ in range(n)]
        kk = min(k, f)
        if n == 1:  # the API's single client: the same sort on a 1-d row, without the 2-d set-up
            row = contributions[0]
            cols = np.argsort(-row, kind="stable")[:kk].tolist()
            return [[c for c in cols if row[c] > 0]]
        # A full stable sort per row: ties go to the earlier input column, whatever the batch size.
        top = np.argsort(-contributions, axis=1, kind="stable")[:, :kk]
        # sorted largest first, so a row's positive contributions are a prefix of its columns
        positive = (np.take_along_axis(contributions, top, axis=1) > 0).sum(axis=1)
        return [cols[:n] for cols, n in zip(top.tolist(), positive.tolist(), strict=True)]


# LightGBM C API constants (include/LightGBM/c_api.h).
_PREDICT_RAW_SCORE = 1
_PREDICT_LEAF_INDEX = 2
_DTYPE_FLOAT64 = 1


class RowPredictor:
    """Raw score and leaf indices of one row through ``LGBM_BoosterPredictForMatSingleRowFast``.

    ``booster.predict`` on a single row costs about 45 µs, nearly all of it Python-side set-up
    (parameter strings, input checks, a new predictor object) repeated on every call. The fast C API
    binds the configuration once (one thread, the booster's ``best_iteration`` as
    ``booster.predict`` uses it) and then costs a couple of µs per row. It runs the same trees in
    the same order as ``booster.predict``, so the raw score is the same number; the constructor
    checks that on a probe row and refuses the booster otherwise.

    Calls are serialised by a lock (the input and output buffers are reused); LightGBM itself also
    locks the booster for single-row predictions.
    """

    def __init__(self, booster: Any, n_features: int) -> None:
        from lightgbm.basic import _LIB, _safe_call  # the C library lightgbm already loaded

        self._booster = booster  # the FastConfig handles point into it: keep it alive
        self._safe_call = _safe_call
        self.n_features = n_features
        self.n_trees = int(booster.num_trees())
        self._lock = threading.Lock()
        self._x = np.zeros(n_features, dtype=np.float64)
        self._raw = np.zeros(1, dtype=np.float64)
        self._leaves = np.zeros(max(1, self.n_trees), dtype=np.float64)
        self._out_len = ctypes.c_int64()
        self._x_ptr = self._x.ctypes.data_as(ctypes.c_void_p)
        self._raw_ptr = self._raw.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._leaves_ptr = self._leaves.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        num_iteration = int(getattr(booster, "best_iteration", -1) or -1)
        handles = []
        for predict_type in (_PREDICT_RAW_SCORE, _PREDICT_LEAF_INDEX):
            handle = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    booster._handle,
                    ctypes.c_int(predict_type),
                    ctypes.c_int(0),
                    ctypes.c_int(num_iteration),
                    ctypes.c_int(_DTYPE_FLOAT64),
                    ctypes.c_int32(n_features),
                    ctypes.c_char_p(b"num_threads=1"),
                    ctypes.byref(handle),
                )
            )
            handles.append(handle)
        self._raw_handle, self._leaf_handle = handles
        weakref.finalize(self, _free_fast_configs, _LIB, tuple(handles))
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._check_against(booster)

    def _call(self, handle: ctypes.c_void_p, out: Any, expected: int) -> None:
        self._safe_call(self._predict(handle, self._x_ptr, ctypes.byref(self._out_len), out))
        if self._out_len.value != expected:
            raise RuntimeError(f"single-row prediction: {self._out_len.value} values, expected {expected}")

    def raw_score(self, x: np.ndarray) -> float:
        """Raw score (log-odds) of one row ``x`` (n_features float64 values in the model's order)."""
        with self._lock:
            self._x[:] = x
            self._call(self._raw_handle, self._raw_ptr, 1)
            return float(self._raw[0])

    def raw_score_and_leaves(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Raw score and the leaf index of ``x`` in every tree (int64, tree order)."""
        with self._lock:
            self._x[:] = x
            self._call(self._raw_handle, self._raw_ptr, 1)
            self._call(self._leaf_handle, self._leaves_ptr, self.n_trees)
            return float(self._raw[0]), self._leaves.astype(np.int64)

    def _check_against(self, booster: Any) -> None:
        probe = np.linspace(-1.0, 1000.0, self.n_features)
        probe[::3] = np.nan
        raw, leaves = self.raw_score_and_leaves(probe)
        want_raw = float(booster.predict(probe[None, :], raw_score=True, num_threads=1)[0])
        want_leaves = np.asarray(booster.predict(probe[None, :], pred_leaf=True, num_threads=1)).reshape(-1)
        if raw != want_raw or not np.array_equal(leaves, want_leaves):
            raise RuntimeError(
                "LightGBM's single-row API disagrees with booster.predict on a probe row "
                f"(raw {raw!r} vs {want_raw!r}): not serving single rows through it"
            )


def _free_fast_configs(lib: Any, handles: tuple[ctypes.c_void_p, ...]) -> None:
    for handle in handles:
        lib.LGBM_FastConfigFree(handle)
