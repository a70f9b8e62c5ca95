"""Readers that turn fitted tree ensembles into a :class:`FlatEnsemble`.

:func:`flatten_ensemble` dispatches on the model type to one reader per family
(scikit-learn trees, forests, gradient boosting, histogram gradient boosting and
isolation forests; XGBoost; LightGBM). Every reader reproduces the model's *raw*
output (margin / decision function / probability for sklearn forests) exactly under
the decision rule of :mod:`sklearn_shapley.tree._flat`; :func:`predict_raw` is a
vectorised numpy implementation of that rule and serves as the oracle for the
readers.

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

import json
import math

import numpy as np

from . import _flat
from ._flat import (
    CATEGORICAL_SPLIT,
    NUMERIC_SPLIT,
    FlatEnsemble,
    encode_categories,
)

__all__ = [
    "SUPPORTED_MODELS",
    "flatten_ensemble",
    "predict_raw",
    "read_lightgbm",
    "read_sklearn_forest",
    "read_sklearn_gradient_boosting",
    "read_sklearn_hist_gradient_boosting",
    "read_sklearn_isolation_forest",
    "read_sklearn_tree",
    "read_xgboost",
]

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
# LightGBM's kZeroThreshold (a float32 constant compared in double precision).
_LGBM_ZERO = float(np.float32(1e-35))


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
    ) -> FlatEnsemble:
        """Concatenate the trees (global indices) and sanitise the covers."""
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
# Reference prediction (the oracle)
# --------------------------------------------------------------------------------------


def predict_raw(flat: FlatEnsemble, X, *, chunk_size: int = 4096) -> np.ndarray:
    """Raw output of a flat ensemble, following the contract's decision rule exactly.

    Vectorised over rows and trees, looping over depth. ``X`` is cast to
    ``flat.decision_dtype`` first, as the model itself does.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble, as returned by :func:`flatten_ensemble`.
    X : array-like of shape (n_samples, n_features)
        Numeric input; NaN marks a missing value, categorical features hold the
        model's category values.
    chunk_size : int, default=4096
        Number of rows processed at once (bounds the memory use).

    Returns
    -------
    raw : ndarray of shape (n_samples, n_outputs)
        ``base_offset`` plus the sum over trees of the reached leaf values.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    if X.shape[1] < flat.n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, the ensemble uses {flat.n_features}."
        )
    X = encode_categories(flat, X).astype(flat.decision_dtype).astype(np.float64)
    out = np.empty((X.shape[0], flat.n_outputs), dtype=np.float64)
    for start in range(0, X.shape[0], chunk_size):
        out[start : start + chunk_size] = _predict_chunk(
            flat, X[start : start + chunk_size]
        )
    return out


