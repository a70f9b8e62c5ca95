"""Explaining Dask arrays and DataFrames: one task per block, the explainer shipped once.

``BaseExplainer.transform`` (and ``QuadratureTreeExplainer.interactions``) hand a Dask
collection to :func:`map_rows`, which returns the same kind of collection, lazily: each
block of rows (or partition) becomes one task that calls the in-memory method on it.
The fitted explainer is one key of the graph (``dask.delayed`` once) that every task
depends on, so a ``distributed`` scheduler sends it to each worker once instead of
pickling it into every task. Inside a task the kernel runs on one thread (OpenMP and
BLAS limited, ``n_jobs`` set to 1): a worker runs as many tasks at once as it has
threads, so its thread count is the parallelism and the cores are not oversubscribed.
"""

from __future__ import annotations

import copy
import sys
import uuid
from functools import partial

import numpy as np
from sklearn.utils._set_output import _get_output_config
from threadpoolctl import threadpool_limits

#: How to install what this module needs.
INSTALL_HINT = 'pip install "sklearn_shapley[dask]"'


def is_dask_collection(X):
    """True when ``X`` is a Dask collection (checked without importing dask)."""
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(X)


def _import(name):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as exc:
        raise ImportError(
            f"Explaining a Dask collection needs dask[array,dataframe] and distributed "
            f"({type(exc).__name__}: {exc}). Install them with: {INSTALL_HINT}"
        ) from exc


def _run_block(block, explainer, method, kwargs):
    """``explainer.method(block, **kwargs)`` on one thread: the task of one block.

    ``threadpool_limits`` sets the calling thread's OpenMP threads and BLAS's to 1.
    """
    with threadpool_limits(limits=1):
        return getattr(explainer, method)(block, **kwargs)


def _run_partition(partition, explainer, method, kwargs, columns):
    values = _run_block(partition, explainer, method, kwargs)
    pd = sys.modules["pandas"]
    return pd.DataFrame(np.asarray(values), index=partition.index, columns=columns)


def _shipped(explainer):
    """The explainer as one graph key, with ``n_jobs=1`` where it has that parameter."""
    dask = _import("dask")
    shipped = copy.copy(explainer)  # shallow: the fitted arrays are shared, not copied
    if "n_jobs" in explainer.get_params(deep=False):
        shipped.n_jobs = 1
    name = f"{type(explainer).__name__}-{uuid.uuid4().hex}"
    return dask.delayed(shipped, name=name, traverse=False)


def map_rows(explainer, method, X, tail_shape, columns=None, **kwargs):
    """``explainer.method(X, **kwargs)`` on a Dask collection, lazily, block by block.

    Parameters
    ----------
    explainer : BaseExplainer
        A fitted explainer.
    method : str
        The in-memory method each task calls on its block of rows.
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        The rows; a Dask array is rechunked to one chunk along the columns, so that
        rows are split only along the row axis.
    tail_shape : tuple of int
        The shape of the result of one row (e.g. ``(n_players,)``).
    columns : list of str, default=None
        Column names of the result when ``X`` is a DataFrame.
    **kwargs
        Passed to ``method``.

    Returns
    -------
    dask.array.Array of shape (n_samples, *tail_shape), or for a DataFrame a
    ``dask.dataframe.DataFrame`` with ``X``'s index and the ``columns``.
    """
    if getattr(X, "ndim", None) != 2:
        raise ValueError(
            f"{type(explainer).__name__}.{method} takes a 2-D Dask array or a Dask "
            f"DataFrame of rows; got {type(X).__name__} of {getattr(X, 'ndim', '?')} "
            "dimensions."
        )
    if X.shape[1] != explainer.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(explainer).__name__} was fitted "
            f"with {explainer.n_features_in_} features."
        )
    if hasattr(X, "map_partitions"):
        pd = _import("pandas")
        _import("dask.dataframe")
        if len(tail_shape) != 1:
            raise TypeError(
                f"{type(explainer).__name__}.{method} on a Dask DataFrame returns "
                f"{len(tail_shape) + 1}-D values; pass a Dask array instead: "
                "X.to_dask_array(lengths=True)."
            )
        meta = pd.DataFrame(
            np.empty((0, len(columns))), columns=columns, index=X._meta.index
        )
        task = partial(_run_partition, method=method, kwargs=kwargs, columns=columns)
        return X.map_partitions(task, _shipped(explainer), meta=meta)
    da = _import("dask.array")
    X = X.rechunk({1: -1})
    return da.map_blocks(
        partial(_run_block, method=method, kwargs=kwargs),
        X,
        _shipped(explainer),
        chunks=(X.chunks[0], *((size,) for size in tail_shape)),
        new_axis=list(range(2, 1 + len(tail_shape))),
        dtype=np.float64,
        meta=np.empty((0,) * (1 + len(tail_shape))),
    )


def transform(explainer, X):
    """``explainer.transform(X)`` on a Dask collection: the same kind, lazily.

    Refused under ``set_output(transform="pandas")`` (or ``"polars"``), whose wrapper
    would compute the whole result into one in-memory frame.
    """
    container = _get_output_config("transform", explainer)["dense"]
    if container != "default":
        raise ValueError(
            f"{type(explainer).__name__} is set to return {container} output "
            f"(set_output), which would compute the whole result in memory; on a Dask "
            "collection transform returns a Dask array (Dask DataFrame for a Dask "
            "DataFrame). Call set_output(transform='default') first."
        )
    names = explainer.get_feature_names_out()
    return map_rows(explainer, "transform", X, (len(names),), columns=list(names))


def refuse_explain(explainer):
    """The error for ``explain`` on a Dask collection, which has no lazy form."""
    return TypeError(
        f"{type(explainer).__name__}.explain returns an in-memory Explanation and "
        "does not take a Dask collection: use transform(X) for lazy attributions "
        "(a Dask array or DataFrame), or explain(X.compute()) on rows that fit in "
        "memory."
    )
