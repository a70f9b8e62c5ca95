"""Python face of the Quadrature-TreeSHAP kernel: arrays in, exact SHAP values out.

The functions here validate and cast a
:class:`~sklearn_shapley.tree._flat.FlatEnsemble` and the data, choose the
Gauss-Legendre rule of each tree, and call the Cython kernel in
:mod:`sklearn_shapley.tree._quadrature`, which runs its OpenMP loop over rows (the
layout and ``KernelData`` it reads are built by :mod:`._quadrature_layout`).

All values are the path-dependent ("tree_path_dependent") game of TreeSHAP: a feature
outside the coalition follows both branches of its splits, weighted by cover. A tree
with ``tree_group[t] == g >= 0`` adds ``value[leaf, g]`` to output ``g`` only; a tree
with group ``-1`` adds ``value[leaf, k]`` to every output ``k``.

The integrand of an order-``k`` interaction over a leaf is a polynomial of degree at
most ``D_u - k`` (``D_u`` the most distinct features on a root-to-leaf path of the
tree), so a ``Q``-point Gauss-Legendre rule with ``2 Q - 1 >= D_u - k`` is exact;
``"auto"`` picks the smallest such ``Q`` per tree.
"""

from __future__ import annotations

import functools
import weakref
from itertools import combinations
from math import comb

import numpy as np

from .._memory import check_fits_in_memory
from .._openmp import effective_n_threads
from .._simd import select_build
from . import _quadrature as _portable
from . import _quadrature_layout
from ._flat import CATEGORICAL_SPLIT, NUMERIC_SPLIT, FlatEnsemble, encode_inputs


def _select_kernel():
    """The AVX2 + FMA build of the kernel where the CPU runs it and it was built,
    else the portable one (:func:`~sklearn_shapley._simd.select_build`)."""
    return select_build(_portable)


_quadrature = _select_kernel()


def kernel_build():
    """``"avx2+fma"`` or ``"portable"``: the build of the kernel in use."""
    return "avx2+fma" if _quadrature.compiled_for_avx2_fma() else "portable"


__all__ = [
    "expected_value",
    "gauss_legendre_01",
    "interaction_subsets",
    "max_path_features",
    "n_quadrature_per_tree",
    "shap_interaction_values",
    "shap_values",
    "shapley_interactions",
]


# Per-thread memory the kernel may spend on tabulating 1 / f for every node of one
# tree (2 * nodes * Q doubles); larger trees compute it on entering each node instead.
_TABLE_BYTES = 32 << 20