def goes_left(flat, nodes, x):
    """Whether the values ``x`` (already in ``flat.decision_dtype``'s precision) go
    left at the internal nodes ``nodes`` (same shape), by the decision rule of
    :mod:`sklearn_shapley.tree._flat`."""
    go_left = x <= flat.threshold[nodes]
    is_cat = flat.split_kind[nodes] == CATEGORICAL_SPLIT
    if is_cat.any():
        xc = np.trunc(x[is_cat])
        ln = flat.cat_len[nodes[is_cat]]
        ok = (xc >= 0) & (xc < 32 * ln)
        code = np.where(ok, xc, 0).astype(np.int64)
        idx = np.where(ok, flat.cat_start[nodes[is_cat]] + code // 32, 0)
        words = flat.cat_bitsets
        word = words[idx] if words.size else np.zeros(idx.shape, np.uint32)
        bit = (word.astype(np.int64) >> (code % 32)) & 1
        go_left[is_cat] = ok & (bit == 1)
    missing = np.isnan(x)
    zero_kind = getattr(_flat, "ZERO_MISSING_SPLIT", None)
    if zero_kind is not None:
        missing |= (flat.split_kind[nodes] == zero_kind) & (np.abs(x) <= _LGBM_ZERO)
    go_left[missing] = flat.missing_left[nodes[missing]] == 1
    return go_left


def _predict_chunk(flat, X):
    n = X.shape[0]
    roots = flat.tree_offsets[:-1]
    node = np.repeat(roots[None, :], n, axis=0)
    left, right = flat.children_left, flat.children_right
    active = np.flatnonzero(left[node.ravel()] >= 0)
    flat_node = node.ravel()
    rows = np.repeat(np.arange(n), len(roots))
    while active.size:
        nd = flat_node[active]
        go_left = goes_left(flat, nd, X[rows[active], flat.feature[nd]])
        flat_node[active] = np.where(go_left, left[nd], right[nd])
        active = active[left[flat_node[active]] >= 0]
    leaves = flat_node.reshape(n, len(roots))
    out = np.tile(flat.base_offset, (n, 1))
    groups = flat.tree_group
    shared = np.flatnonzero(groups < 0)
    for t in shared:
        out += flat.value[leaves[:, t]]
    for k in np.unique(groups[groups >= 0]):
        trees = np.flatnonzero(groups == k)
        out[:, k] += flat.value[leaves[:, trees], k].sum(axis=1)
    return out


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


def flatten_ensemble(model) -> FlatEnsemble:
    """Read a fitted tree ensemble into a :class:`FlatEnsemble`.

    Parameters
    ----------
    model : estimator or booster
        A fitted model of one of the types in :data:`SUPPORTED_MODELS` (subclasses
        are accepted). Pipelines and ``FrozenEstimator`` must be unwrapped by the
        caller.

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
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    NotImplementedError
        For supported types with a feature the flat form cannot express exactly
        (e.g. non-constant ``init`` estimators, linear trees, LightGBM zero-as-missing
        splits whose zero bin leaves its natural side).
    """
    import sys

    xgb = sys.modules.get("xgboost")
    if xgb is not None and isinstance(
        model, (getattr(xgb, "Booster", ()), getattr(xgb, "XGBModel", ()))
    ):
        return read_xgboost(model)
    lgb = sys.modules.get("lightgbm")
    if lgb is not None and isinstance(
        model, (getattr(lgb, "Booster", ()), getattr(lgb, "LGBMModel", ()))
    ):
        return read_lightgbm(model)
    return _read_sklearn(model)


def _read_sklearn(model):
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import BaseDecisionTree

    forests = (
        RandomForestRegressor,
        RandomForestClassifier,
        ExtraTreesRegressor,
        ExtraTreesClassifier,
    )
    if isinstance(model, BaseDecisionTree):
        return read_sklearn_tree(model)
    if isinstance(model, forests):
        return read_sklearn_forest(model)
    if isinstance(model, (GradientBoostingRegressor, GradientBoostingClassifier)):
        return read_sklearn_gradient_boosting(model)
    if isinstance(
        model, (HistGradientBoostingRegressor, HistGradientBoostingClassifier)
    ):
        return read_sklearn_hist_gradient_boosting(model)
    if isinstance(model, IsolationForest):
        return read_sklearn_isolation_forest(model)
    raise _unsupported(model)


def _model_type(model):
    return f"{type(model).__module__.split('.')[0]}.{type(model).__name__}"


# --------------------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------------------


def _sklearn_structure(tree_, feature_map=None):
    """Structure arrays of a fitted ``sklearn.tree._tree.Tree`` (local indices)."""
    left = np.asarray(tree_.children_left, dtype=np.int64)
    is_leaf = left < 0
    feature = np.where(is_leaf, -1, tree_.feature).astype(np.int64)
    if feature_map is not None:
        feature[~is_leaf] = np.asarray(feature_map)[feature[~is_leaf]]
    return {
        "left": left,
        "right": np.asarray(tree_.children_right, dtype=np.int64),
        "feature": feature,
        "threshold": np.asarray(tree_.threshold, dtype=np.float64),
        "missing_left": np.asarray(tree_.missing_go_to_left, dtype=bool),
        "cover": np.asarray(tree_.weighted_n_node_samples, dtype=np.float64),
    }


def _sklearn_leaf_values(estimator, tree_):
    """Per-node output rows of one sklearn tree: probabilities or regression values."""
    value = np.asarray(tree_.value, dtype=np.float64)  # (nodes, outputs, classes)
    if not hasattr(estimator, "classes_"):
        return value[:, :, 0]
    n_classes = np.atleast_1d(estimator.n_classes_)
    parts = []
    for o, k in enumerate(n_classes):
        proba = value[:, o, : int(k)]
        norm = proba.sum(axis=1, keepdims=True)
        norm[norm == 0.0] = 1.0
        parts.append(proba / norm)
    return np.concatenate(parts, axis=1)


def _sklearn_output_names(estimator):
    if hasattr(estimator, "classes_"):
        if getattr(estimator, "n_outputs_", 1) == 1:
            return [str(c) for c in estimator.classes_]
        return [
            f"output{o}_{c}"
            for o, classes in enumerate(estimator.classes_)
            for c in classes
        ]
    n_out = getattr(estimator, "n_outputs_", 1)
    return ["prediction"] if n_out == 1 else [f"target{o}" for o in range(n_out)]


def read_sklearn_tree(model) -> FlatEnsemble:
    """Read a fitted sklearn decision tree or extra tree (regressor or classifier).

    Parameters
    ----------
    model : DecisionTreeRegressor, DecisionTreeClassifier, ExtraTreeRegressor or ExtraTreeClassifier
        A fitted tree.

    Returns
    -------
    flat : FlatEnsemble
        One tree; outputs are the ``predict`` columns (regressors, one per target)
        or the ``predict_proba`` columns (classifiers, both columns when binary,
        multi-output classifiers concatenated), ``decision_dtype`` float32.
    """
    return _read_sklearn_trees(model, [model], scale=1.0)


def read_sklearn_forest(model) -> FlatEnsemble:
    """Read a fitted RandomForest / ExtraTrees regressor or classifier.

    Parameters
    ----------
    model : RandomForestRegressor, RandomForestClassifier, ExtraTreesRegressor or ExtraTreesClassifier
        A fitted forest.

    Returns
    -------
    flat : FlatEnsemble
        Every tree adds its whole value row (``tree_group == -1``) scaled by
        ``1 / n_trees``: regressors average predictions, classifiers average the
        trees' class probabilities (the ``predict_proba`` of the forest).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    return _read_sklearn_trees(model, model.estimators_, 1.0 / len(model.estimators_))


def _read_sklearn_trees(model, estimators, scale):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    names = _sklearn_output_names(model)
    asm = _Assembler(len(names))
    for est in estimators:
        tree_ = est.tree_
        s = _sklearn_structure(tree_)
        asm.add(value=_sklearn_leaf_values(model, tree_) * scale, group=-1, **s)
    return asm.build(
        np.zeros(len(names)),
        model.n_features_in_,
        np.float32,
        names,
        _model_type(model),
    )


def read_sklearn_gradient_boosting(model) -> FlatEnsemble:
    """Read a fitted GradientBoostingRegressor / GradientBoostingClassifier.

    Parameters
    ----------
    model : GradientBoostingRegressor or GradientBoostingClassifier
        A fitted model whose ``init`` is the default (a constant dummy estimator) or
        ``"zero"``.

    Returns
    -------
    flat : FlatEnsemble
        Outputs of ``decision_function`` (classifiers; one output when binary, one
        per class otherwise, tree ``(i, k)`` in group ``k``) or ``predict``
        (regressors). Leaves are scaled by ``learning_rate``; ``base_offset`` is the
        init estimator's raw prediction.
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    init = model.init_
    constant = (isinstance(init, str) and init == "zero") or (
        isinstance(init, (DummyRegressor, DummyClassifier))
        and getattr(init, "strategy", None) != "stratified"  # random predictions
    )
    if not constant:
        raise NotImplementedError(
            "Only gradient boosting with a constant init estimator (the default) or "
            f"init='zero' can be flattened; got init={init!r}."
        )
    n_features = model.n_features_in_
    base = model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0]
    estimators = model.estimators_
    n_groups = estimators.shape[1]
    if hasattr(model, "classes_"):
        names = (
            [str(model.classes_[1])]
            if n_groups == 1
            else [str(c) for c in model.classes_]
        )
    else:
        names = ["prediction"]
    asm = _Assembler(n_groups)
    lr = float(model.learning_rate)
    for stage in estimators:
        for k, est in enumerate(stage):
            s = _sklearn_structure(est.tree_)
            value = np.asarray(est.tree_.value, dtype=np.float64)[:, 0, 0] * lr
            asm.add(value=value, group=k, **s)
    return asm.build(base, n_features, np.float32, names, _model_type(model))


