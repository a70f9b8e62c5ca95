"""Pipelines: the preprocessing before a model, and which input column each of its
output columns comes from (a one-hot block belongs to the column it encodes).

A tree explainer explains a Pipeline's last step on the features its preprocessing
makes; :func:`input_column_groups` lets it report one attribution per original column
(the sum over the column's block). The name and the data shown for a group of
columns are :func:`group_name` and :func:`group_data`.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def split_pipeline(model):
    """``(preprocessing, last step)`` of a Pipeline; ``(None, model)`` otherwise."""
    if isinstance(model, Pipeline):
        return (model[:-1] if len(model) > 1 else None), model[-1]
    return None, model


def transform_rows(preprocessing, X):
    """``preprocessing.transform(X)`` as a float64 array, or a float64 CSR matrix
    when the preprocessing makes a sparse one (whose absent entries the model reads
    by its own rule, missing for XGBoost)."""
    out = preprocessing.transform(X)
    if sparse.issparse(out):
        return sparse.csr_array(out, dtype=np.float64)
    try:
        return np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "The Pipeline's preprocessing must output numbers for the tree model "
            f"({exc}); encode categorical columns in it (e.g. with OneHotEncoder or "
            "OrdinalEncoder)."
        ) from exc


def input_column_groups(preprocessing, n_inputs):
    """Output columns of ``preprocessing`` grouped by the input column they come from.

    Returns ``[(input index, output column indices), ...]`` in input order, for the
    input columns that reach the output. Steps that keep their columns one to one
    (scalers, imputers, ``"passthrough"``), a ``OneHotEncoder`` (a block per column)
    and a ``ColumnTransformer`` of those are followed; any other step mixes columns
    and raises ``ValueError``.
    """
    origin = _origins(preprocessing, np.arange(n_inputs))
    return [(j, np.flatnonzero(origin == j)) for j in range(n_inputs) if j in origin]


def _origins(step, origin):
    """For each output column of ``step``, the input column (``origin``) it is from."""
    if isinstance(step, str) and step == "passthrough":
        return origin
    if isinstance(step, Pipeline):
        for _, sub in step.steps:
            origin = _origins(sub, origin)
        return origin
    if isinstance(step, ColumnTransformer):
        n_out = sum(s.stop - s.start for s in step.output_indices_.values())
        out = np.full(n_out, -1, dtype=np.int64)
        for name, trans, _ in step.transformers_:
            if isinstance(trans, str) and trans == "drop":
                continue
            cols = np.asarray(step._transformer_to_input_indices[name], dtype=int)
            block = step.output_indices_[name]
            if block.stop > block.start:
                out[block] = _origins(trans, origin[cols])
        return out
    if isinstance(step, OneHotEncoder):
        return np.repeat(origin, step._n_features_outs)
    n_out = len(step.get_feature_names_out())
    if n_out == len(origin):
        return origin
    if len(origin) == 1:
        return np.repeat(origin, n_out)
    raise ValueError(
        f"players='auto' cannot tell which input column each output column of "
        f"{type(step).__name__} comes from ({len(origin)} columns in, {n_out} out); "
        "pass players=None to explain the transformed features."
    )


def group_name(names):
    """The name of a group of columns: the column a one-hot block encodes, read from
    its columns' names (``cat__species_Adelie``, ``cat__species_Gentoo`` ->
    ``species``: their common prefix up to its last ``_``, less a
    ColumnTransformer's ``name__``), or the names joined by ``+``."""
    names = [str(name) for name in names]
    if len(names) == 1:
        return names[0]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    prefix = prefix[: prefix.rfind("_")].rstrip("_").rsplit("__", 1)[-1]
    return prefix if prefix else "+".join(names)


def group_data(X, players):
    """The data shown for each player ``(n, n_players)``: a one-column player's
    values, a one-hot block's (one 1 per row) the position of its hot column. None
    when a group is no one-hot block (an image's patch of pixels): no one value
    stands for it, and the rows are shown whole."""
    X = np.asarray(X, dtype=np.float64)
    data = np.empty((len(X), len(players)))
    for p, group in enumerate(players):
        block = X[:, np.atleast_1d(group)]
        if block.shape[1] == 1:
            data[:, p] = block[:, 0]
        elif np.isin(block, (0.0, 1.0)).all() and (block.sum(axis=1) == 1).all():
            data[:, p] = np.argmax(block, axis=1)
        else:
            return None
    return data
