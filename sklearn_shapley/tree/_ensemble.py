"""Turning fitted tree ensembles into a :class:`~._flat.FlatEnsemble`.

:func:`flatten_ensemble` dispatches on the model type to one reader per library:
:mod:`._sklearn` (trees, forests, gradient boosting, histogram gradient boosting and
isolation forests), :mod:`._xgboost` and :mod:`._lightgbm`. Every reader reproduces
the model's *raw* output (margin / decision function / probability for sklearn
forests) exactly under the decision rule of :mod:`sklearn_shapley.tree._flat`, whose
:func:`~._flat.predict_raw` serves as the oracle for the readers. This module holds
what the readers share: :class:`_Assembler`, which collects their trees into flat
arrays.

Two conventions used by several readers:

- Categorical splits whose "other" categories (unlisted, unknown, negative or out of
  range) follow the *left* branch of the original model are stored with their
  children swapped, so that the bitset lists the categories of the (original) right
  branch and every category outside the bitset goes right, as the contract requires.
  Swapping children changes neither the function nor the covers.
- Covers are sanitised so that ``0 < cover[child] <= cover[parent]``: a child with
  zero (or non-finite) cover gets ``1e-9`` times its parent's cover, two such siblings
  share the parent's cover equally, and float noise above the parent is clipped.
"""

from __future__ import annotations

import numpy as np

from ._flat import CATEGORICAL_SPLIT, NUMERIC_SPLIT, FlatEnsemble

__all__ = ["SUPPORTED_MODELS", "flatten_ensemble"]

SUPPORTED_MODELS = [
    "sklearn.tree.DecisionTreeRegressor",
    "sklearn.tree.DecisionTreeClassifier",
    "sklearn.tree.ExtraTreeRegressor",
    "sklearn.tree.ExtraTreeClassifier",
    "sklearn.ensemble.RandomForestRegressor",
    "sklearn.ensemble.RandomForestClassifier",
    "sklearn.ensemble.ExtraTreesRegressor",
    "sklearn.ensemble.ExtraTreesClassifier",
    "sklearn.ensemble.GradientBoostingRegressor",
    "sklearn.ensemble.GradientBoostingClassifier",
    "sklearn.ensemble.HistGradientBoostingRegressor",
    "sklearn.ensemble.HistGradientBoostingClassifier",
    "sklearn.ensemble.IsolationForest",
    "xgboost.Booster",
    "xgboost.XGBRegressor",
    "xgboost.XGBClassifier",
    "xgboost.XGBRanker",
    "xgboost.XGBRFRegressor",
    "xgboost.XGBRFClassifier",
    "lightgbm.Booster",
    "lightgbm.LGBMRegressor",
    "lightgbm.LGBMClassifier",
    "lightgbm.LGBMRanker",
]

_TINY_COVER = 1e-9


# --------------------------------------------------------------------------------------
# Assembling trees into a FlatEnsemble
# --------------------------------------------------------------------------------------