def _average_path_length(n):
    """Average path length of an unsuccessful BST search among ``n`` points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    m = n[big]
    out[big] = 2.0 * (np.log(m - 1.0) + np.euler_gamma) - 2.0 * (m - 1.0) / m
    return out


def _node_depths(left, right):
    depth = np.zeros(left.shape[0], dtype=np.float64)
    for i in range(left.shape[0]):  # children come after their parent in sklearn
        if left[i] >= 0:
            depth[left[i]] = depth[right[i]] = depth[i] + 1.0
    return depth


def read_sklearn_isolation_forest(model) -> FlatEnsemble:
    """Read a fitted IsolationForest as its mean path length.

    Parameters
    ----------
    model : IsolationForest
        A fitted isolation forest.

    Returns
    -------
    flat : FlatEnsemble
        One output, the average over trees of ``depth(leaf) + c(n_leaf)`` with
        ``c`` the average unsuccessful-search path length, so that
        ``score_samples(X) == -2 ** (-raw / c(max_samples_))``. Tree features are
        mapped back to the input columns when the trees saw a feature subset.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    n_features = model.n_features_in_
    subsample = model._max_features != n_features
    n_trees = len(model.estimators_)
    asm = _Assembler(1)
    for est, feats in zip(model.estimators_, model.estimators_features_):
        tree_ = est.tree_
        s = _sklearn_structure(tree_, feature_map=feats if subsample else None)
        depth = _node_depths(s["left"], s["right"])
        value = depth + _average_path_length(tree_.n_node_samples)
        asm.add(value=value / n_trees, group=0, **s)
    return asm.build(
        np.zeros(1), n_features, np.float32, ["mean_path_length"], _model_type(model)
    )


