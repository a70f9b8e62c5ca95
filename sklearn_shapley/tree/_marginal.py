"""The marginal (interventional) game of a tree ensemble, exactly, from its leaves.

The raw output of a :class:`~sklearn_shapley.tree._flat.FlatEnsemble` is
``f(x) = c + Σ_L value_L [x reaches L]``, and ``x`` reaches leaf ``L`` when every node
on its path sends ``x`` the leaf's way: a product, over the players ``P_L`` whose
columns the path tests, of "``x`` is inside the leaf's box on player ``p``'s columns".
The hybrid row ``(x_S, b_{¬S})`` reaches ``L`` when ``x`` is inside on ``S ∩ P_L`` and
``b`` on ``P_L ∖ S``, so the marginal game over a background ``B`` is, exactly,

    v_x(S) = c + Σ_L value_L [S ∩ P_L ⊆ I_L(x)] q_L(S ∩ P_L),
    q_L(A) = mean_{b ∈ B} [P_L ∖ A ⊆ I_L(b)],

where ``I_L(x) ⊆ P_L`` is the set of path players on which ``x`` is inside. Each leaf
is a game on its ``k = |P_L|`` players that depends on ``x`` only through the pattern
``I_L(x)``, one of ``2^k``: its first and last marginal contributions and its
players' pairwise interaction sums (what FastSHAP's network takes) are tables over the
patterns, built once from ``q_L`` by subset-sum (zeta) transforms. The tables of a
small tree's leaves are summed into one table indexed by the row's decisions at the
tree's nodes, holding only that tree's players' columns. Evaluating a row is then one
table look-up per small tree, or per leaf of a larger one, whatever the background's
size. The exact Shapley values come from the
interventional kernel (:mod:`._interventional`), which needs no such tables and so
also serves ensembles too deep for them (:class:`TreeShapleyMarginalGame`).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..games import (
    Game,
    MarginalGame,
    apply_link,
    check_masks,
    check_rows,
    pair_interaction_sums,
    player_membership,
)
from ._ensemble import flatten_ensemble
from ._flat import CATEGORICAL_SPLIT, encode_inputs, goes_left, predict_raw
from ._hybrid import (
    decision_patterns,
    first_last_raw,
    gather_sum,
    hybrid_raw,
    leaf_offsets,
    pair_raw,
    small_leaf_values,
    softmax,
    threshold_decisions,
)
from ._interventional import InterventionalTrees

__all__ = [
    "TreeHybridMarginalGame",
    "TreeMarginalGame",
    "TreeShapleyMarginalGame",
    "tree_marginal_game",
]

#: Most table entries (float64) a :class:`TreeMarginalGame` may hold: a leaf on ``k``
#: path players holds ``2^k (3d + 1) K`` (``d`` players, ``K`` outputs).
MAX_TABLE_ENTRIES = 2**24
#: Most rows of a tree's table indexed by its decisions (at most 8 internal nodes).
TREE_UNIT_ROWS = 256
#: Most (row, node) decisions and (row, leaf) pairs evaluated at once.
MAX_DECISIONS = 2**21
#: Most (row, leaf) pairs times coalitions evaluated at once by ``__call__``.
MAX_TRIPLES = 2**22


class TablesTooLargeError(ValueError):
    """The ensemble's paths test too many distinct players for the tables."""


