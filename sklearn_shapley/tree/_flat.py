"""One flat representation of a tree ensemble, whatever library grew it.

Every reader (one module per library, dispatched by
:func:`~sklearn_shapley.tree.flatten_ensemble`) turns a model into a
:class:`FlatEnsemble`; the Cython kernel sees only its arrays, and :func:`predict_raw`,
a vectorised numpy implementation of the decision rule below, is the readers' oracle.
Nodes of all trees are concatenated; tree ``t`` owns nodes
``tree_offsets[t]:tree_offsets[t + 1]`` and its root is ``tree_offsets[t]``. Child
indices are global (absolute) node indices.

Decision rule at an internal node ``n`` for a row ``x`` (after ``x`` has been cast to
``decision_dtype``, the precision in which the model itself compares):

- ``x[feature[n]]`` is NaN: go left iff ``missing_left[n]``;
- numeric split (``split_kind[n] == 0``): go left iff ``x[f] <= threshold[n]``
  (readers of strict ``x < c`` models store the largest value below ``c`` in
  ``decision_dtype``);
- categorical split (``split_kind[n] == 1``): the category ``c = int(x[f])`` goes left
  iff ``0 <= c < 32 * cat_len[n]`` and bit ``c`` of the words
  ``cat_bitsets[cat_start[n] : cat_start[n] + cat_len[n]]`` is set (word ``c // 32``,
  bit ``c % 32``); otherwise right.

Before the rule, :func:`encode_inputs` maps the model's input to the values the rule
reads, one feature at a time (every explainer path and :func:`predict_raw` apply it):

- a model given a value that marks a missing entry besides NaN (XGBoost's
  ``missing=``) has it as ``missing_value``: values equal to it in float32 (as
  XGBoost's ``DMatrix`` compares them) become NaN;
- a model that maps raw categories to codes itself (scikit-learn's
  HistGradientBoosting: its ordinal encoder, exact matches only, anything else an
  unknown category treated as missing) has ``category_values[f] = (known, codes)`` for
  its categorical feature ``f``: a value equal to ``known[i]`` becomes ``codes[i]``
  and any other value NaN;
- a model that treats values near zero as missing (LightGBM's ``zero_as_missing``:
  ``|x| <= ZERO_THRESHOLD``, and NaN, follow a split's default side) lists the
  features where it does so in ``zero_as_missing``: such values become NaN there, and
  its reader sets ``missing_left`` of every node on those features to the side the
  model sends zero and NaN.

A scipy sparse matrix is read one block of rows at a time (:func:`map_row_blocks`),
each made dense by :func:`dense_rows` with ``sparse_fill`` at its absent entries: what
the model's library reads there (NaN, missing, for XGBoost; 0.0 for LightGBM and
scikit-learn), before the mappings above.

``cover`` is the training weight reaching each node (sum of hessians for xgboost), with
``0 < cover[child] <= cover[parent]``; ``value[n, k]`` is leaf ``n``'s contribution to
raw output ``k`` (learning rate, tree weights and forest averaging already applied;
zero at internal nodes). ``tree_group[t]`` is the one output tree ``t`` adds to, or
``-1`` when it adds its whole ``value`` row to every output (sklearn multi-output
forests). The raw model output is ``base_offset + sum over trees of the leaf value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

NUMERIC_SPLIT = 0
CATEGORICAL_SPLIT = 1
#: LightGBM's kZeroThreshold (a float32 constant compared in double precision): with
#: ``zero_as_missing``, ``|x| <= ZERO_THRESHOLD`` is a zero, treated as missing.
ZERO_THRESHOLD = float(np.float32(1e-35))


@dataclass
class FlatEnsemble:
    """A tree ensemble as flat, C-contiguous arrays (see the module docstring)."""

    tree_offsets: np.ndarray  # int64 (n_trees + 1,)
    children_left: np.ndarray  # int64 (n_nodes,), -1 at leaves
    children_right: np.ndarray  # int64 (n_nodes,), -1 at leaves
    feature: np.ndarray  # int64 (n_nodes,), -1 at leaves
    threshold: np.ndarray  # float64 (n_nodes,)
    missing_left: np.ndarray  # uint8 (n_nodes,)
    split_kind: np.ndarray  # uint8 (n_nodes,)
    cat_start: np.ndarray  # int64 (n_nodes,)
    cat_len: np.ndarray  # int64 (n_nodes,)
    cat_bitsets: np.ndarray  # uint32 (n_words,)
    cover: np.ndarray  # float64 (n_nodes,)
    value: np.ndarray  # float64 (n_nodes, n_outputs)
    tree_group: np.ndarray  # int64 (n_trees,)
    base_offset: np.ndarray  # float64 (n_outputs,)
    n_features: int
    decision_dtype: type = np.float32
    output_names: list = field(default_factory=list)
    model_type: str = ""
    category_values: dict = field(default_factory=dict)  # f -> (known, codes)
    # int64 (n,): features whose |x| <= ZERO_THRESHOLD is missing (becomes NaN)
    zero_as_missing: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    missing_value: float = np.nan  # a value that marks a missing entry, besides NaN
    sparse_fill: float = 0.0  # what an absent entry of a sparse matrix is

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.children_left)

    @property
    def n_outputs(self) -> int:
        return self.value.shape[1]


def encode_inputs(flat, X):
    """``X`` (2-D) as the decision rule reads it: values the model treats as missing
    made NaN and categories made the model's codes (see the module docstring); ``X``
    itself when the model has no such mapping, else a float64 copy."""
    zero = np.asarray(flat.zero_as_missing, dtype=np.int64)
    missing = float(flat.missing_value)
    if not flat.category_values and zero.size == 0 and np.isnan(missing):
        return X
    X = np.array(X, dtype=np.float64)
    if not np.isnan(missing):
        with np.errstate(over="ignore"):  # beyond float32: inf, as in the model
            X[X.astype(np.float32) == np.float32(missing)] = np.nan
    if zero.size:
        columns = X[:, zero]
        columns[np.abs(columns) <= ZERO_THRESHOLD] = np.nan
        X[:, zero] = columns
    for f, (known, codes) in flat.category_values.items():
        column = X[:, f]
        index = np.minimum(np.searchsorted(known, column), len(known) - 1)
        X[:, f] = np.where(known[index] == column, codes[index], np.nan)
    return X


#: Bytes of dense float64 rows a sparse matrix is made into at once (one row at least).
SPARSE_BLOCK_BYTES = 64 << 20


def dense_rows(flat, X):
    """The rows of the sparse matrix ``X`` as a dense float64 array whose absent
    entries are ``flat.sparse_fill`` (stored entries, explicit zeros too, keep their
    value; duplicate entries are summed, as scipy's ``toarray``)."""
    X = sparse.csr_array(X)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    out = np.full(X.shape, flat.sparse_fill, dtype=np.float64)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    out[rows, X.indices] = X.data
    return out


def map_row_blocks(flat, X, compute):
    """``compute(rows)`` over the rows of ``X``, stacked: a dense ``X`` at once, a
    scipy sparse one a block of rows at a time, each made dense by :func:`dense_rows`
    (at most ``SPARSE_BLOCK_BYTES`` of them)."""
    if not sparse.issparse(X):
        return compute(X)
    X = sparse.csr_array(X)
    n = X.shape[0]
    step = max(1, SPARSE_BLOCK_BYTES // (8 * max(X.shape[1], 1)))
    first = compute(dense_rows(flat, X[:step]))
    if n <= step:
        return first
    out = np.empty((n,) + first.shape[1:], dtype=first.dtype)
    out[:step] = first
    for start in range(step, n, step):
        out[start : start + step] = compute(dense_rows(flat, X[start : start + step]))
    return out


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
        The ensemble, as returned by
        :func:`~sklearn_shapley.tree.flatten_ensemble`.
    X : array-like or scipy sparse matrix of shape (n_samples, n_features)
        Numeric input; NaN marks a missing value, categorical features hold the
        model's category values; a sparse matrix's absent entries are
        ``flat.sparse_fill``.
    chunk_size : int, default=4096
        Number of rows processed at once (bounds the memory use).

    Returns
    -------
    raw : ndarray of shape (n_samples, n_outputs)
        ``base_offset`` plus the sum over trees of the reached leaf values.
    """
    if sparse.issparse(X):
        return map_row_blocks(
            flat, X, lambda rows: predict_raw(flat, rows, chunk_size=chunk_size)
        )
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    if X.shape[1] < flat.n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, the ensemble uses {flat.n_features}."
        )
    X = encode_inputs(flat, X).astype(flat.decision_dtype).astype(np.float64)
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
