"""DataFrames in, names out: the float matrix of codes the explainers compute on.

An explainer fitted on a pandas DataFrame records its columns in a :class:`FrameCodec`:
numeric columns stay numbers, ``category``, string and object columns become category
codes (NaN where missing). Every explainer computes on that float matrix, and the model
gets back a DataFrame with the columns, dtypes and categories it was fitted on
(:meth:`FrameCodec.decode`). The codes are the ones a tree model's categorical splits use
when the model is one the package reads (:func:`model_category_codes`), so a tree
ensemble sees exactly the categories its own ``predict`` would.
"""

from __future__ import annotations

import numpy as np


def is_frame(X):
    """True when ``X`` is a pandas DataFrame."""
    pd = __import__("sys").modules.get("pandas")
    return pd is not None and isinstance(X, pd.DataFrame)


def _is_numeric(dtype):
    import pandas as pd

    return pd.api.types.is_numeric_dtype(dtype) and not isinstance(
        dtype, pd.CategoricalDtype
    )


class FrameCodec:
    """The columns of a DataFrame and the codes of its non-numeric columns.

    Parameters
    ----------
    X : pandas.DataFrame
        The rows ``fit`` got; its column names must be strings. The categories of a
        ``category`` column are its dtype's, in order, and those of a string or
        object column its sorted distinct values; their codes are their positions
        until :meth:`with_codes` gives the model's.
    """

    def __init__(self, X):
        self.columns = [str(c) for c in X.columns]
        self.dtypes = dict(zip(self.columns, X.dtypes))
        self.categories = {}
        for name in self.columns:
            dtype = self.dtypes[name]
            if not _is_numeric(dtype):
                values = _default_categories(X[name])
                self.categories[name] = (
                    np.asarray(values, dtype=object),
                    np.arange(len(values), dtype=np.float64),
                )

    def with_codes(self, categories):
        """A codec for the same columns with ``categories``, ``{column: (values,
        codes)}``, where it gives them: the categories and codes a model's own
        splits use (:func:`model_category_codes`)."""
        codec = FrameCodec.__new__(FrameCodec)
        codec.columns, codec.dtypes = self.columns, self.dtypes
        codec.categories = dict(self.categories)
        for name, (values, codes) in categories.items():
            if name in codec.categories:
                codec.categories[name] = (
                    np.asarray(values, dtype=object),
                    np.asarray(codes, dtype=np.float64),
                )
        return codec

    def check_columns(self, X):
        """Raise ``ValueError`` naming the columns of ``X`` that differ from fit's."""
        got = [str(c) for c in X.columns]
        if got == self.columns:
            return
        missing = [c for c in self.columns if c not in got]
        unseen = [c for c in got if c not in self.columns]
        if missing or unseen:
            detail = f"missing {missing}, not seen at fit {unseen}"
        else:
            at = next(i for i, (a, b) in enumerate(zip(got, self.columns)) if a != b)
            detail = (
                f"same names in another order: column {at} is {got[at]!r}, was "
                f"{self.columns[at]!r}"
            )
        raise ValueError(
            f"X's columns differ from those the explainer was fitted on ({detail}). "
            f"Pass the columns of fit, in fit's order: X[{self.columns}]."
        )

    def encode(self, X):
        """``X`` as a DataFrame of float64 numbers and category codes (NaN missing)."""
        import pandas as pd

        self.check_columns(X)
        out = {}
        for name, column in zip(self.columns, X.columns):
            col = X[column]
            if name not in self.categories:
                out[name] = col
                continue
            values, codes = self.categories[name]
            position = pd.Index(values, dtype=object).get_indexer(col.astype(object))
            unknown = (position < 0) & col.notna().to_numpy()
            if unknown.any():
                raise ValueError(
                    f"Column {name!r} holds categories the explainer was not fitted "
                    f"on: {sorted(map(str, col[unknown].unique()))[:10]}; it knows "
                    f"{[str(v) for v in values][:10]}. Refit the explainer on rows "
                    "that hold every category."
                )
            coded = np.full(len(col), np.nan)
            coded[position >= 0] = np.asarray(codes, dtype=np.float64)[
                position[position >= 0]
            ]
            out[name] = coded
        return pd.DataFrame(out, index=X.index, columns=self.columns)

    def decode(self, Z):
        """Float rows of codes back to a DataFrame with fit's columns and dtypes."""
        import pandas as pd

        Z = np.asarray(Z, dtype=np.float64)
        out = {}
        for j, name in enumerate(self.columns):
            if name not in self.categories:
                out[name] = Z[:, j]
                continue
            values, codes = self.categories[name]
            order = np.argsort(codes, kind="stable")
            sorted_codes = np.asarray(codes, dtype=np.float64)[order]
            z = Z[:, j]
            where = np.searchsorted(sorted_codes, z).clip(0, len(codes) - 1)
            present = ~np.isnan(z)
            if np.any(present & (sorted_codes[where] != z)):
                raise ValueError(
                    f"Column {name!r} got a value that is no category code of it; "
                    "a categorical column holds only the codes of its categories."
                )
            position = np.where(present, order[where], -1)
            column = pd.Categorical.from_codes(
                position, dtype=pd.CategoricalDtype(pd.Index(values, dtype=object))
            )
            dtype = self.dtypes[name]
            if isinstance(dtype, pd.CategoricalDtype):
                out[name] = pd.Categorical(column, dtype=dtype)
            else:
                out[name] = pd.Series(column, dtype=object).astype(dtype)
        return pd.DataFrame(out, columns=self.columns)

    def mode(self, Z):
        """Per column of the code rows ``Z``: the most frequent value of a
        categorical column (what a baseline holds for it), NaN for the others."""
        Z = np.asarray(Z, dtype=np.float64)
        modes = np.full(Z.shape[1], np.nan)
        for j, name in enumerate(self.columns):
            if name in self.categories:
                z = Z[:, j][~np.isnan(Z[:, j])]
                if z.size:
                    values, counts = np.unique(z, return_counts=True)
                    modes[j] = values[np.argmax(counts)]
        return modes