def read_sklearn_hist_gradient_boosting(model) -> FlatEnsemble:
    """Read a fitted HistGradientBoostingRegressor / HistGradientBoostingClassifier.

    Parameters
    ----------
    model : HistGradientBoostingRegressor or HistGradientBoostingClassifier
        A fitted model.

    Returns
    -------
    flat : FlatEnsemble
        The raw margin (``_raw_predict``): one output for regression and binary
        classification, one per class otherwise; ``decision_dtype`` float64; cover
        is the node's (unweighted) training sample ``count``. The model's column
        transformer (categorical features first) is undone, so features index the
        input columns. Categorical features hold the raw category value when all
        of the feature's training categories are non-negative integers, and
        otherwise the category's index in the model's ordinal encoder
        (``model._preprocessor.named_transformers_["encoder"].categories_``).
        Any other value (missing, negative, fractional, unseen) is an unknown
        category following the missing-value branch, as in the model:
        ``category_values`` holds the model's exact mapping
        (:func:`~sklearn_shapley.tree._flat.encode_categories`).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    n_features = model.n_features_in_
    K = int(model.n_trees_per_iteration_)
    base = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
    known_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    # Map the columns seen by the trees back to the input columns, and category codes
    # back to raw category values.
    perm = np.arange(n_features)
    code_to_raw = {}
    category_values = {}
    pre = getattr(model, "_preprocessor", None)
    if pre is not None:
        perm = np.full(n_features, -1, dtype=np.int64)
        for name, trans, cols in pre.transformers_:
            if isinstance(trans, str) and trans == "drop":
                continue
            sl = pre.output_indices_[name]
            idx = np.arange(n_features)[cols] if np.size(cols) else np.zeros(0, int)
            perm[sl] = idx
            if name == "encoder":
                for j, cats in enumerate(trans.categories_):
                    code_to_raw[sl.start + j] = _raw_categories(cats)
                    encoding = _category_encoding(cats, code_to_raw[sl.start + j])
                    if encoding is not None:
                        category_values[int(perm[sl.start + j])] = encoding
    if K == 1:
        classes = getattr(model, "classes_", None)
        if classes is None:
            names = ["prediction"]
        elif len(classes) == 1:  # trained on one class: its decision_function
            names = ["decision_function"]
        else:
            names = [str(classes[1])]
    else:
        names = [str(c) for c in model.classes_]
    asm = _Assembler(K)
    for predictors in model._predictors:
        for k, predictor in enumerate(predictors):
            nodes = predictor.nodes
            left = np.asarray(nodes["left"], dtype=np.int64)
            right = np.asarray(nodes["right"], dtype=np.int64)
            is_leaf = nodes["is_leaf"].astype(bool)
            left[is_leaf] = -1
            right[is_leaf] = -1
            feat_local = np.asarray(nodes["feature_idx"], dtype=np.int64)
            feature = np.where(is_leaf, -1, perm[np.where(is_leaf, 0, feat_local)])
            missing_left = nodes["missing_go_to_left"].astype(bool)
            cat_nodes = {}
            for node in np.flatnonzero(nodes["is_categorical"].astype(bool) & ~is_leaf):
                f = int(feat_local[node])
                go_left = _categories_from_bitset(
                    predictor.raw_left_cat_bitsets[nodes["bitset_idx"][node]]
                )
                if missing_left[node]:
                    # Unknown/negative/missing categories go left in the model: swap
                    # the children and list the known categories that go right.
                    known = _categories_from_bitset(known_bitsets[f_idx_map[f]])
                    go_left = np.setdiff1d(known, go_left)
                    left[node], right[node] = right[node], left[node]
                    missing_left[node] = False
                raw = code_to_raw.get(f)
                if raw is not None:
                    go_left = raw[go_left[go_left < raw.size]]
                cat_nodes[int(node)] = go_left
            asm.add(
                left=left,
                right=right,
                feature=feature,
                threshold=np.asarray(nodes["num_threshold"], dtype=np.float64),
                missing_left=missing_left,
                cover=np.asarray(nodes["count"], dtype=np.float64),
                value=np.asarray(nodes["value"], dtype=np.float64),
                group=k,
                cat_nodes=cat_nodes,
            )
    return asm.build(
        base, n_features, np.float64, names, _model_type(model), category_values
    )


def _category_encoding(categories, raw):
    """``(known, codes)`` of a HistGradientBoosting categorical feature: its sorted
    numeric training categories and the values its splits use for them (the raw
    integers, or else the ordinal encoder's codes); None for non-numeric ones."""
    cats = np.asarray(categories)
    if cats.dtype.kind not in "biuf":
        return None
    cats = cats.astype(np.float64)
    codes = np.arange(cats.size, dtype=np.float64)[~np.isnan(cats)]
    cats = cats[~np.isnan(cats)]
    if raw is not None:
        codes = raw.astype(np.float64)
    order = np.argsort(cats)
    return cats[order], codes[order]


def _raw_categories(categories):
    """Raw category values indexed by code, or None to keep the codes themselves."""
    cats = np.asarray(categories)
    if cats.dtype.kind not in "biuf":
        return None
    cats = cats.astype(np.float64)
    cats = cats[~np.isnan(cats)]
    if cats.size == 0:
        return None
    if np.all((cats >= 0) & (cats == np.round(cats)) & (cats < 2**24)):
        return cats.astype(np.int64)
    return None


# --------------------------------------------------------------------------------------
# XGBoost
# --------------------------------------------------------------------------------------

_XGB_LOGIT = {"binary:logistic", "reg:logistic"}
_XGB_LOG = {"count:poisson", "reg:gamma", "reg:tweedie", "survival:cox", "survival:aft"}


def _parse_xgb_base_score(text):
    """Parse ``base_score``: ``"0.5"``, ``"5E-1"`` or ``"[5E-1,2E-1]"`` (xgb >= 3.1)."""
    text = str(text).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)