@functools.lru_cache(maxsize=256)
def _gauss_legendre_01_cached(q: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(q)
    t = 0.5 * (x + 1.0)
    w = 0.5 * w
    t.setflags(write=False)
    w.setflags(write=False)
    return t, w


def gauss_legendre_01(q):
    """Gauss-Legendre nodes and weights on ``[0, 1]``.

    Parameters
    ----------
    q : int
        Number of points (at least 1). The rule integrates polynomials of degree up
        to ``2 q - 1`` exactly.

    Returns
    -------
    nodes : ndarray of shape (q,)
        Points in the open interval ``(0, 1)``, increasing.
    weights : ndarray of shape (q,)
        Positive weights summing to 1.
    """
    q = int(q)
    if q < 1:
        raise ValueError(f"the number of quadrature points must be >= 1, got {q}")
    t, w = _gauss_legendre_01_cached(q)
    return t.copy(), w.copy()


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def _structure(flat, with_leaves=False):
    """``(max_depth, max_distinct[, leaves])`` per tree (see ``tree_structure``)."""
    return _quadrature_layout.tree_structure(
        _i64(flat.tree_offsets),
        _i64(flat.children_left),
        _i64(flat.children_right),
        _i64(flat.feature),
        int(flat.n_features),
        with_leaves,
    )


def max_path_features(flat):
    """Most distinct features on any root-to-leaf path of each tree.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.

    Returns
    -------
    ndarray of int64, shape (n_trees,)
        ``D_u`` of each tree (0 for a tree that is a single leaf).
    """
    return _structure(flat)[1]


def _q_from_distinct(distinct, order, n_quadrature):
    if isinstance(n_quadrature, str):
        if n_quadrature != "auto":
            raise ValueError(
                f'n_quadrature must be "auto" or a positive int, got {n_quadrature!r}'
            )
        q = -((-(distinct - order + 1)) // 2)  # ceil((D_u - order + 1) / 2)
        return np.maximum(q, 1).astype(np.int64)
    if isinstance(n_quadrature, bool | float) or int(n_quadrature) != n_quadrature:
        raise ValueError(f"n_quadrature must be an int, got {n_quadrature!r}")
    if int(n_quadrature) < 1:
        raise ValueError(f"n_quadrature must be >= 1, got {n_quadrature}")
    return np.full(len(distinct), int(n_quadrature), dtype=np.int64)


def n_quadrature_per_tree(flat, order=1, n_quadrature="auto"):
    """Number of Gauss-Legendre points used for each tree.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.
    order : int, default=1
        Interaction order ``k`` (1 for Shapley values).
    n_quadrature : "auto" or int, default="auto"
        ``"auto"``: ``max(1, ceil((D_u - k + 1) / 2))`` for a tree whose paths have at
        most ``D_u`` distinct features, the fewest points that are exact. An int uses
        that many points for every tree (exact only where it is at least the auto
        value).

    Returns
    -------
    ndarray of int64, shape (n_trees,)
    """
    return _q_from_distinct(max_path_features(flat), int(order), n_quadrature)


def expected_value(flat):
    """The base value: the game with no feature known.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.

    Returns
    -------
    ndarray of float64, shape (n_outputs,)
        ``base_offset`` plus, for every tree, the mean of its leaf values weighted by
        ``cover[leaf] / cover[root]``, added to the tree's output group (or to every
        output for group ``-1``).
    """
    offsets = _i64(flat.tree_offsets)
    left = _i64(flat.children_left)
    cover = np.asarray(flat.cover, dtype=np.float64)
    value = np.asarray(flat.value, dtype=np.float64).reshape(len(left), -1)
    group = _i64(flat.tree_group)
    out = np.array(flat.base_offset, dtype=np.float64).reshape(-1).copy()
    n_trees = len(offsets) - 1
    tree_of = np.repeat(np.arange(n_trees), np.diff(offsets))
    leaves = np.flatnonzero(left < 0)
    lt = tree_of[leaves]
    root_cover = cover[offsets[:-1]][lt]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(root_cover > 0, cover[leaves] / root_cover, 0.0)
    g = group[lt]
    every = g < 0
    out += (value[leaves[every]] * frac[every, None]).sum(axis=0)
    one = ~every
    np.add.at(out, g[one], value[leaves[one], g[one]] * frac[one])
    return out


def _validate_X(flat, X):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.shape[1] != flat.n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, the ensemble expects {flat.n_features}"
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    return np.ascontiguousarray(encode_inputs(flat, X))


#: Row-node visits (rows times the ensemble's nodes) of order-1 work per thread:
#: below it, waking and joining an OpenMP thread costs about what it saves.
_ROW_NODES_PER_THREAD = 1 << 14


def _n_threads(n_threads, n_rows, n_nodes=None):
    """OpenMP threads for ``n_rows`` rows: ``n_threads`` (``effective_n_threads``),
    at most one per row and, given ``n_nodes`` (order 1), one per
    ``_ROW_NODES_PER_THREAD`` row-node visits. Results do not depend on it."""
    n = min(effective_n_threads(n_threads), max(n_rows, 1))
    if n_nodes is not None:
        n = min(n, n_rows * n_nodes // _ROW_NODES_PER_THREAD)
    return int(max(1, n))


def _prepare(flat, qs, max_depth, leaves=None, lanes=None, index="shapley"):
    """Bundle the ensemble, cover ratios and per-tree quadrature for the kernel.

    ``lanes``: each tree's rule is padded to a multiple of it (default: the lane
    width of the single-row kernel of orders >= 3; orders 1 and 2 need none).
    ``index="banzhaf"``: every tree's rule is the one point ``t = 1/2`` of weight 1,
    which turns the Shapley integral into the Banzhaf values (the integrand is the
    weighted-Banzhaf polynomial at participation probability ``t``).
    """
    if index == "banzhaf":
        qs = np.ones(len(qs), dtype=np.int64)
    n_nodes = flat.n_nodes
    left = _i64(flat.children_left)
    right = _i64(flat.children_right)
    feature = _i64(flat.feature)
    if flat.n_features < 1:
        raise ValueError("the ensemble must have at least one feature")
    internal = np.flatnonzero(left >= 0)
    if internal.size and (
        feature[internal].min() < 0 or feature[internal].max() >= flat.n_features
    ):
        raise ValueError("split features must lie in [0, n_features)")
    kinds = np.asarray(flat.split_kind)[internal]
    if kinds.size and not np.isin(kinds, (NUMERIC_SPLIT, CATEGORICAL_SPLIT)).all():
        raise ValueError(
            "the kernel knows numeric (0) and categorical (1) splits only, got "
            f"split kinds {sorted(set(kinds.tolist()) - {0, 1})}"
        )
    cover = np.asarray(flat.cover, dtype=np.float64)
    ratio = np.ones(n_nodes, dtype=np.float64)
    parent_cover = cover[internal]
    with np.errstate(divide="ignore", invalid="ignore"):
        for child in (left[internal], right[internal]):
            ratio[child] = np.where(parent_cover > 0, cover[child] / parent_cover, 0.0)
    offsets = _i64(flat.tree_offsets)
    layout = _quadrature_layout.tree_layout(
        offsets, left, right, feature, ratio, int(flat.n_features)
    )
    value = np.ascontiguousarray(flat.value, dtype=np.float64).reshape(n_nodes, -1)
    group = _i64(flat.tree_group)
    if group.size and group.max() >= value.shape[1]:
        raise ValueError("tree_group refers to an output the ensemble does not have")
    # each tree's rule, padded to a multiple of the kernel's lane width with points
    # of weight 0 (t = 1/2 keeps every factor positive)
    lanes = _quadrature_layout.QUADRATURE_LANES if lanes is None else int(lanes)
    padded = -(-np.asarray(qs, dtype=np.int64) // lanes) * lanes
    qoff = np.zeros(len(qs) + 1, dtype=np.int64)
    np.cumsum(padded, out=qoff[1:])
    rules = {}
    for q, qp in set(zip(np.asarray(qs).tolist(), padded.tolist())):
        t, w = _gauss_legendre_01_cached(q)
        if index == "banzhaf":
            t, w = np.array([0.5]), np.array([1.0])
        rules[q] = (
            np.concatenate([t, np.full(qp - q, 0.5)]),
            np.concatenate([w, np.zeros(qp - q)]),
        )
    if len(qs):
        qt = np.concatenate([rules[int(q)][0] for q in qs])
        qw = np.concatenate([rules[int(q)][1] for q in qs])
    else:
        qt, qw = np.full(lanes, 0.5), np.zeros(lanes)
    cat_bitsets = np.ascontiguousarray(flat.cat_bitsets, dtype=np.uint32)
    if cat_bitsets.size == 0:
        cat_bitsets = np.zeros(1, dtype=np.uint32)
    kwargs = {}
    if leaves is not None:
        kwargs = dict(zip(("leaf_index", "leaf_fptr", "leaf_feats"), leaves[:3]))
        kwargs.update(leaf_cptr=leaves[3], leaf_cols=leaves[4], leaf_order=leaves[5])
    return _quadrature_layout.KernelData(
        offsets,
        group,
        left,
        np.ascontiguousarray(flat.threshold, dtype=np.float64),
        np.ascontiguousarray(flat.missing_left, dtype=np.uint8),
        np.ascontiguousarray(flat.split_kind, dtype=np.uint8),
        _i64(flat.cat_start),
        _i64(flat.cat_len),
        cat_bitsets,
        value,
        layout,
        qoff,
        qt,
        qw,
        int(flat.n_features),
        int(max(max_depth.max(initial=0), 0)),
        np.dtype(flat.decision_dtype) == np.float32,
        table_bytes=_TABLE_BYTES,
        lanes=lanes,
        **kwargs,
    )


def prepare(flat, order=1, n_quadrature="auto", index="shapley"):
    """The kernel's data for :func:`shap_values` (``order=1``),
    :func:`shap_interaction_values` (``order=2``) or :func:`shapley_interactions`
    (``order >= 3``), to build once and pass as ``prepared=`` to later calls on the
    same ensemble, order and ``n_quadrature``.

    Orders 1 and 2 use the first-order rule (exact for the pairs too) and walk several
    rows at once. Order ``k >= 3`` adds each leaf's ``k``-subsets of its path features
    and their columns among :func:`interaction_subsets` (its ``subsets`` attribute).
    ``index="banzhaf"`` gives Banzhaf values and interactions instead of Shapley's
    (``n_quadrature`` is then ignored: one point is exact).
    """
    order = int(order)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if order >= 3:
        return _prepare_leaves(flat, order, n_quadrature, index)
    max_depth, distinct = _structure(flat)
    qs = _q_from_distinct(distinct, 1, n_quadrature)
    return _prepare(flat, qs, max_depth, lanes=1, index=index)


#: What ``kept`` holds for each flat ensemble still alive: ``id(flat) -> (weakref
#: to flat, {key: data})``.
_KEPT: dict = {}


def _forget(ref, key):
    entry = _KEPT.get(key)
    if entry is not None and entry[0] is ref:
        del _KEPT[key]


def kept(flat, key, build):
    """``build()``, kept with ``flat`` under ``key`` for as long as ``flat`` lives.

    An XGBoost model read again gives the same ``FlatEnsemble`` object (the read
    cache of :func:`~._xgboost.read_xgboost`), so a new explainer on an unchanged
    model finds the kernel's data (:func:`prepare`) and the base value already
    built. What is kept must not be changed by its users: ``KernelData`` is only
    read by the kernel (each call allocates its own scratch); arrays come back
    read-only.
    """
    entry = _KEPT.get(id(flat))
    if entry is None or entry[0]() is not flat:
        ident = id(flat)
        entry = (weakref.ref(flat, lambda ref: _forget(ref, ident)), {})
        _KEPT[ident] = entry
    data = entry[1]
    if key not in data:
        value = build()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        data[key] = value
    return data[key]


def prepare_kept(flat, order=1, n_quadrature="auto", index="shapley"):
    """:func:`prepare`, built once per ensemble object for orders 1 and 2 (see
    :func:`kept`); order ``k >= 3`` (each leaf's subsets: large) is built anew."""
    order = int(order)
    if order >= 3:
        return prepare(flat, order, n_quadrature, index)
    return kept(
        flat,
        ("prepare", order, repr(n_quadrature), index),
        lambda: prepare(flat, order, n_quadrature, index),
    )


def expected_value_kept(flat):
    """:func:`expected_value`, computed once per ensemble object (a copy)."""
    return kept(flat, ("expected_value",), lambda: expected_value(flat)).copy()


def _prepare_leaves(flat, order, n_quadrature, index="shapley"):
    """The kernel's data for leaf extraction at ``order``: each leaf's subsets and
    their columns among ``interaction_subsets(flat, order)`` (``subsets``)."""
    (max_depth, distinct), leaf_index, fptr, feats, cptr, leaf_sub = _leaf_subsets(
        flat, order
    )
    subsets, cols = _distinct_subsets(leaf_sub, flat.n_features)
    qs = _q_from_distinct(distinct, order, n_quadrature)
    kd = _prepare(
        flat,
        qs,
        max_depth,
        leaves=(leaf_index, fptr, feats, cptr, cols, order),
        index=index,
    )
    kd.subsets = subsets
    return kd


def shap_values(
    flat: FlatEnsemble, X, *, n_quadrature="auto", n_threads=1, prepared=None
):
    """Exact path-dependent Shapley values of every feature for every row.

    The ``shap.TreeExplainer(feature_perturbation="tree_path_dependent")`` / xgboost
    ``pred_contribs`` values, without the bias column: for each row,
    ``expected_value(flat) + phi.sum(axis=0)`` is the raw model output.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.
    X : array-like of shape (n_samples, n_features)
        Rows to explain; float32 and float64 are used as they are (read-only arrays
        too), other dtypes are cast to float64.
    n_quadrature : "auto" or int, default="auto"
        Gauss-Legendre points per tree (see :func:`n_quadrature_per_tree`); ``"auto"``
        is exact.
    n_threads : int or None, default=1
        OpenMP threads over rows (``None``: all, negative: counted back from the CPU
        count), at most one per ``2**14`` row-node visits (rows times
        ``flat.n_nodes``): a tiny call runs on one thread. Results are
        bit-identical for any value.
    prepared : object, default=None
        ``prepare(flat, 1, n_quadrature)`` of this ensemble, to skip rebuilding it.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_features, n_outputs)
    """
    X = _validate_X(flat, X)
    kd = prepared if prepared is not None else prepare(flat, 1, n_quadrature)
    out = np.zeros((X.shape[0], flat.n_features, flat.n_outputs), dtype=np.float64)
    threads = _n_threads(n_threads, X.shape[0], flat.n_nodes)
    _quadrature.shap_order1(kd, X, out, threads)
    return out


def shap_interaction_values(
    flat: FlatEnsemble, X, *, n_quadrature="auto", n_threads=1, prepared=None
):
    """Exact SHAP interaction values in the TreeSHAP convention.

    Off the diagonal, ``(i, j)`` and ``(j, i)`` each hold half the pairwise Shapley
    interaction index; the diagonal is ``phi_i`` minus the rest of its row, so every
    row sums to the Shapley value ``phi_i`` (as xgboost ``pred_interactions`` and
    ``shap.TreeExplainer.shap_interaction_values``).

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.
    X : array-like of shape (n_samples, n_features)
        Rows to explain.
    n_quadrature : "auto" or int, default="auto"
        Gauss-Legendre points per tree; ``"auto"`` uses the first-order rule, exact
        for both the diagonal and the pairs.
    n_threads : int or None, default=1
        OpenMP threads over rows; results are bit-identical for any value.
    prepared : object, default=None
        ``prepare(flat, 2, n_quadrature)`` of this ensemble, to skip rebuilding it.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_features, n_features, n_outputs)
    """
    X = _validate_X(flat, X)
    kd = prepared if prepared is not None else prepare(flat, 2, n_quadrature)
    d = flat.n_features
    out = np.zeros((X.shape[0], d, d, flat.n_outputs), dtype=np.float64)
    _quadrature.shap_order2(kd, X, out, _n_threads(n_threads, X.shape[0]))
    return out


def _leaf_subsets(flat, order):
    """Every leaf's ``order``-subsets of its sorted distinct path features.

    Returns ``(structure, leaf_index, fptr, feats, cptr, subsets)`` where ``subsets``
    (int64, ``(cptr[-1], order)``) lists, leaf after leaf, the subsets in
    ``itertools.combinations`` order.
    """
    max_depth, distinct, (lnodes, fptr, feats) = _structure(flat, with_leaves=True)
    leaf_index = np.full(flat.n_nodes, -1, dtype=np.int64)
    leaf_index[lnodes] = np.arange(len(lnodes))
    dl = np.diff(fptr)
    counts = np.array([comb(int(d), order) for d in range(int(dl.max(initial=0)) + 1)])
    n_sub = counts[dl] if len(dl) else np.zeros(0, dtype=np.int64)
    cptr = np.zeros(len(dl) + 1, dtype=np.int64)
    np.cumsum(n_sub, out=cptr[1:])
    check_fits_in_memory(
        (cptr[-1], order + 1),
        f"The leaves' order-{order} feature subsets",
        advice="ask for a lower order, or explain a model with shallower trees (the "
        "count grows as C(path features, order) per leaf).",
    )
    subsets = np.zeros((cptr[-1], order), dtype=np.int64)
    for d in np.unique(dl):
        d = int(d)
        if d < order:
            continue
        ls = np.flatnonzero(dl == d)
        pos = np.array(list(combinations(range(d), order)), dtype=np.int64)
        fe = feats[fptr[ls][:, None] + np.arange(d)]  # (n_l, d)
        rows = cptr[ls][:, None] + np.arange(len(pos))  # (n_l, C)
        subsets[rows.ravel()] = fe[:, pos].reshape(-1, order)
    return (max_depth, distinct), leaf_index, fptr, feats, cptr, subsets


def _subset_keys(a, n_features):
    """One int64 key per row of ``a`` (sorted subsets, ``(m, k)``), increasing with
    the rows' lexicographic order; ``None`` where ``n_features ** k`` overflows."""
    k = a.shape[1]
    if n_features**k >= 1 << 62:
        return None
    keys = a[:, 0].astype(np.int64)
    for c in range(1, k):
        keys *= n_features
        keys += a[:, c]
    return keys


def _distinct_subsets(a, n_features):
    """The distinct rows of ``a`` (sorted subsets) in lexicographic order, and the
    index of each row of ``a`` among them."""
    k = a.shape[1]
    if len(a) == 0:
        return a.reshape(0, k), np.zeros(0, dtype=np.int64)
    keys = _subset_keys(a, n_features)
    if keys is None:
        uniq, inv = np.unique(a, axis=0, return_inverse=True)
        return uniq, inv.reshape(-1).astype(np.int64)
    n_keys = n_features**k
    if n_keys <= 1 << 24:
        seen = np.zeros(n_keys, dtype=bool)
        seen[keys] = True
        ukeys = np.flatnonzero(seen)
    else:
        ukeys = np.unique(keys)
    uniq = np.empty((len(ukeys), k), dtype=np.int64)
    rest = ukeys.copy()
    for c in range(k - 1, -1, -1):
        uniq[:, c] = rest % n_features
        rest //= n_features
    return uniq, np.searchsorted(ukeys, keys).astype(np.int64)


def _positions(rows, table, n_features):
    """The index of each of ``rows`` in ``table`` (sorted subsets), -1 if absent."""
    out = np.full(len(rows), -1, dtype=np.int64)
    if len(rows) == 0 or len(table) == 0:
        return out
    rkeys, tkeys = _subset_keys(rows, n_features), _subset_keys(table, n_features)
    if rkeys is None:
        rkeys, tkeys = _row_keys(rows), _row_keys(table)
    order = np.argsort(tkeys, kind="stable")
    skeys = tkeys[order]
    pos = np.minimum(np.searchsorted(skeys, rkeys), len(skeys) - 1)
    hit = skeys[pos] == rkeys
    out[hit] = order[pos[hit]]
    return out


def interaction_subsets(flat, order):
    """The feature subsets that can have a nonzero order-``order`` interaction.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.
    order : int
        Subset size ``k >= 1``.

    Returns
    -------
    ndarray of int64, shape (m, order)
        Every sorted ``k``-subset of distinct features that occur together on some
        root-to-leaf path, each once, in lexicographic order.
    """
    order = int(order)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if order == 1:
        left = _i64(flat.children_left)
        used = np.unique(_i64(flat.feature)[left >= 0])
        return used.reshape(-1, 1).astype(np.int64)
    subsets = _leaf_subsets(flat, order)[-1]
    return _distinct_subsets(subsets, flat.n_features)[0]


def _row_keys(a):
    a = np.ascontiguousarray(a, dtype=np.int64)
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()


def shapley_interactions(
    flat: FlatEnsemble,
    X,
    order,
    *,
    subsets=None,
    n_quadrature="auto",
    n_threads=1,
    prepared=None,
):
    """Exact order-``k`` Shapley interaction index (SII) of feature subsets.

    ``SII(T) = sum over S in N \\ T of |S|! (d - |S| - k)! / (d - k + 1)!`` times the
    discrete derivative of the path-dependent game on ``T`` at ``S``; order 1 gives the
    Shapley values. Computed by leaf extraction: each leaf adds its term to the
    ``k``-subsets of its path features (column ids precomputed once per call).

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble.
    X : array-like of shape (n_samples, n_features)
        Rows to explain.
    order : int
        Interaction order ``k >= 1``.
    subsets : array-like of int of shape (m, order), default=None
        Subsets to report (each row distinct features, any order within a row).
        Default: :func:`interaction_subsets` ``(flat, order)``; other subsets are zero.
    n_quadrature : "auto" or int, default="auto"
        Gauss-Legendre points per tree; ``"auto"`` is exact for this order.
    n_threads : int or None, default=1
        OpenMP threads over rows; results are bit-identical for any value.
    prepared : object, default=None
        For ``order >= 3``: ``prepare(flat, order, n_quadrature)`` of this ensemble,
        to skip rebuilding it.

    Returns
    -------
    ndarray of float64, shape (n_samples, m, n_outputs)
        Column ``c`` is the interaction of ``subsets[c]``.
    """
    order = int(order)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    X = _validate_X(flat, X)
    if order == 1:
        if subsets is None:
            subsets = interaction_subsets(flat, 1)
        subsets = _checked_subsets(flat, subsets, 1)
        phi = shap_values(flat, X, n_quadrature=n_quadrature, n_threads=n_threads)
        return np.ascontiguousarray(phi[:, subsets[:, 0], :])
    kd = prepared
    if kd is None:
        kd = _prepare_leaves(flat, order, n_quadrature)
    elif kd.leaf_order != order:
        raise ValueError(
            f"prepared must be prepare(flat, {order}) for order {order} (order 2: "
            "leave it None)"
        )
    n, K = X.shape[0], flat.n_outputs
    if subsets is None:
        out = np.zeros((n, len(kd.subsets), K), dtype=np.float64)
        _quadrature.shap_orderk(kd, X, order, out, _n_threads(n_threads, n))
        return out
    subsets = _checked_subsets(flat, subsets, order)
    wanted, wanted_inv = _distinct_subsets(subsets, flat.n_features)
    # the column of each co-occurring subset among the wanted ones (-1: not wanted)
    where = _positions(kd.subsets, wanted, flat.n_features)
    out = np.zeros((n, len(wanted), K), dtype=np.float64)
    _quadrature.shap_orderk(
        kd, X, order, out, _n_threads(n_threads, n), cols=where[kd.leaf_columns()]
    )
    if len(wanted) == len(subsets) and np.array_equal(
        wanted_inv, np.arange(len(subsets))
    ):
        return out
    return np.ascontiguousarray(out[:, wanted_inv, :])


def _checked_subsets(flat, subsets, order):
    subsets = np.asarray(subsets, dtype=np.int64)
    if subsets.ndim != 2 or subsets.shape[1] != order:
        raise ValueError(f"subsets must have shape (m, {order}), got {subsets.shape}")
    subsets = np.sort(subsets, axis=1)
    if subsets.size and (
        subsets.min() < 0
        or subsets.max() >= flat.n_features
        or np.any(np.diff(subsets, axis=1) == 0)
    ):
        raise ValueError("subsets must hold distinct features in [0, n_features)")
    return subsets
