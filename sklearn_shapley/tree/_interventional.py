"""Interventional (background) Shapley and Banzhaf values of a tree ensemble.

The Python face of the kernel in :mod:`._interventional_kernel` (whose docstring has the
formulas): the game is ``v_x(S) = mean_b f(x_S, b_¬S)`` over the rows ``b`` of a
background, ``f`` the ensemble's raw output. Each leaf folds the background into a
table over the ``2^k`` subsets of its ``k`` path players once; a row's values are
then a few look-ups per leaf, so the cost grows as rows plus background rows, never
as their product. The tables of a run of trees are built, used for every row and
dropped before the next run, so memory stays bounded by ``CHUNK_BYTES`` (beyond the
output) at any depth; they are kept between calls when all of them fit in
``CACHE_BYTES``.
"""

from __future__ import annotations

import math

import numpy as np

from .._memory import check_fits_in_memory
from .._openmp import effective_n_threads
from . import _interventional_kernel as _kernel
from ._flat import CATEGORICAL_SPLIT, NUMERIC_SPLIT, encode_inputs
from ._kernel import _structure

__all__ = ["InterventionalTrees"]

#: Bytes of leaf tables built at once (a larger tree is built alone).
CHUNK_BYTES = 64 << 20
#: Leaf tables up to this size in all are kept between calls.
CACHE_BYTES = 256 << 20
#: Most distinct players on one root-to-leaf path (a leaf's tables hold ``2^k``).
MAX_PATH_PLAYERS = 30
#: The values computed: Shapley or Banzhaf.
INDICES = ("shapley", "banzhaf")


def _i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