def _xgb_base_margin(base_score, objective):
    """Convert xgboost's output-space ``base_score`` to the margin (in float32)."""
    bs = np.asarray(base_score, dtype=np.float32)
    if objective in _XGB_LOGIT:
        return -np.log(np.float32(1.0) / bs - np.float32(1.0)).astype(np.float64)
    if objective in _XGB_LOG:
        return np.log(bs).astype(np.float64)
    return bs.astype(np.float64)


def read_xgboost(model) -> FlatEnsemble:
    """Read an XGBoost ``Booster`` or sklearn-API model from its JSON dump.

    Parameters
    ----------
    model : xgboost.Booster or xgboost.XGBModel
        A fitted gbtree or dart model (XGBRegressor, XGBClassifier, XGBRanker,
        XGBRF*).

    Returns
    -------
    flat : FlatEnsemble
        The margin (``predict(output_margin=True)``); ``decision_dtype`` float32
        with thresholds the largest float32 below xgboost's ``x < c`` split value.
        ``base_score`` (plain or array string, scalar or vector) is turned into a
        margin with the objective's link (logit for logistic objectives, log for
        poisson/gamma/tweedie/cox/aft, identity otherwise). DART trees are scaled by
        ``weight_drop``. The sklearn wrappers use ``best_iteration`` when it is set,
        as their ``predict`` does; a bare ``Booster`` uses all trees. Multi-target
        trees with vector leaves add their leaf vector to every output.
    """
    import xgboost

    iteration_end = None
    if isinstance(model, xgboost.XGBModel):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model)
        missing = getattr(model, "missing", np.nan)
        if missing is not None and not (
            isinstance(missing, float) and math.isnan(missing)
        ):
            raise NotImplementedError(
                f"Only missing=np.nan is supported for xgboost models; got {missing!r}."
            )
        booster = model.get_booster()
        try:
            iteration_end = int(model.best_iteration) + 1
        except (AttributeError, ValueError, TypeError):
            iteration_end = None
        model_type = _model_type(model)
    elif isinstance(model, xgboost.Booster):
        booster = model
        model_type = "xgboost.Booster"
    else:  # pragma: no cover - dispatch guarantees the type
        raise _unsupported(model)

    learner = json.loads(booster.save_raw(raw_format="json"))["learner"]
    params = learner["learner_model_param"]
    objective = learner["objective"]["name"]
    gbm = learner["gradient_booster"]
    if gbm["name"] == "gblinear":
        raise NotImplementedError("xgboost gblinear models have no trees.")
    if gbm["name"] == "dart":
        weights = np.asarray(gbm["weight_drop"], dtype=np.float64)
        gbm_model = gbm["gbtree"]["model"]
    else:
        gbm_model = gbm["model"]
        weights = None
    trees = gbm_model["trees"]
    tree_info = [int(g) for g in gbm_model["tree_info"]]
    n_outputs = max(
        int(params.get("num_class", 0)), int(params.get("num_target", 1)), 1
    )
    n_features = int(params["num_feature"])

    n_used = len(trees)
    if iteration_end is not None:
        indptr = gbm_model.get("iteration_indptr")
        if indptr is not None and iteration_end < len(indptr):
            n_used = int(indptr[iteration_end])
        elif indptr is None:
            per_iter = int(gbm_model["gbtree_model_param"]["num_parallel_tree"])
            per_iter *= max(1, int(params.get("num_class", 0)) or 1)
            n_used = min(len(trees), iteration_end * per_iter)

    base_score = _parse_xgb_base_score(params["base_score"])
    base = np.broadcast_to(_xgb_base_margin(base_score, objective), (n_outputs,))

    asm = _Assembler(n_outputs)
    for t in range(n_used):
        tree = trees[t]
        weight = 1.0 if weights is None else float(weights[t])
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        is_leaf = left < 0
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        threshold = np.nextafter(cond, np.float32(-np.inf)).astype(np.float64)
        missing_left = np.asarray(tree["default_left"], dtype=bool)
        size_leaf = int(tree["tree_param"].get("size_leaf_vector", "1") or 1)
        if size_leaf > 1:
            leaf_weights = np.asarray(tree["leaf_weights"], dtype=np.float64)
            leaf_weights = leaf_weights.reshape(-1, size_leaf)
            value = np.zeros((left.size, size_leaf))
            value[is_leaf] = leaf_weights[right[is_leaf]] * weight
            group = -1
            if size_leaf != n_outputs:
                raise NotImplementedError(
                    f"Leaf vectors of size {size_leaf} for {n_outputs} outputs."
                )
        else:
            value = cond.astype(np.float64) * weight
            group = tree_info[t]
        cat_nodes = {}
        if any(int(s) == 1 for s in tree.get("split_type", [])):
            cats = tree["categories"]
            for node, seg, size in zip(
                tree["categories_nodes"],
                tree["categories_segments"],
                tree["categories_sizes"],
            ):
                # xgboost sends the listed categories right and everything else
                # (unlisted, negative, out of range) left: swap the children so the
                # bitset lists the categories of the new left child.
                node, seg, size = int(node), int(seg), int(size)
                left[node], right[node] = right[node], left[node]
                missing_left[node] = not missing_left[node]
                cat_nodes[node] = np.asarray(cats[seg : seg + size], dtype=np.int64)
        asm.add(
            left=left,
            right=right,
            feature=np.asarray(tree["split_indices"], dtype=np.int64),
            threshold=threshold,
            missing_left=missing_left,
            cover=np.asarray(tree["sum_hessian"], dtype=np.float64),
            value=value,
            group=group,
            cat_nodes=cat_nodes,
        )
    if n_outputs == 1:
        names = ["margin"]
    elif int(params.get("num_class", 0)) > 1:
        names = [f"class{k}" for k in range(n_outputs)]
    else:
        names = [f"target{k}" for k in range(n_outputs)]
    return asm.build(base, n_features, np.float32, names, model_type)