def _default_categories(column):
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.categories)
    return sorted(column.dropna().unique(), key=lambda v: (str(type(v)), v))


def model_category_codes(model, codec):
    """``{column: (values, codes)}``: the codes ``model``'s categorical splits use.

    HistGradientBoosting (``categorical_features="from_dtype"``): the categories of
    its ordinal encoder, coded by position, or by value when they are all
    non-negative integers (as the tree reader reads them). LightGBM: the pandas
    categories it stored at training (``pandas_categorical``), by position. XGBoost
    (``enable_categorical=True``): the categories saved with the booster, by
    position. Other models: ``{}`` (the codec's own codes).
    """
    from sklearn.frozen import FrozenEstimator

    if isinstance(model, FrozenEstimator):
        model = model.estimator
    kind = type(model).__module__.split(".")[0]
    if kind == "sklearn" and hasattr(model, "_preprocessor"):
        return _hist_gradient_boosting_codes(model, codec)
    if kind == "lightgbm":
        booster = getattr(model, "booster_", model)
        stored = getattr(booster, "pandas_categorical", None) or []
        import pandas as pd

        names = [
            c for c in codec.columns if isinstance(codec.dtypes[c], pd.CategoricalDtype)
        ]
        return {
            name: (values, np.arange(len(values)))
            for name, values in zip(names, stored)
        }
    if kind == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        try:
            stored = booster.get_categories(export_to_arrow=True).to_arrow()
        except (AttributeError, TypeError, ValueError):
            return {}  # an xgboost older than 3.1: the DataFrame's own codes
        return {
            name: (array.to_pylist(), np.arange(len(array)))
            for name, array in stored
            if array is not None
        }
    return {}


def _hist_gradient_boosting_codes(model, codec):
    from .tree._sklearn import _raw_categories

    pre = model._preprocessor
    if pre is None:
        return {}
    codes = {}
    for name, trans, cols in pre.transformers_:
        if name != "encoder":
            continue
        columns = np.asarray(codec.columns)[cols]
        for column, cats in zip(columns, trans.categories_):
            values = [v for v in cats if not (isinstance(v, float) and np.isnan(v))]
            raw = _raw_categories(np.asarray(values))
            codes[str(column)] = (
                values,
                np.arange(len(values)) if raw is None else raw,
            )
    return codes