class InterventionalTrees:
    """Interventional Shapley or Banzhaf values (and pairs) of a flat tree ensemble.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble (:func:`~sklearn_shapley.tree.flatten_ensemble`).
    background : array-like of shape (n_background, n_columns)
        The rows held-out players are taken from (``n_columns >= flat.n_features``;
        extra columns are null players).
    index : {"shapley", "banzhaf"}, default="shapley"
        Shapley values (weights ``s! (n − s − 1)! / n!``) or Banzhaf values (uniform
        weights ``1 / 2^(n − 1)``) over the coalitions of the other players.
    players : list of lists of int, default=None
        Column groups treated as one player each (a partition of the columns).
    """

    def __init__(self, flat, background, *, index="shapley", players=None):
        from ..games import player_membership

        if index not in INDICES:
            raise ValueError(f"index must be one of {INDICES}, got {index!r}.")
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or len(background) == 0:
            raise ValueError("background must be a non-empty 2-D array.")
        if background.shape[1] < flat.n_features:
            raise ValueError(
                f"background has {background.shape[1]} columns, the ensemble uses "
                f"{flat.n_features}."
            )
        # the model's own input mappings (categories to codes, zeros to missing)
        background = encode_inputs(flat, background)
        internal = flat.children_left >= 0
        kinds = np.asarray(flat.split_kind)[internal]
        if not np.isin(kinds, (NUMERIC_SPLIT, CATEGORICAL_SPLIT)).all():
            raise ValueError(
                "the interventional kernel knows numeric and categorical splits only."
            )
        self.flat, self.index, self.players = flat, index, players
        self.n_columns = background.shape[1]
        membership = player_membership(players, self.n_columns)
        self.n_players = membership.shape[0]
        self.background = np.ascontiguousarray(background)
        depth = int(_structure(flat)[0].max(initial=0))  # edges
        (
            self._order,
            self._node_bit,
            self._leaf_of_node,
            self._leaf_node,
            self._leaf_k,
            self._tree_leaves,
            self._players_at,
            self._leaf_players,
            self._pos_depth,
            self._pos_left,
        ) = _kernel.layout(
            _i64(flat.tree_offsets),
            _i64(flat.children_left),
            _i64(flat.children_right),
            _i64(np.where(internal, flat.feature, 0)),
            _i64(membership.argmax(axis=0)),
            depth,
        )
        largest = int(self._leaf_k.max(initial=0))
        if largest > MAX_PATH_PLAYERS:
            raise ValueError(
                f"A root-to-leaf path of this ensemble tests {largest} distinct "
                f"players; interventional values handle at most {MAX_PATH_PLAYERS} "
                "(each leaf holds a table over the subsets of its path players). "
                "Group features into players, or use "
                "feature_perturbation='tree_path_dependent'."
            )
        self._rule_at, self._rule_t, self._rule_w = _rules(largest, index)
        self._cache = {}

    def __getstate__(self):
        # the tables are a cache, rebuilt on first use
        return {**self.__dict__, "_cache": {}}

    def _trees(self, table_at):
        """The kernel's view of the trees, with the leaves' table offsets."""
        flat = self.flat
        bitsets = np.ascontiguousarray(flat.cat_bitsets, dtype=np.uint32)
        return _kernel.TreeArrays(
            _i64(flat.tree_offsets),
            _i64(flat.children_left),
            _i64(flat.children_right),
            _i64(flat.feature),
            np.ascontiguousarray(flat.threshold, dtype=np.float64),
            np.ascontiguousarray(flat.missing_left, dtype=np.uint8),
            np.ascontiguousarray(flat.split_kind, dtype=np.uint8),
            _i64(flat.cat_start),
            _i64(flat.cat_len),
            bitsets if bitsets.size else np.zeros(1, dtype=np.uint32),
            self._node_bit,
            self._order,
            self._leaf_of_node,
            self._leaf_node,
            self._leaf_k,
            self._tree_leaves,
            table_at,
            self._pos_depth,
            self._pos_left,
            np.dtype(flat.decision_dtype) == np.float32,
        )

    def _runs(self, order):
        """``(first_tree, last_tree, table_at)`` runs of trees whose tables take at
        most ``CHUNK_BYTES`` (or one tree), checked against the memory available."""
        n_tables = _kernel.N_TABLES[order]
        sizes = n_tables * np.left_shift(1, self._leaf_k.astype(np.int64))
        table_at = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=table_at[1:])
        per_tree = np.diff(table_at[self._tree_leaves])
        if len(per_tree):
            check_fits_in_memory(
                (int(per_tree.max()),),
                "The interventional tables of one tree",
                advice="use shallower trees or feature_perturbation="
                "'tree_path_dependent'.",
            )
        runs, first, held = [], 0, 0
        for t, size in enumerate(per_tree.tolist()):
            if held and held + size > CHUNK_BYTES // 8:
                runs.append((first, t))
                first, held = t, 0
            held += size
        if self.flat.n_trees:
            runs.append((first, self.flat.n_trees))
        return runs, table_at, int(table_at[-1])

    def _tables(self, trees, first, last, table_at, order, n_threads):
        begin, end = (
            table_at[self._tree_leaves[first]],
            table_at[self._tree_leaves[last]],
        )
        tables = np.empty(int(end - begin), dtype=np.float64)
        _kernel.leaf_tables(
            trees,
            # transposed: the kernel reads a feature of a block of rows side by side
            np.ascontiguousarray(self.background.T),
            first,
            last,
            order,
            self._rule_at,
            self._rule_t,
            self._rule_w,
            tables,
            n_threads,
        )
        return tables

    def values(self, X, interaction_order=1, n_threads=None):
        """The values of every player for every row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_columns)
        interaction_order : {1, 2}, default=1
            1: Shapley / Banzhaf values ``(n, d, K)``. 2: the interaction matrix
            ``(n, d, d, K)`` in the TreeSHAP convention (off-diagonal half the
            pairwise interaction index, rows summing to the values).
        n_threads : int or None, default=None
            OpenMP threads over rows; the results are bit-identical for any value.

        Returns
        -------
        ndarray of float64
        """
        if interaction_order not in (1, 2):
            raise ValueError(
                f"interaction_order must be 1 or 2, got {interaction_order!r}."
            )
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_columns:
            raise ValueError(f"X must have shape (n, {self.n_columns}), got {X.shape}.")
        X = np.ascontiguousarray(encode_inputs(self.flat, X))
        n, d, K = len(X), self.n_players, self.flat.n_outputs
        shape = (n, d, K) if interaction_order == 1 else (n, d, d, K)
        check_fits_in_memory(shape, "The interventional values")
        out = np.zeros(shape)
        threads = int(max(1, effective_n_threads(n_threads)))
        runs, table_at, total = self._runs(interaction_order)
        trees = self._trees(table_at)
        keep = total * 8 <= CACHE_BYTES
        flat = self.flat
        for first, last in runs:
            key = (interaction_order, first)
            tables = self._cache.get(key)
            if tables is None:
                tables = self._tables(
                    trees, first, last, table_at, interaction_order, threads
                )
                if keep:
                    self._cache[key] = tables
            _kernel.add_values(
                trees,
                self._players_at,
                self._leaf_players,
                np.ascontiguousarray(flat.value, dtype=np.float64).reshape(
                    flat.n_nodes, -1
                ),
                _i64(flat.tree_group),
                X,
                first,
                last,
                interaction_order,
                tables,
                out.reshape(-1),
                d,
                threads,
            )
        return out


def _rules(largest, index):
    """The points and weights for a leaf of ``k`` path players,
    ``t/w[at[k]:at[k + 1]]``, ``k = 0..largest``: Gauss–Legendre on [0, 1] with
    ``max(1, ceil(k / 2))`` points for Shapley (exact for the integrands of degree
    ``k − 1``), the one point ``t = ½`` of weight 1 for Banzhaf."""
    ts, ws = [], []
    for k in range(largest + 1):
        if index == "banzhaf":
            t, w = np.array([0.5]), np.array([1.0])
        else:
            x, w = np.polynomial.legendre.leggauss(max(1, math.ceil(k / 2)))
            t, w = 0.5 * (x + 1.0), 0.5 * w
        ts.append(t)
        ws.append(w)
    at = np.zeros(largest + 2, dtype=np.int64)
    np.cumsum([len(t) for t in ts], out=at[1:])
    return at, np.concatenate(ts), np.concatenate(ws)