# --------------------------------------------------------------------------------------
# LightGBM
# --------------------------------------------------------------------------------------


def read_lightgbm(model) -> FlatEnsemble:
    """Read a LightGBM ``Booster`` or sklearn-API model from ``dump_model()``.

    Parameters
    ----------
    model : lightgbm.Booster or lightgbm.LGBMModel
        A fitted model (LGBMRegressor, LGBMClassifier, LGBMRanker).

    Returns
    -------
    flat : FlatEnsemble
        The raw score (``predict(raw_score=True)``), using the best iteration when
        there is one, as LightGBM's ``predict`` does; ``decision_dtype`` float64.
        Cover is ``internal_count`` / ``leaf_count`` (the sample counts LightGBM's
        own TreeSHAP and shap use). Multi-class trees interleave by class
        (tree ``i`` in group ``i % K``). In random-forest mode the raw score is the
        *sum* of the trees, as ``predict(raw_score=True)`` and ``pred_contrib``
        return it (``predict`` divides it by the number of iterations).
        NaN follows LightGBM: with ``missing_type`` None it is treated as 0.0, with
        NaN it follows ``default_left``, with Zero both NaN and zeros follow
        ``default_left`` (exact when the zero region lies on that side of the
        threshold anyway).
    """
    import lightgbm

    if isinstance(model, lightgbm.LGBMModel):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model)
        booster = model.booster_
        model_type = _model_type(model)
    else:
        booster = model
        model_type = "lightgbm.Booster"
    dump = booster.dump_model()
    K = int(dump.get("num_tree_per_iteration", 1))
    n_features = int(dump["max_feature_idx"]) + 1
    asm = _Assembler(K)
    for i, info in enumerate(dump["tree_info"]):
        asm.add(group=i % K, **_lightgbm_tree(info["tree_structure"], i))
    names = ["raw_score"] if K == 1 else [f"class{k}" for k in range(K)]
    return asm.build(np.zeros(K), n_features, np.float64, names, model_type)


