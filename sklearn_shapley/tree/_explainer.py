"""``QuadratureTreeExplainer``: exact Path-Dependent TreeSHAP and Shapley interactions."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from .. import _dask
from .._base import BaseExplainer
from .._memory import check_fits_in_memory
from . import _kernel
from ._ensemble import flatten_ensemble, predict_raw


class QuadratureTreeExplainer(BaseExplainer):
    """Exact Path-Dependent TreeSHAP and any-order Shapley interactions for tree ensembles.

    The ensemble is read once into flat arrays; a Cython + OpenMP kernel evaluates the
    Shapley integral ``∫₀¹`` of each leaf's weighted-Banzhaf polynomial with
    Gauss–Legendre quadrature, choosing per tree the fewest points that make it exact.

    Parameters
    ----------
    estimator : tree ensemble
        A scikit-learn ``DecisionTree*``, ``ExtraTree*``, ``RandomForest*``,
        ``ExtraTrees*``, ``GradientBoosting*``, ``HistGradientBoosting*`` or
        ``IsolationForest``; an XGBoost ``Booster`` / ``XGBRegressor`` /
        ``XGBClassifier`` / ``XGBRanker``; a LightGBM ``Booster`` / ``LGBM*``. Unfitted
        scikit-learn-style models are cloned and fitted on ``(X, y)``; pass a fitted
        one as ``FrozenEstimator(model)`` (or bare, with ``fit(X)`` and no ``y``).
    interaction_order : {1, 2}, default=1
        What ``transform`` returns: Shapley values ``(n, d)``, or with 2 the flattened
        ``(n, d * d)`` SHAP interaction matrix (columns named ``"a*b"``).
    n_quadrature : "auto" or int, default="auto"
        Quadrature points per tree. ``"auto"`` uses
        ``ceil((D − k + 1) / 2)`` points for a tree whose paths have at most ``D``
        distinct features (order ``k``), which is exact; an int forces that many for
        every tree (fewer is faster and approximate on deep trees).
    output : int, str or None, default=None
        The output ``transform`` returns. The explained quantity is the model's raw
        output: the margin for XGBoost / LightGBM / gradient boosting (one output for
        regression and binary classification, ``K`` for ``K`` classes) and the class
        probabilities for scikit-learn forests and trees (the positive class, column 1,
        of a binary classifier by default; the predicted class per row for more).
    n_jobs : int or None, default=None
        OpenMP threads over rows (``None``: all available; ``-1`` all CPUs). Results
        are bit-identical for any ``n_jobs``.
    dtype : {"float64"}, default="float64"
        Precision of the computation (float64: exact to rounding).
    device : {"cpu"}, default="cpu"
        ``"cuda"`` needs CuPy and a GPU and is not available in this version.

    Attributes
    ----------
    estimator_ : the explained model
    ensemble_ : FlatEnsemble
        The flat arrays the kernel reads.
    expected_value_ : ndarray of shape (n_outputs,)
        The base value: the cover-weighted mean output.
    output_names_ : list of str
    n_features_in_, feature_names_in_
    """

    _allow_nan = True

    def __init__(
        self,
        estimator=None,
        *,
        interaction_order=1,
        n_quadrature="auto",
        output=None,
        n_jobs=None,
        dtype="float64",
        device="cpu",
    ):
        self.estimator = estimator
        self.interaction_order = interaction_order
        self.n_quadrature = n_quadrature
        self.output = output
        self.n_jobs = n_jobs
        self.dtype = dtype
        self.device = device

    def _check_params(self):
        if self.interaction_order not in (1, 2):
            raise ValueError(
                f"interaction_order must be 1 or 2 for transform, got "
                f"{self.interaction_order!r}; use interactions(X, order=k) for k >= 3."
            )
        q = self.n_quadrature
        if not (q == "auto" or (isinstance(q, numbers.Integral) and q >= 1)):
            raise ValueError(
                f"n_quadrature must be 'auto' or a positive int, got {q!r}."
            )
        if self.dtype != "float64":
            raise ValueError(f"dtype must be 'float64', got {self.dtype!r}.")
        if self.device == "cuda":
            raise ValueError(
                "device='cuda' is not available in this version of sklearn_shapley "
                "(the CuPy kernel is not built); use device='cpu'."
            )
        if self.device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}.")

    def _fit_explainer(self, X, y):
        self._check_params()
        model = self.estimator_
        if isinstance(model, FrozenEstimator):
            model = model.estimator
        self.ensemble_ = flatten_ensemble(model)
        self._prepared = {}  # kernel data per order, see _kernel_data
        if self.ensemble_.n_features != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the model was trained on "
                f"{self.ensemble_.n_features}."
            )
        self.expected_value_ = _kernel.expected_value(self.ensemble_)
        K = self.ensemble_.n_outputs
        names = self.ensemble_.output_names
        self.output_names_ = (
            [str(n) for n in names]
            if names and len(names) == K
            else [f"output_{k}" for k in range(K)]
        )
        self._is_binary_classifier = K == 2

    def _explain_values(self, X):
        values = _kernel.shap_values(
            self.ensemble_,
            X,
            n_quadrature=self.n_quadrature,
            n_threads=self.n_jobs,
            prepared=self._kernel_data(1),
        )
        base = np.broadcast_to(
            self.expected_value_, (len(X), len(self.expected_value_))
        )
        return values, np.array(base), {}

    def __getstate__(self):
        # the prepared kernel data is a cache of compiled-module objects: not pickled
        state = dict(super().__getstate__())
        state.pop("_prepared", None)
        return state

    def _kernel_data(self, order):
        """The kernel's data for ``order``, built on first use and kept
        until the ensemble or ``n_quadrature`` changes (``fit`` starts afresh)."""
        cache = self.__dict__.setdefault("_prepared", {})
        key = (order, repr(self.n_quadrature))
        if key not in cache:
            for stale in [k for k in cache if k[1] != key[1]]:
                del cache[stale]
            cache[key] = _kernel.prepare(self.ensemble_, order, self.n_quadrature)
        return cache[key]

    def _explained_output(self, X):
        return predict_raw(self.ensemble_, X)

    # -- interactions -----------------------------------------------------------------
    def interactions(self, X, order=2, *, dense=False):
        """Shapley interaction values of order ``order``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        order : int, default=2
            ``2``: the dense SHAP interaction matrix in the TreeSHAP convention of
            ``xgboost pred_interactions`` / ``shap_interaction_values`` (off-diagonal
            ``SII / 2``, diagonal the main effect, rows summing to ``φ``), shape
            ``(n, d, d)`` or ``(n, d, d, K)``. ``k >= 3``: the Shapley interaction
            index of every ``k``-subset of features that co-occur on some root-to-leaf
            path.
        dense : bool, default=False
            For ``k >= 3``: return the full ``(n, d, ..., d)`` array (symmetric, zero
            on repeated indices) instead of the sparse pair.

        Returns
        -------
        ndarray, or for ``k >= 3`` and ``dense=False`` a pair ``(subsets, values)``:
        ``subsets`` int ``(m, k)`` of sorted feature indices, ``values`` ``(n, m)`` or
        ``(n, m, K)``. A Dask array ``X`` gives a Dask array chunked by rows (the
        memory check applies to each chunk), for ``k <= 2`` or ``dense=True``.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return self._dask_interactions(X, int(order), dense)
        X = self._validate(X, reset=False)
        order = int(order)
        n, d, K = len(X), self.n_features_in_, self.ensemble_.n_outputs
        squeeze = K == 1
        if order == 1:
            return self.explain(X).values
        if order == 2:
            check_fits_in_memory((n, d, d, K), "The interaction matrix")
            values = _kernel.shap_interaction_values(
                self.ensemble_,
                X,
                n_quadrature=self.n_quadrature,
                n_threads=self.n_jobs,
                prepared=self._kernel_data(2),
            )
            return values[..., 0] if squeeze else values
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}.")
        kernel_data = self._kernel_data(order)
        subsets = kernel_data.subsets
        check_fits_in_memory(
            (n, max(len(subsets), 1), K), f"Order-{order} interactions"
        )
        if dense:
            check_fits_in_memory(
                (n,) + (d,) * order + (K,), f"The dense order-{order} array"
            )
        values = _kernel.shapley_interactions(
            self.ensemble_,
            X,
            order,
            n_quadrature=self.n_quadrature,
            n_threads=self.n_jobs,
            prepared=kernel_data,
        )
        if not dense:
            return subsets, (values[..., 0] if squeeze else values)
        out = np.zeros((n,) + (d,) * order + (K,))
        from itertools import permutations

        for perm in permutations(range(order)):
            index = tuple(subsets[:, p] for p in perm)
            out[(slice(None),) + index] = values
        return out[..., 0] if squeeze else out

    def _dask_interactions(self, X, order, dense):
        if order >= 3 and not dense:
            raise ValueError(
                f"interactions(order={order}) on a Dask array returns the dense "
                "array only: pass dense=True (or explain in-memory rows for the "
                "sparse (subsets, values) pair)."
            )
        K = self.ensemble_.n_outputs
        tail = (self.n_features_in_,) * order + ((K,) if K > 1 else ())
        return _dask.map_rows(self, "interactions", X, tail, order=order, dense=dense)

    def transform(self, X):
        """Shapley values ``(n, d)``, or with ``interaction_order=2`` ``(n, d * d)``."""
        if self.interaction_order == 1 or _dask.is_dask_collection(X):
            return super().transform(X)
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        values = self.interactions(X, order=2)
        if values.ndim == 4:
            phi = values.sum(axis=2)
            base = np.broadcast_to(self.expected_value_, (len(X), values.shape[-1]))
            idx = self._output_index(phi, base)
            values = values[np.arange(len(X)), :, :, idx]
        return values.reshape(len(X), -1)

    def get_feature_names_out(self, input_features=None):
        """Feature names, or ``"a*b"`` pairs with ``interaction_order=2``."""
        names = super().get_feature_names_out(input_features)
        if self.interaction_order == 1:
            return names
        return np.array([f"{a}*{b}" for a in names for b in names], dtype=object)

    def score(self, X, y=None):
        """Minus the mean absolute efficiency gap ``|base + Σφ − raw output|``.

        Zero (the best) when the values are exact; usable in ``GridSearchCV``, e.g.
        over ``n_quadrature``. ``y`` is ignored.
        """
        exp = self.explain(X)
        X = self._validate(X, reset=False)
        raw = self._explained_output(X)
        values = exp.values if exp.values.ndim == 3 else exp.values[:, :, None]
        base = (
            exp.base_values if exp.base_values.ndim == 2 else exp.base_values[:, None]
        )
        return -float(np.mean(np.abs(base + values.sum(axis=1) - raw)))
