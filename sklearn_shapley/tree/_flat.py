"""One flat representation of a tree ensemble, whatever library grew it.

Every reader in :mod:`sklearn_shapley.tree._ensemble` turns a model into a
:class:`FlatEnsemble`; the Cython kernel sees only its arrays. Nodes of all trees are
concatenated; tree ``t`` owns nodes ``tree_offsets[t]:tree_offsets[t + 1]`` and its root
is ``tree_offsets[t]``. Child indices are global (absolute) node indices.

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

A model that maps raw categories to codes itself (scikit-learn's HistGradientBoosting:
its ordinal encoder, exact matches only, anything else an unknown category treated as
missing) has ``category_values[f] = (known, codes)`` for its categorical feature ``f``:
:func:`encode_categories` replaces a value equal to ``known[i]`` by ``codes[i]`` and any
other value by NaN before the rule above.

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

NUMERIC_SPLIT = 0
CATEGORICAL_SPLIT = 1


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

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.children_left)

    @property
    def n_outputs(self) -> int:
        return self.value.shape[1]


def encode_categories(flat, X):
    """``X`` with its categorical values as the model's codes (see the module
    docstring); ``X`` itself when the model has no such mapping."""
    if not flat.category_values:
        return X
    X = np.array(X, dtype=np.float64)
    for f, (known, codes) in flat.category_values.items():
        column = X[:, f]
        index = np.minimum(np.searchsorted(known, column), len(known) - 1)
        X[:, f] = np.where(known[index] == column, codes[index], np.nan)
    return X