def _bitset_from_categories(categories):
    """Return the uint32 words whose set bits are the non-negative ``categories``."""
    cats = np.asarray(categories, dtype=np.int64).ravel()
    cats = cats[cats >= 0]
    if cats.size == 0:
        return np.zeros(0, dtype=np.uint32)
    words = np.zeros(int(cats.max()) // 32 + 1, dtype=np.uint32)
    bits = np.left_shift(np.uint32(1), (cats % 32).astype(np.uint32))
    np.bitwise_or.at(words, cats // 32, bits)
    return words


def _categories_from_bitset(words):
    """Return the sorted categories whose bits are set in the uint32 ``words``."""
    words = np.ascontiguousarray(words, dtype="<u4")
    return np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little"))


class _Assembler:
    """Collect trees (local node indices) and concatenate them into flat arrays."""

    def __init__(self, n_outputs):
        self.n_outputs = int(n_outputs)
        self.trees = []
        self.groups = []

    def add(
        self,
        left,
        right,
        feature,
        threshold,
        missing_left,
        cover,
        value,
        group=-1,
        cat_nodes=None,
        split_kind=None,
    ):
        """Add one tree.

        ``left``/``right`` hold local child indices (-1 at leaves), root at 0;
        ``value`` is ``(n_nodes, n_outputs)`` or, for ``group >= 0``, the
        ``(n_nodes,)`` leaf values of that output. ``cat_nodes`` maps a local node
        index to the categories that go left there. Nodes unreachable from the root
        (xgboost keeps pruned nodes) are dropped, and the nodes are renumbered in
        breadth-first order if a child does not come after its parent.
        """
        left = np.asarray(left, dtype=np.int64)
        n = left.shape[0]
        is_leaf = left < 0
        left = np.where(is_leaf, -1, left)
        right = np.where(is_leaf, -1, np.asarray(right, dtype=np.int64))
        value = np.asarray(value, dtype=np.float64)
        if group >= 0 and value.ndim == 1:
            full = np.zeros((n, self.n_outputs))
            full[:, group] = value
            value = full
        if split_kind is None:
            split_kind = np.full(n, NUMERIC_SPLIT, dtype=np.uint8)
        kind = np.where(is_leaf, NUMERIC_SPLIT, split_kind).astype(np.uint8)
        is_cat = np.zeros(n, dtype=bool)
        is_cat[list(cat_nodes or {})] = True
        arrays = {
            "left": left,
            "right": right,
            "feature": np.where(is_leaf, -1, np.asarray(feature, dtype=np.int64)),
            "threshold": np.where(is_leaf, 0.0, np.asarray(threshold, np.float64)),
            "missing_left": (~is_leaf & np.asarray(missing_left, dtype=bool)).astype(
                np.uint8
            ),
            "split_kind": np.where(is_cat, CATEGORICAL_SPLIT, kind).astype(np.uint8),
            "cover": np.asarray(cover, dtype=np.float64),
            "value": np.where(is_leaf[:, None], value.reshape(n, self.n_outputs), 0.0),
        }
        cats = dict(cat_nodes or {})
        order = _canonical_order(left, right)
        if order is not None:
            new_index = np.full(n, -1, dtype=np.int64)
            new_index[order] = np.arange(order.size)
            arrays = {key: arr[order] for key, arr in arrays.items()}
            for key in ("left", "right"):
                child = arrays[key]
                arrays[key] = np.where(child >= 0, new_index[child], -1)
            cats = {int(new_index[k]): v for k, v in cats.items() if new_index[k] >= 0}
        m = arrays["left"].shape[0]
        arrays["cat_start"] = np.zeros(m, dtype=np.int64)
        arrays["cat_len"] = np.zeros(m, dtype=np.int64)
        words = []
        n_words = 0
        for node in sorted(cats):
            bits = _bitset_from_categories(cats[node])
            arrays["cat_start"][node] = n_words
            arrays["cat_len"][node] = bits.size
            words.append(bits)
            n_words += bits.size
        arrays["cat_bitsets"] = (
            np.concatenate(words) if words else np.zeros(0, dtype=np.uint32)
        )
        self.trees.append(arrays)
        self.groups.append(int(group))

    def build(
        self,
        base_offset,
        n_features,
        decision_dtype,
        output_names,
        model_type,
        category_values=None,
        **fields,
    ) -> FlatEnsemble:
        """Concatenate the trees (global indices) and sanitise the covers;
        ``fields`` are further :class:`FlatEnsemble` fields (the input mappings)."""
        sizes = np.array([t["left"].shape[0] for t in self.trees], dtype=np.int64)
        offsets = np.zeros(len(self.trees) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        word_sizes = [t["cat_bitsets"].shape[0] for t in self.trees]
        word_offsets = np.concatenate([[0], np.cumsum(word_sizes)]).astype(np.int64)

        def cat(key, dtype, shift=None, keep_negative=False):
            parts = []
            for i, tree in enumerate(self.trees):
                arr = tree[key]
                if shift is not None:
                    moved = arr + shift[i]
                    arr = np.where(arr >= 0, moved, arr) if keep_negative else moved
                parts.append(arr)
            if not parts:
                shape = (0, self.n_outputs) if key == "value" else (0,)
                return np.zeros(shape, dtype=dtype)
            return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)

        left = cat("left", np.int64, offsets, keep_negative=True)
        right = cat("right", np.int64, offsets, keep_negative=True)
        cover = _sanitize_cover(cat("cover", np.float64), left, right, offsets[:-1])
        base = np.broadcast_to(
            np.asarray(base_offset, dtype=np.float64).ravel(), (self.n_outputs,)
        )
        return FlatEnsemble(
            tree_offsets=offsets,
            children_left=left,
            children_right=right,
            feature=cat("feature", np.int64),
            threshold=cat("threshold", np.float64),
            missing_left=cat("missing_left", np.uint8),
            split_kind=cat("split_kind", np.uint8),
            cat_start=cat("cat_start", np.int64, word_offsets),
            cat_len=cat("cat_len", np.int64),
            cat_bitsets=cat("cat_bitsets", np.uint32),
            cover=cover,
            value=cat("value", np.float64),
            tree_group=np.ascontiguousarray(self.groups, dtype=np.int64),
            base_offset=np.ascontiguousarray(base, dtype=np.float64),
            n_features=int(n_features),
            decision_dtype=decision_dtype,
            output_names=[str(name) for name in output_names],
            model_type=model_type,
            category_values=category_values or {},
            **fields,
        )


def _canonical_order(left, right):
    """Breadth-first order of the nodes reachable from root 0, or None if the tree
    already has every node reachable and every child after its parent."""
    n = left.shape[0]
    internal = np.flatnonzero(left >= 0)
    if np.all(left[internal] > internal) and np.all(right[internal] > internal):
        parents = np.bincount(
            np.concatenate([left[internal], right[internal]]), minlength=n
        )
        if parents[0] == 0 and np.all(parents[1:] == 1):
            return None
    order = []
    seen = np.zeros(n, dtype=bool)
    frontier = np.array([0], dtype=np.int64)
    while frontier.size:
        if np.any(seen[frontier]):
            raise ValueError("The tree's child arrays do not form a tree.")
        seen[frontier] = True
        order.append(frontier)
        frontier = frontier[left[frontier] >= 0]
        frontier = np.column_stack([left[frontier], right[frontier]]).ravel()
    return np.concatenate(order)


def _sanitize_cover(cover, left, right, roots):
    """Make covers positive and monotone (``0 < child <= parent``), level by level."""
    cover = np.where(np.isfinite(cover) & (cover > 0), cover, 0.0)
    if roots.size == 0:
        return np.ascontiguousarray(cover)
    cover[roots] = np.where(cover[roots] > 0, cover[roots], 1.0)
    frontier = roots[left[roots] >= 0]
    while frontier.size:
        parent = cover[frontier]
        lc, rc = left[frontier], right[frontier]
        cl = np.minimum(cover[lc], parent)
        cr = np.minimum(cover[rc], parent)
        both = (cl <= 0) & (cr <= 0)
        cl = np.where(both, 0.5 * parent, np.where(cl > 0, cl, _TINY_COVER * parent))
        cr = np.where(both, 0.5 * parent, np.where(cr > 0, cr, _TINY_COVER * parent))
        cover[lc] = cl
        cover[rc] = cr
        nxt = np.concatenate([lc, rc])
        frontier = nxt[left[nxt] >= 0]
    return np.ascontiguousarray(cover)


# --------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------


def _unsupported(model):
    return TypeError(
        f"Cannot read a tree ensemble from {type(model).__module__}."
        f"{type(model).__qualname__}. Supported models: "
        + ", ".join(SUPPORTED_MODELS)
        + "."
    )


def is_xgboost(model):
    """Whether ``model`` is an XGBoost ``Booster`` or scikit-learn-API model (without
    importing xgboost)."""
    import sys

    xgb = sys.modules.get("xgboost")
    return xgb is not None and isinstance(
        model, (getattr(xgb, "Booster", ()), getattr(xgb, "XGBModel", ()))
    )


def flatten_ensemble(model, *, missing=None, probe=None) -> FlatEnsemble:
    """Read a fitted tree ensemble into a :class:`FlatEnsemble`.

    Parameters
    ----------
    model : estimator or booster
        A fitted model of one of the types in :data:`SUPPORTED_MODELS` (subclasses
        are accepted). Pipelines and ``FrozenEstimator`` must be unwrapped by the
        caller.
    missing : float or None, default=None
        XGBoost only: the value that marks a missing entry besides NaN, as given to
        ``xgboost.DMatrix(..., missing=...)`` (a bare ``Booster`` does not record
        it; the scikit-learn API models use their own ``missing``).
    probe : tuple of (ndarray, ndarray) or None, default=None
        XGBoost only (ignored for the others): ``(rows, margins)``, the model's
        margin on a few rows, which lets a model read before from the same booster
        be found without hashing its bytes (see
        :func:`~sklearn_shapley.tree._xgboost.read_xgboost`).

    Returns
    -------
    flat : FlatEnsemble
        The ensemble; ``predict_raw(flat, X)`` equals the model's raw output: class
        probabilities for sklearn trees and forests, ``decision_function`` for
        (hist) gradient boosting classifiers, the margin
        (``output_margin=True`` / ``raw_score=True``) for XGBoost and LightGBM, the
        prediction for regressors and the mean path length for ``IsolationForest``.

    Raises
    ------
    TypeError
        If the model is not a supported tree ensemble.
    ValueError
        If ``missing`` is given for a model other than XGBoost's, or differs from an
        XGBoost scikit-learn model's own.
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    NotImplementedError
        For supported types with a feature the flat form cannot express exactly
        (e.g. non-constant ``init`` estimators, linear trees, a LightGBM split that
        sends zero and NaN to different sides on a feature other splits treat as
        zero-as-missing).
    """
    import sys

    from ._sklearn import read_sklearn

    if is_xgboost(model):
        from ._xgboost import read_xgboost

        return read_xgboost(model, missing, probe=probe)
    lgb = sys.modules.get("lightgbm")
    if lgb is not None and isinstance(
        model, (getattr(lgb, "Booster", ()), getattr(lgb, "LGBMModel", ()))
    ):
        from ._lightgbm import read_lightgbm

        flat = read_lightgbm(model)
    else:
        flat = read_sklearn(model)
    if missing is not None:
        raise ValueError(
            f"missing={missing!r} is for XGBoost models (the value their DMatrix "
            f"treats as missing); {type(model).__name__} has its own rule for "
            "missing values: leave missing=None."
        )
    return flat


def _model_type(model):
    return f"{type(model).__module__.split('.')[0]}.{type(model).__name__}"