def _lightgbm_tree(root, tree_index):
    """Flatten one nested ``tree_structure`` dict (preorder, iterative)."""
    left, right, feature, threshold = [], [], [], []
    missing_left, cover, value, kind = [], [], [], []
    cat_nodes = {}
    stack = [(root, -1, False)]
    while stack:
        node, parent, is_right = stack.pop()
        idx = len(left)
        if parent >= 0:
            (right if is_right else left)[parent] = idx
        left.append(-1)
        right.append(-1)
        if "split_index" not in node:  # leaf
            if node.get("leaf_coeff"):
                raise NotImplementedError(
                    "LightGBM linear trees (leaves with linear models) are not "
                    "supported."
                )
            feature.append(-1)
            threshold.append(0.0)
            missing_left.append(False)
            kind.append(NUMERIC_SPLIT)
            cover.append(float(node.get("leaf_count", 1.0)))
            value.append(float(node.get("leaf_const", node["leaf_value"])))
            continue
        f = int(node["split_feature"])
        mtype = str(node.get("missing_type", "None"))
        default_left = bool(node.get("default_left", False))
        decision = node["decision_type"]
        split = NUMERIC_SPLIT
        if decision == "==":
            cat_nodes[idx] = [
                int(c) for c in str(node["threshold"]).split("||") if c != ""
            ]
            thr = 0.0
            miss = False  # LightGBM sends NaN (and negative categories) right
        elif decision == "<=":
            thr = float(node["threshold"])
            if mtype == "NaN":
                miss = default_left
            elif mtype == "Zero":
                # NaN becomes 0.0, and values in [-1e-35, 1e-35] follow default_left.
                miss = default_left
                natural = (thr >= _LGBM_ZERO) if default_left else (thr < -_LGBM_ZERO)
                if not natural:
                    zero_split = getattr(_flat, "ZERO_MISSING_SPLIT", None)
                    if zero_split is None:
                        raise NotImplementedError(
                            f"LightGBM tree {tree_index}: a zero-as-missing split "
                            "sends zeros to the side the threshold does not; the "
                            "flat decision rule cannot express it."
                        )
                    split = zero_split
            else:  # "None": NaN is converted to 0.0
                miss = thr >= 0.0
        else:
            raise NotImplementedError(f"LightGBM decision type {decision!r}.")
        kind.append(split)
        feature.append(f)
        threshold.append(thr)
        missing_left.append(bool(miss))
        cover.append(float(node.get("internal_count", 1.0)))
        value.append(0.0)
        stack.append((node["right_child"], idx, True))
        stack.append((node["left_child"], idx, False))
    return {
        "left": left,
        "right": right,
        "feature": feature,
        "threshold": threshold,
        "missing_left": missing_left,
        "cover": cover,
        "value": np.asarray(value, dtype=np.float64),
        "cat_nodes": cat_nodes,
        "split_kind": kind,
    }