class TreeMarginalGame(Game):
    """The marginal game of a tree ensemble, exact and fast.

    ``v_x(S) = mean_b g(f(x_S, b_{¬S}))`` over the rows ``b`` of ``background``, where
    ``f`` is the ensemble's raw output and ``g(r) = r @ output_map + output_offset`` an
    affine map to the explained outputs: the same values as
    :class:`~sklearn_shapley.games.MarginalGame` of a model whose explained output is
    that map of the raw sum (see :func:`tree_marginal_game`), in time independent of
    the background's size once built.

    Parameters
    ----------
    flat : FlatEnsemble
        The ensemble (:func:`~sklearn_shapley.tree.flatten_ensemble`).
    background : array-like of shape (n_background, n_features)
    players : list of lists of int, default=None
        Column groups treated as one player each.
    output_map : array-like of shape (n_raw_outputs, n_outputs), default=None
        Identity when None.
    output_offset : array-like of shape (n_outputs,), default=None
        Zeros when None.
    max_table_entries : int, default=MAX_TABLE_ENTRIES
        A larger ensemble raises ``TablesTooLargeError`` (a ``ValueError``): its
        leaves test too many players.

    Attributes
    ----------
    matches_model : bool
        Whether ``v_x(N)`` is the explained model's own output to float64
        precision: True, unless :func:`tree_marginal_game` found the model's output
        rounded (float32 predictions, the logit of a probability).
    """

    matches_model = True
    #: Model evaluations one value costs, roughly (a value is a sparse look-up per
    #: tree or leaf, about ten tree-ensemble predictions' work).
    evaluation_cost = 10

    def __init__(
        self,
        flat,
        background,
        *,
        players=None,
        output_map=None,
        output_offset=None,
        max_table_entries=MAX_TABLE_ENTRIES,
    ):
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or len(background) == 0:
            raise ValueError("background must be a non-empty 2-D array.")
        if background.shape[1] < flat.n_features:
            raise ValueError(
                f"background has {background.shape[1]} features, the ensemble uses "
                f"{flat.n_features}."
            )
        self.flat = flat
        self.background = background
        self.players = players
        self.n_features = background.shape[1]
        membership = player_membership(players, self.n_features)
        self.n_players = d = membership.shape[0]
        self._player_of_feature = membership.argmax(axis=0)
        raw = flat.n_outputs
        output_map = np.eye(raw) if output_map is None else output_map
        self.output_map = np.asarray(output_map, dtype=np.float64).reshape(raw, -1)
        self.n_outputs = self.output_map.shape[1]
        offset = np.zeros(self.n_outputs) if output_offset is None else output_offset
        self.output_offset = np.asarray(offset, dtype=np.float64).reshape(-1)
        self._offset = flat.base_offset @ self.output_map + self.output_offset
        # internal nodes in node order: a tree's are a contiguous run of columns
        self._internal = np.flatnonzero(flat.children_left >= 0)
        column = np.full(flat.n_nodes, -1, dtype=np.int64)
        column[self._internal] = np.arange(len(self._internal))
        by_k = {}
        for leaf, tree, nodes, lefts in _leaf_paths(flat):
            value = np.zeros(raw)
            group = flat.tree_group[tree]
            if group >= 0:
                value[group] = flat.value[leaf, group]
            else:
                value[:] = flat.value[leaf]
            value = value @ self.output_map
            players = sorted({self._player_of_feature[flat.feature[n]] for n in nodes})
            if not players:  # a one-leaf tree: a constant
                self._offset = self._offset + value
                continue
            slot = {p: j for j, p in enumerate(players)}
            path = sorted(
                (slot[self._player_of_feature[flat.feature[n]]], column[n], left)
                for n, left in zip(nodes, lefts)
            )
            by_k.setdefault(len(players), []).append((players, value, path, tree))
        K = self.n_outputs
        entries = sum(len(g) * 2**k for k, g in by_k.items()) * (2 * d + 1) * K
        if entries > max_table_entries:
            raise TablesTooLargeError(
                f"This ensemble's leaves would need {entries} table entries "
                f"(max_table_entries={max_table_entries}): its paths test too many "
                "distinct players. Explain it with MarginalGame instead."
            )
        # every leaf's path, padded to the longest with an always-true decision
        leaves = [leaf for k in sorted(by_k) for leaf in by_k[k]]
        depth = max((len(path) for _, _, path, _ in leaves), default=0)
        self._path_columns = np.full((len(leaves), depth), len(self._internal))
        self._path_lefts = np.ones((len(leaves), depth), dtype=bool)
        self._path_bits = np.zeros((len(leaves), depth), dtype=np.int64)
        for i, (_, _, path, _) in enumerate(leaves):
            for j, (slot, column_, left) in enumerate(path):
                self._path_columns[i, j] = column_
                self._path_lefts[i, j] = left
                self._path_bits[i, j] = 1 << slot
        self._leaf_full = np.array([2 ** len(p) - 1 for p, _, _, _ in leaves], np.int64)
        background = np.vstack(
            [
                self._patterns(self._decisions(background[rows]))
                for rows in self._row_chunks(len(background), 1)
            ]
        )
        self._groups, first = [], 0
        for k in sorted(by_k):
            last = first + len(by_k[k])
            self._groups.append(_LeafGroup(k, by_k[k], d, background[:, first:last]))
            first = last
        self._empty = self._offset + sum(
            (g.q[:, 0] @ g.value for g in self._groups), np.zeros(K)
        )
        # per leaf, a block of 2^k rows (one per pattern), group after group
        tables = [g.tables() for g in self._groups]
        tables = np.concatenate(tables) if tables else np.zeros((0, (2 * d + 1) * K))
        self.max_table_entries = max_table_entries
        self._build_units(leaves, tables, column)
        self._pair_entries = max(len(tables), self._n_table_rows) * 2 * d * K

    def _build_units(self, leaves, tables, column):
        """The look-up units of :meth:`_table_sums` and their stacked tables.

        A tree of at most ``log2(TREE_UNIT_ROWS)`` internal nodes is one unit, whose
        row is the bit pattern of the row's decisions at its nodes, its table the sum
        of its leaves' rows at the patterns those decisions give: one look-up per
        tree. Every leaf of a larger tree is a unit of its own (its block of ``2^k``
        rows, indexed by its pattern).
        """
        flat = self.flat
        blocks = np.r_[0, np.cumsum(self._leaf_full + 1)][:-1]
        trees = np.array([tree for _, _, _, tree in leaves], dtype=np.int64)
        padding = len(self._internal)  # the always-true column of _decisions
        small, tree_columns = [], []
        # per small tree, the leaves' table rows at each combination of decisions
        self._unit_rows = []
        for tree in np.unique(trees):
            nodes = np.arange(flat.tree_offsets[tree], flat.tree_offsets[tree + 1])
            nodes = column[nodes[flat.children_left[nodes] >= 0]]
            if 2 ** len(nodes) > TREE_UNIT_ROWS:
                continue
            # every combination of decisions at the tree's nodes, then always true
            n = len(nodes)
            left = np.ones((2**n, n + 1), dtype=bool)
            left[:, :n] = (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1
            mine = np.flatnonzero(trees == tree)
            columns = self._path_columns[mine]
            columns = np.where(columns == padding, n, columns - nodes[0])
            patterns = _patterns(  # (2^n, leaves of the tree)
                left,
                columns,
                self._path_lefts[mine],
                self._path_bits[mine],
                self._leaf_full[mine],
            )
            self._unit_rows.append(blocks[mine] + patterns)
            tree_columns.append(nodes)
            small.append(mine)
        # leaves of the larger trees
        in_small = np.zeros(len(leaves), dtype=bool)
        for mine in small:
            in_small[mine] = True
        self._unit_leaves = np.flatnonzero(~in_small)
        width = max((len(c) for c in tree_columns), default=0)
        # padded with the always-false decision column
        self._tree_columns = np.full(
            (len(tree_columns), width), len(self._internal) + 1
        )
        for i, c in enumerate(tree_columns):
            self._tree_columns[i, : len(c)] = c
        rows = [len(u) for u in self._unit_rows]
        self._tree_block = np.r_[0, np.cumsum(rows)][:-1].astype(np.int64)
        leaf_rows = self._leaf_full[self._unit_leaves] + 1
        self._leaf_unit_block = sum(rows) + np.r_[0, np.cumsum(leaf_rows)][:-1]
        self._leaf_rows = np.concatenate(
            [np.arange(b, b + r) for b, r in zip(blocks[self._unit_leaves], leaf_rows)]
            + [np.zeros(0, dtype=np.int64)]
        )
        self._n_table_rows = sum(rows) + len(self._leaf_rows)
        # each unit's players, padded with a player d that no table row touches
        players = [sorted({p for i in mine for p in leaves[i][0]}) for mine in small]
        players += [leaves[i][0] for i in self._unit_leaves]
        self._unit_players = np.full(
            (len(players), max(map(len, players), default=0)), self.n_players
        )
        for i, p in enumerate(players):
            self._unit_players[i, : len(p)] = p
        self._row_unit = np.repeat(np.arange(len(players)), rows + list(leaf_rows))
        self._first_last = self._unit_tables(tables, self.n_outputs)

    def _unit_tables(self, tables, prefix):
        """The units' stacked tables from the leaves' (one block of ``2^k`` rows a
        leaf, in the order of :meth:`_build_units`' ``leaves``; ``prefix`` columns,
        then blocks of ``(player, output)`` columns): ``(table, columns, width)``,
        each unit's rows holding only the prefix and its own players' columns,
        and where :meth:`_table_sums` adds them in its ``width`` columns (the
        prefix, then blocks of ``(d + 1) K``: a padding player's columns last)."""
        d, K = self.n_players, self.n_outputs
        parts = [tables[rows].sum(axis=1) for rows in self._unit_rows]
        parts.append(tables[self._leaf_rows])
        dense = np.concatenate(parts)
        n_rows, n_blocks = len(dense), (dense.shape[1] - prefix) // (d * K)
        n_units, m = self._unit_players.shape
        padding = self._unit_players == d  # (units, m)
        block = np.arange(n_blocks)[:, None, None]
        outputs = np.arange(K)

        def per_unit(players):  # (blocks, units, m) players -> (units, columns)
            cells = (players[..., None] * K + outputs).transpose(1, 0, 2, 3)
            return cells.reshape(n_units, n_blocks * m * K)

        first = np.broadcast_to(np.arange(prefix), (n_units, prefix))
        source = np.hstack(
            [
                first,
                prefix + per_unit(block * d + np.where(padding, 0, self._unit_players)),
            ]
        )
        columns = np.hstack(
            [first, prefix + per_unit(block * (d + 1) + self._unit_players)]
        )
        # zero where a unit's player is the padding (its source is player 0's)
        keep = np.tile(np.repeat(~padding, K, axis=1), n_blocks)
        keep = np.hstack([np.ones((n_units, prefix), dtype=bool), keep])
        table = dense[np.arange(n_rows)[:, None], source[self._row_unit]]
        table *= keep[self._row_unit]
        width = prefix + n_blocks * (d + 1) * K
        return table, np.ascontiguousarray(columns), width

    def _split_sums(self, sums, prefix):
        """``(prefix (n, prefix), blocks)`` of a sum in the layout of
        :meth:`_unit_tables`: each block ``(n, d, K)``, without the padding
        player."""
        d, K = self.n_players, self.n_outputs
        n_blocks = (sums.shape[1] - prefix) // ((d + 1) * K)
        blocks = sums[:, prefix:].reshape(len(sums), n_blocks, d + 1, K)[:, :, :d]
        return sums[:, :prefix], tuple(blocks.transpose(1, 0, 2, 3))

    @property
    def _pair_tables(self):
        """The units' tables of :func:`~sklearn_shapley.games.pair_interaction_sums`
        (two blocks: ``s``, then ``t``; :meth:`_unit_tables`), built on first
        use; None when they would hold more than ``max_table_entries``."""
        if self._pair_entries > self.max_table_entries:
            return None
        if getattr(self, "_pair_table_cache", None) is None:
            leaves = [g.pair_tables() for g in self._groups]
            width = 2 * self.n_players * self.n_outputs
            leaves = np.concatenate(leaves) if leaves else np.zeros((0, width))
            self._pair_table_cache = self._unit_tables(leaves, 0)
        return self._pair_table_cache

    # -- rows to leaf patterns ---------------------------------------------------------
    def _check_X(self, X):
        return check_rows(X, self.n_features)

    def _decisions(self, X):
        """Whether each row goes left at each internal node, then two padding
        columns, always true and always false: ``(n, n_internal + 2)``."""
        left = np.ones((len(X), len(self._internal) + 2), dtype=bool)
        left[:, -1] = False
        left[:, :-2] = _node_decisions(self.flat, self._internal, X)
        return left

    def _patterns(self, left, leaves=slice(None)):
        """``I_L`` of the ``leaves`` (default all) as bit patterns ``(n, n_leaves)``
        from the rows' :meth:`_decisions`."""
        return _patterns(
            left,
            self._path_columns[leaves],
            self._path_lefts[leaves],
            self._path_bits[leaves],
            self._leaf_full[leaves],
        )

    def _table_sums(self, X, tables):
        """``Σ_L table[row of (L, I_L(x))]`` for every row ``x``, for each of the
        units' ``(table, columns, width)`` (:meth:`_unit_tables`): ``(n, width)``
        each, from one look-up per row and unit (:func:`._hybrid.gather_sum`)."""
        from .._openmp import effective_n_threads

        X = self._check_X(X)
        outs = [np.zeros((len(X), width)) for _, _, width in tables]
        n_units = len(self._tree_block) + len(self._leaf_unit_block)
        if not n_units:
            return outs
        threads = int(effective_n_threads(None))
        bits = 1 << np.arange(self._tree_columns.shape[1])
        for rows in self._row_chunks(len(X), 1):
            left = self._decisions(X[rows])
            index = np.hstack(
                [
                    self._tree_block + left[:, self._tree_columns] @ bits,
                    self._leaf_unit_block + self._patterns(left, self._unit_leaves),
                ]
            ).astype(np.int64)
            for (table, columns, _), out in zip(tables, outs):
                gather_sum(index, table, columns, out[rows], threads)
        return outs

    def _row_chunks(self, n, per_leaf):
        """Slices of ``n`` rows, each holding at most ``MAX_DECISIONS`` (row, node)
        pairs and ``MAX_TRIPLES`` (row, leaf) pairs times ``per_leaf``."""
        n_leaves = max(1, len(self._leaf_full))
        n_depth = max(1, self._path_columns.shape[1], len(self._internal) // n_leaves)
        step = max(
            1,
            min(
                MAX_DECISIONS // (n_leaves * n_depth),
                MAX_TRIPLES // (n_leaves * per_leaf),
            ),
        )
        for start in range(0, n, step):
            yield slice(start, start + step)

    # -- the game ----------------------------------------------------------------------
    def __call__(self, X, masks):
        X = self._check_X(X)
        masks = check_masks(masks, self.n_players, len(X))
        m = masks.shape[-2]
        out = np.empty((len(X), m, self.n_outputs))
        for rows in self._row_chunks(len(X), m):
            mk = masks if masks.ndim == 2 else masks[rows]
            patterns = self._patterns(self._decisions(X[rows]))
            out[rows] = self._offset
            first = 0
            for group in self._groups:
                last = first + len(group.value)
                out[rows] += group.values(patterns[:, first:last], mk)
                first = last
        return out

    def grand_and_empty(self, X):
        table, columns, _ = self._first_last
        K = self.n_outputs
        grand = (table, np.ascontiguousarray(columns[:, :K]), K)
        (sums,) = self._table_sums(X, [grand])
        full = self._offset + sums
        return full, np.broadcast_to(self._empty, full.shape).copy()

    @property
    def first_last_cost(self):
        """Model evaluations a row's first and last values cost: one look-up per
        unit, as for one value (:meth:`first_last_values`)."""
        return self.evaluation_cost

    @property
    def pair_cost(self):
        """Model evaluations a row's pair values cost: for their sums, one more
        look-up per unit (:meth:`contribution_values`), unless the tables would be
        too large."""
        if self._pair_entries > self.max_table_entries:
            return super().pair_cost
        return self.evaluation_cost

    def first_last_values(self, X):
        """The game on the singletons, the leave-one-outs, then the grand and empty
        coalitions, ``(n, 2 n_players + 2, n_outputs)`` (the order of
        :func:`~sklearn_shapley.games.first_last_masks`), from one look-up per
        unit."""
        return self.contribution_values(X)[0]

    def contribution_values(self, X, pairs=False):
        """The first and last values and, with ``pairs``, the players'
        :func:`~sklearn_shapley.games.pair_interaction_sums`, from one look-up per
        unit in each of the tables (see :meth:`~sklearn_shapley.games.Game.
        contribution_values`)."""
        pair_tables = self._pair_tables if pairs else None
        if pairs and pair_tables is None:
            return super().contribution_values(X, pairs)
        d, K = self.n_players, self.n_outputs
        tables = [self._first_last] + ([pair_tables] if pairs else [])
        sums = self._table_sums(X, tables)
        grand, (first, last) = self._split_sums(sums[0], K)
        full = self._offset + grand
        out = np.empty((len(full), 2 * d + 2, K))
        out[:, :d] = self._empty[None, None] + first
        out[:, d : 2 * d] = full[:, None] + last
        out[:, 2 * d] = full
        out[:, 2 * d + 1] = self._empty
        if not pairs:
            return out, None
        _, (s, t) = self._split_sums(sums[1], 0)
        return out, (s, t)

    def shapley_values(self, X):
        """Exact Shapley values of the game, ``(n, n_players, n_outputs)``, from the
        interventional kernel (:class:`~sklearn_shapley.tree._interventional.
        InterventionalTrees`), built on first use."""
        if getattr(self, "_interventional", None) is None:
            self._interventional = InterventionalTrees(
                self.flat, self.background, players=self.players
            )
        return self._interventional.values(self._check_X(X)) @ self.output_map

    def split_thresholds(self):
        """The ensemble's numeric split thresholds per feature (see
        :meth:`~sklearn_shapley.games.Game.split_thresholds`)."""
        from ..games import ensemble_thresholds

        return ensemble_thresholds(self.flat, self.n_features)


class _ModelValuesGame(Game):
    """A tree ensemble's marginal game whose values are the wrapped
    :class:`~sklearn_shapley.games.MarginalGame`'s: ``v(full)``, ``v(∅)``, the proxy
    and the split thresholds are that game's."""

    matches_model = False

    def grand_and_empty(self, X):
        return self.game.grand_and_empty(X)

    def proxy(self, max_cost=None):
        """The baseline game at the background's mean (the game itself over one
        background row) as a :class:`TreeHybridMarginalGame`: the wrapped game's
        proxy's values, and the first and last values of every player from a few
        walks per tree."""
        if getattr(self, "_proxy", None) is None:
            game = self.game
            if len(game.background) > 1:
                game = game.proxy().as_marginal()
            self._proxy = TreeHybridMarginalGame(game, self.flat, self.output)
        return self._proxy

    def split_thresholds(self):
        return self.game.split_thresholds()


class TreeShapleyMarginalGame(_ModelValuesGame):
    """A tree ensemble's marginal game whose leaves test too many players for
    :class:`TreeMarginalGame`'s tables: its values are the wrapped
    :class:`~sklearn_shapley.games.MarginalGame`'s (the model evaluated on hybrid
    rows), its exact Shapley values the interventional kernel's, whose cost does
    not grow with the tables'.

    Parameters
    ----------
    game : MarginalGame
    flat : FlatEnsemble
        The game's model, flattened.
    output_map : ndarray of shape (n_raw_outputs, n_outputs)
        The game's outputs as a linear map of the ensemble's raw outputs.
    output : callable, default=None
        The model's map from the raw sums ``(n, n_raw_outputs)`` to its
        predictions (before the game's link), for :meth:`proxy`; None: the
        identity.
    """

    def __init__(self, game, flat, output_map, output=None):
        self.game, self.flat, self.output_map = game, flat, output_map
        self.output = _identity if output is None else output
        self.n_players, self.n_outputs = game.n_players, output_map.shape[1]
        self.evaluation_cost = game.evaluation_cost
        self._interventional = InterventionalTrees(
            flat, game.background, players=game.players
        )

    def __call__(self, X, masks):
        return self.game(X, masks)

    def shapley_values(self, X):
        """Exact Shapley values, ``(n, n_players, n_outputs)``."""
        X = check_rows(X, self.game.n_features)
        return self._interventional.values(X) @ self.output_map


class TreeHybridMarginalGame(_ModelValuesGame):
    """The marginal game of a tree ensemble whose explained output is not linear in
    its trees' sums (a classifier's probabilities, a logit of a forest's): the
    model's values, from the trees' paths on the hybrid rows.

    ``v_x(S) = mean_b link(g(f(x_S, b_{¬S})))``, ``f`` the raw sums and ``g`` the
    model's map from them to its predictions. Each hybrid row's path follows from
    the decisions of ``x`` and ``b`` at the nodes, made once per row by the model's
    rule (:mod:`._hybrid`): the wrapped game's values to float64 rounding, a few
    times faster than the model on the hybrid rows it would build, on every thread.

    Parameters
    ----------
    game : MarginalGame
    flat : FlatEnsemble
        The game's model, flattened.
    output : callable
        ``g``: raw sums ``(n, n_raw_outputs)`` to the model's predictions.
    """

    #: (pair, background row) raw sums held at once: 16 MB.
    max_raw = 2**21

    def __init__(self, game, flat, output):
        self.game, self.flat, self.output = game, flat, output
        self.n_players, self.n_features = game.n_players, game.n_features
        self.n_outputs = output(flat.base_offset[None]).shape[1]
        self.evaluation_cost = game.evaluation_cost
        self.output_names = game.output_names
        internal = np.flatnonzero(flat.children_left >= 0)
        column = np.full(flat.n_nodes, -1, dtype=np.int64)
        column[internal] = np.arange(len(internal))
        self._nodes = np.ascontiguousarray(
            np.stack([flat.children_left, flat.children_right, column], axis=1),
            dtype=np.int32,
        )
        is_internal = (flat.children_left >= 0).astype(np.int64)
        first = np.r_[0, np.cumsum(is_internal)][flat.tree_offsets]
        self._trees = np.ascontiguousarray(
            np.stack(
                [flat.tree_offsets[:-1], flat.tree_group, first[:-1], np.diff(first)],
                axis=1,
            ),
            dtype=np.int32,
        )
        self._leaf_offset = leaf_offsets(
            *(
                np.ascontiguousarray(a, dtype=np.int64)
                for a in (flat.tree_offsets, flat.children_left, flat.children_right)
            )
        )
        self._value = np.ascontiguousarray(flat.value, dtype=np.float64)
        self._small_value = small_leaf_values(
            np.ascontiguousarray(flat.tree_offsets, dtype=np.int64),
            self._trees,
            self._value,
        )
        self._base = np.ascontiguousarray(flat.base_offset, dtype=np.float64)
        membership = player_membership(game.players, self.n_features)
        self._player = np.ascontiguousarray(
            membership.argmax(axis=0)[flat.feature[internal]], dtype=np.int32
        )
        self._internal = internal
        self._b_left = _node_decisions(flat, internal, game.background).view(np.uint8)
        self._b_bits = np.asarray(decision_patterns(self._b_left, self._trees))
        # the trees as first_last_raw and pair_raw take them, after the patterns
        self._tree_args = (
            self._player,
            self._nodes,
            self._trees,
            self._leaf_offset,
            self._small_value,
            self._value,
        )

    @property
    def first_last_cost(self):
        """Model evaluations a row's first and last values cost: with one
        background row, a few look-ups or walks per tree for all of them
        (``first_last_raw``); else the model's hybrid values, one per background
        row and coalition."""
        if len(self._b_left) == 1:
            return 4
        return super().first_last_cost

    def proxy(self, max_cost=None):
        """Itself over one background row; else its baseline game at the
        background's mean in this form."""
        return self if len(self._b_left) == 1 else super().proxy()

    def _one_row_ends(self, X):
        """With one background row: ``(x_left, x_bits, first, last, full, empty)``,
        the rows' decisions and decision patterns, then the raw sums of the rows
        ``X`` (:func:`._hybrid.first_last_raw`), ``full`` and ``empty`` with the base
        offset."""
        from .._openmp import effective_n_threads

        X = check_rows(X, self.n_features)
        n, d, K = len(X), self.n_players, len(self._base)
        threads = int(effective_n_threads(None))
        if getattr(self, "_baseline_raw", None) is None:  # its sums, once
            self._baseline_raw = np.zeros((1, K))
            first_last_raw(
                self._b_left,
                self._b_left[0],
                self._b_bits,
                self._b_bits[0],
                *self._tree_args,
                *np.zeros((2, 1, d, K)),
                self._baseline_raw,
                1,
            )
        first, last = np.zeros((n, d, K)), np.zeros((n, d, K))
        full = np.zeros((n, K))
        x_left = _node_decisions(self.flat, self._internal, X).view(np.uint8)
        x_bits = decision_patterns(x_left, self._trees, threads)
        first_last_raw(
            x_left,
            self._b_left[0],
            x_bits,
            self._b_bits[0],
            *self._tree_args,
            first,
            last,
            full,
            threads,
        )
        full += self._base
        return x_left, x_bits, first, last, full, self._baseline_raw + self._base

    def _values(self, raw):
        """The game's values ``(n, m, n_outputs)`` from raw sums ``(n, m, K)``."""
        n, m, K = raw.shape
        values = apply_link(self.output(raw.reshape(-1, K)), self.game.link)
        return values.reshape(n, m, self.n_outputs)

    @property
    def _linear(self):
        """Whether the values are the raw sums (a regressor's, a forest's
        probabilities, under the identity link): the pairs' interaction sums are
        then the raw interactions'. (A binary classifier's log-odds are not: the
        logit link clips its probabilities.)"""
        return self.output is _identity and self.game.link == "identity"

    @property
    def pair_cost(self):
        """Model evaluations a row's pair values cost: with one background row and
        :attr:`_linear`, a few look-ups or walks per tree for all their sums;
        else one value per pair, through the model's output."""
        if len(self._b_left) == 1 and self._linear:
            return 4
        return super().pair_cost

    def first_last_values(self, X):
        """The game on the singletons, the leave-one-outs, then the grand and empty
        coalitions, ``(n, 2 n_players + 2, n_outputs)``; with one background row
        from a few look-ups or walks per tree (:func:`._hybrid.first_last_raw`),
        else the hybrid values."""
        if len(self._b_left) != 1:
            return super().first_last_values(X)
        return self.contribution_values(X)[0]

    def pair_values(self, X):
        """The game on :func:`~sklearn_shapley.games.pair_masks`; with one
        background row from the singletons', leave-one-outs' and pairwise
        interactions' raw sums (:func:`._hybrid.pair_raw`: a few look-ups or walks
        per tree and pair of players that both change its path), else the hybrid
        values."""
        if len(self._b_left) != 1:
            return super().pair_values(X)
        x_left, x_bits, first, last, full, empty = self._one_row_ends(X)
        at_empty, at_full = self._pair_raw(x_left, x_bits, summed=False)
        return self._values(
            self._pair_raw_values(first, last, full, empty, at_empty, at_full)
        )

    def contribution_values(self, X, pairs=False):
        """The first and last values and, with ``pairs``, the players'
        :func:`~sklearn_shapley.games.pair_interaction_sums`, from one pass of
        :meth:`_one_row_ends` with one background row (see
        :meth:`~sklearn_shapley.games.Game.contribution_values`)."""
        if len(self._b_left) != 1:
            return super().contribution_values(X, pairs)
        x_left, x_bits, first, last, full, empty = self._one_row_ends(X)
        n, K = full.shape
        raw = np.concatenate(
            [
                first + empty[:, None],
                last + full[:, None],
                full[:, None],
                np.broadcast_to(empty[:, None], (n, 1, K)),
            ],
            axis=1,
        )
        values = self._values(raw)
        if not pairs:
            return values, None
        if self._linear:  # the raw interactions, summed in the kernel
            at_empty, at_full = self._pair_raw(x_left, x_bits, summed=True)
            return values, (at_empty[:, :, 0], at_full[:, :, 0])
        at_empty, at_full = self._pair_raw(x_left, x_bits, summed=False)
        raw = self._pair_raw_values(first, last, full, empty, at_empty, at_full)
        return values, pair_interaction_sums(values, self._values(raw))

    def _pair_raw(self, x_left, x_bits, summed):
        """``(at_empty, at_full)`` of :func:`._hybrid.pair_raw` for the rows'
        decisions ``x_left`` and patterns ``x_bits``, summed over each player's
        partners with ``summed``."""
        from .._openmp import effective_n_threads

        n, d, K = len(x_bits), self.n_players, len(self._base)
        at_empty, at_full = np.zeros((2, n, d, 1 if summed else d, K))
        pair_raw(
            x_left,
            self._b_left[0],
            x_bits,
            self._b_bits[0],
            *self._tree_args,
            at_empty,
            at_full,
            int(effective_n_threads(None)),
        )
        return at_empty, at_full

    @staticmethod
    def _pair_raw_values(first, last, full, empty, at_empty, at_full):
        """Raw sums on :func:`~sklearn_shapley.games.pair_masks`' coalitions from
        :meth:`_one_row_ends`' and :meth:`_pair_raw`'s."""
        i, j = np.triu_indices(first.shape[1], k=1)
        pairs = empty[:, None] + first[:, i] + first[:, j] + at_empty[:, i, j]
        others = full[:, None] + last[:, i] + last[:, j] + at_full[:, i, j]
        return np.concatenate([pairs, others], axis=1)

    def __call__(self, X, masks):
        from .._openmp import effective_n_threads

        X = check_rows(X, self.n_features)
        masks = check_masks(masks, self.n_players, len(X))
        n, m, n_bg = len(X), masks.shape[-2], len(self._b_left)
        threads = int(effective_n_threads(None))
        x_left = _node_decisions(self.flat, self._internal, X).view(np.uint8)
        x_bits = decision_patterns(x_left, self._trees, threads)
        pair_row = np.repeat(np.arange(n, dtype=np.int64), m)
        pair_mask = np.arange(n * m, dtype=np.int64)
        if masks.ndim == 2:  # shared coalitions
            pair_mask %= m
        masks = np.ascontiguousarray(masks.reshape(-1, self.n_players), np.uint8)
        out = np.empty((n * m, self.n_outputs))
        step = max(1, self.max_raw // (n_bg * len(self._base)))
        for a in range(0, n * m, step):
            b = min(a + step, n * m)
            raw = np.empty((b - a, n_bg, len(self._base)))
            hybrid_raw(
                masks,
                pair_mask[a:b],
                self._player,
                x_left,
                self._b_left,
                x_bits,
                self._b_bits,
                pair_row[a:b],
                self._nodes,
                self._trees,
                self._leaf_offset,
                self._small_value,
                self._value,
                self._base,
                raw,
                threads,
            )
            predicted = self.output(raw.reshape(-1, raw.shape[-1]))
            values = apply_link(predicted, self.game.link)
            out[a:b] = values.reshape(b - a, n_bg, -1).mean(axis=1)
        return out.reshape(n, m, self.n_outputs)


def _node_decisions(flat, nodes, X):
    """Whether each row of ``X`` goes left at each of the internal ``nodes`` by the
    model's rule: ``(n, len(nodes))`` bool. The nodes' thresholds are compared with
    the rows' values in place (:func:`._hybrid.threshold_decisions`); the rule's
    exceptions (missing values, categorical splits) are applied where they occur."""
    from .._openmp import effective_n_threads

    left = np.empty((len(X), len(nodes)), dtype=bool)
    feature = np.ascontiguousarray(flat.feature[nodes], dtype=np.int64)
    threshold = np.ascontiguousarray(flat.threshold[nodes], dtype=np.float64)
    categorical = np.flatnonzero(flat.split_kind[nodes] == CATEGORICAL_SPLIT)
    threads = int(effective_n_threads(None))
    step = max(1, MAX_DECISIONS // max(len(nodes), 1))
    for a in range(0, len(X), step):
        rows = encode_inputs(flat, X[a : a + step])
        rows = np.ascontiguousarray(rows.astype(flat.decision_dtype), dtype=np.float64)
        out = left[a : a + step]
        threshold_decisions(rows, feature, threshold, out.view(np.uint8), threads)
        missing = np.isnan(rows).any(axis=0)[feature]
        exceptions = np.union1d(categorical, np.flatnonzero(missing))
        if exceptions.size:
            out[:, exceptions] = goes_left(
                flat,
                np.broadcast_to(nodes[exceptions], (len(rows), exceptions.size)),
                rows[:, feature[exceptions]],
            )
    return left


def _softmax(raw):
    from .._openmp import effective_n_threads

    raw = np.ascontiguousarray(raw, dtype=np.float64)
    return softmax(raw, int(effective_n_threads(None)))


def _sigmoid_pair(raw):
    p = 1.0 / (1.0 + np.exp(-raw[:, :1]))
    return np.hstack([1.0 - p, p])


def _identity(raw):
    return raw


class _LeafGroup:
    """The leaves with ``k`` path players, and their tables over the ``2^k`` patterns.

    Pattern and subset bit ``j`` stands for a leaf's ``j``-th path player
    (``players[:, j]``); ``q`` is ``(n_leaves, 2^k)``.
    """

    def __init__(self, k, leaves, d, background):
        self.k, self.d = k, d
        self.players = np.array([p for p, _, _, _ in leaves], dtype=np.int64)
        self.value = np.array([v for _, v, _, _ in leaves])  # (n_leaves, K)
        self.bits = 1 << np.arange(k)
        n_leaves, size = len(leaves), 2**k
        full = size - 1
        # q_L(A) = share of the background with P_L ∖ A ⊆ I_L(b): superset sums of
        # the counts of the background's patterns, read at the complement of A
        counts = np.zeros((n_leaves, size))
        np.add.at(counts, (np.arange(n_leaves)[None, :], background), 1.0)
        self.q = _subset_sums(counts, superset=True)[:, full ^ np.arange(size)]
        self.q /= len(background)

    def tables(self):
        """The leaves' tables ``(n_leaves 2^k, (2d + 1) K)``: per (leaf, pattern),
        the leaf's share of ``v(N) − c``, ``v({j}) − v(∅)`` and
        ``v(N ∖ {j}) − v(N)`` on every (player, output), its value folded in."""
        k, q = self.k, self.q
        n_leaves, size = q.shape
        full = size - 1
        pattern = np.arange(size)
        inside = (pattern[:, None] >> np.arange(k)) & 1 == 1  # (2^k, k)
        # value tables: v(N) = [I = P]; v({j}) − v(∅); v(N ∖ {j}) − v(N)
        grand = np.broadcast_to(pattern == full, (n_leaves, size)).astype(float)
        first = q[:, self.bits][:, None, :] * inside - q[:, :1, None]
        complement = full ^ self.bits  # P ∖ {j}
        last = (
            q[:, complement][:, None, :]
            * ((pattern[:, None] & complement) == complement)
            - grand[:, :, None]
        )
        # over (leaf, pattern, player, output), the leaf's value folded in
        value = self.value[:, None, None, :]
        parts = [grand[:, :, None, None] * self.value[:, None, None, :]]
        parts += [self._on_players(t) * value for t in (first, last)]
        rows = n_leaves * size
        return np.concatenate([p.reshape(rows, -1) for p in parts], axis=1)

    def pair_tables(self):
        """The leaves' tables ``(n_leaves 2^k, 2 d K)``: per (leaf, pattern), the
        leaf's share of ``s_j`` and ``t_j`` of every (player, output)
        (:func:`~sklearn_shapley.games.pair_interaction_sums`), its value folded
        in; a player off the leaf's path interacts with none of its players."""
        k, q = self.k, self.q
        n_leaves, size = q.shape
        full = size - 1
        pattern = np.arange(size)[:, None]

        def v(subsets):  # the leaf's game on path-player subsets (·, size, len)
            return q[:, subsets][:, None, :] * ((subsets & ~pattern) == 0)

        s, t = np.zeros((2, n_leaves, size, k))
        for a in range(k):
            others = np.delete(self.bits, a)  # j ≠ a
            pair = self.bits[a] | others
            s[:, :, a] = (
                v(pair) - v(others) - v(np.array([self.bits[a]])) + v(np.array([0]))
            ).sum(axis=2)
            t[:, :, a] = (
                v(full ^ pair)
                - v(full ^ others)
                - v(np.array([full ^ self.bits[a]]))
                + v(np.array([full]))
            ).sum(axis=2)
        value = self.value[:, None, None, :]
        rows = n_leaves * size
        parts = [(self._on_players(u) * value).reshape(rows, -1) for u in (s, t)]
        return np.concatenate(parts, axis=1)

    def _on_players(self, table):
        """``(n_leaves, 2^k, k)`` per path player → ``(n_leaves, 2^k, d, 1)``."""
        n_leaves, size, k = table.shape
        out = np.zeros((n_leaves, size, self.d, 1))
        leaf = np.arange(n_leaves)[:, None, None]
        pattern = np.arange(size)[None, :, None]
        out[leaf, pattern, self.players[:, None, :], 0] = table
        return out

    def values(self, pattern, masks):
        """``Σ_L value_L [S ∩ P_L ⊆ I_L] q_L(S ∩ P_L)`` for rows' ``pattern (n, L)``
        and player ``masks`` ``(m, d)`` or ``(n, m, d)``: ``(n, m, K)``."""
        subset = masks[..., self.players] @ self.bits  # (..., m, L)
        leaf = np.arange(len(self.value))
        if masks.ndim == 2:
            reach = self.q[leaf, subset] * ((subset[None] & ~pattern[:, None]) == 0)
        else:
            reach = self.q[leaf, subset] * ((subset & ~pattern[:, None]) == 0)
        return reach @ self.value


def _patterns(left, columns, lefts, bits, full):
    """Leaves' patterns ``I_L`` ``(n, n_leaves)`` from decisions ``left (n, ·)``: the
    path players (bits ``full``) on none of whose path nodes (``columns``, padded
    ``(n_leaves, depth)``, with the side ``lefts`` and the player's bit ``bits``)
    the row goes the other way."""
    away = left[:, columns] != lefts  # (n, leaves, depth)
    return full & ~np.bitwise_or.reduce(away * bits, axis=2)


def _leaf_paths(flat):
    """``(leaf node, tree, path nodes, went left at each)`` for every leaf."""
    out = []
    left, right = flat.children_left, flat.children_right
    for tree in range(flat.n_trees):
        stack = [(int(flat.tree_offsets[tree]), (), ())]
        while stack:
            node, nodes, lefts = stack.pop()
            if left[node] < 0:
                out.append((node, tree, nodes, lefts))
                continue
            stack.append((int(right[node]), nodes + (node,), lefts + (False,)))
            stack.append((int(left[node]), nodes + (node,), lefts + (True,)))
    return out


def _subset_sums(table, superset=False):
    """``out[..., I] = Σ_{A ⊆ I} table[..., A]`` over the last axis (length ``2^k``;
    ``Σ_{A ⊇ I}`` with ``superset``)."""
    out = np.array(table, dtype=np.float64)
    size = out.shape[-1]
    into, source = (0, 1) if superset else (1, 0)
    bit = 1
    while bit < size:
        view = out.reshape(*out.shape[:-1], size // (2 * bit), 2, bit)
        view[..., into, :] += view[..., source, :]
        bit *= 2
    return out


def tree_marginal_game(game, rows=None, *, tables=True):
    """The exact :class:`TreeMarginalGame` of a :class:`MarginalGame`, or None.

    None unless the game's model (or the model in a ``FrozenEstimator``) is a tree
    ensemble :func:`~sklearn_shapley.tree.flatten_ensemble` reads whose explained
    output, after the game's link, is the raw sum of its trees: the identity link
    of a model that predicts that sum (regressors, forests' class probabilities),
    or the logit link of a binary classifier whose raw sum is the log-odds (its
    two outputs are minus and plus the sum). Checked on the background and
    ``rows`` (the first 1,000), to ``1e-5`` relative to the largest prediction.
    The two games then agree to the model's own float precision on every row and
    coalition (the tree game takes the log-odds from the trees, not back from the
    rounded probabilities): to float64's when its attribute ``matches_model`` is
    true. When the tables would be too large (deep trees), a
    :class:`TreeShapleyMarginalGame`: the model's values, exact Shapley values;
    also with ``tables=False`` (for a small background, whose values cost the
    model less than the tables). When the explained output is instead the
    softmax of the sums (a multi-class classifier's probabilities), the sigmoid
    pair of one sum (a binary one's) or the sums under a probability link, a
    :class:`TreeHybridMarginalGame`: the model's values, from the trees' paths.
    """
    from sklearn.frozen import FrozenEstimator

    if not isinstance(game, MarginalGame) or callable(game.link):
        return None
    model = game.model
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    try:
        flat = flatten_ensemble(model)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return None  # not a tree ensemble the package reads, or not fitted
    probe = game.background
    if rows is not None:
        probe = np.vstack([probe, np.asarray(rows, dtype=np.float64)[:1000]])
    if flat.n_features > probe.shape[1]:
        return None
    predicted = game._f(probe)  # before the link
    raw = predict_raw(flat, probe)
    # the model's map from its trees' sums to its predictions, to the model's own
    # precision (XGBoost predicts in float32)
    scale = 1.0 + np.abs(predicted).max()
    output = None
    for candidate in (_identity, _sigmoid_pair, _softmax):
        expected = candidate(raw)
        if expected.shape == predicted.shape and (
            np.abs(expected - predicted).max() <= 1e-5 * scale
        ):
            output = candidate
            break
    if output is None:
        return None
    if game.link == "identity" and output is _identity:
        output_map = np.eye(raw.shape[1])
    elif game.link == "logit" and output is _sigmoid_pair:
        # a binary classifier's probabilities are the sigmoid of its log-odds
        output_map = np.array([[-1.0, 1.0]])
    else:  # not linear in the sums after the link: the model's values
        return TreeHybridMarginalGame(game, flat, output)
    tree_game = None
    if tables:
        with contextlib.suppress(TablesTooLargeError):
            tree_game = TreeMarginalGame(
                flat, game.background, players=game.players, output_map=output_map
            )
    if tree_game is None:
        tree_game = TreeShapleyMarginalGame(game, flat, output_map, output)
    tree_game.output_names = game.output_names
    # whether the explained outputs (after the link) are the trees' sums to float64
    # precision, or only to the model's rounding
    explained = apply_link(predicted, game.link)
    scale = 1.0 + np.abs(explained).max()
    tree_game.matches_model = bool(
        np.abs(raw @ output_map - explained).max() <= 1e-12 * scale
    )
    return tree_game
