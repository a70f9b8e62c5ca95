"""``QuadratureTreeExplainer``: exact TreeSHAP (path-dependent or interventional),
Banzhaf values and interactions."""

from __future__ import annotations

import numbers
import sys
import warnings

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array, check_scalar, get_tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _dask
from .._base import BaseExplainer, _unwrap
from .._memory import check_fits_in_memory
from .._pipelines import input_column_groups, split_pipeline, transform_rows
from ..games import default_background
from . import _kernel
from ._ensemble import flatten_ensemble, is_xgboost
from ._flat import dense_rows, map_row_blocks, predict_raw
from ._interventional import InterventionalTrees
from ._xgboost import probe_rows, xgboost_margin


def _takes_sparse(model):
    """Whether ``model`` takes scipy sparse rows: by its scikit-learn tags (False
    for HistGradientBoosting), True for the boosters."""
    if not isinstance(model, BaseEstimator):
        return True
    try:
        return bool(get_tags(model).input_tags.sparse)
    except Exception:  # a model whose tags cannot be read: it decides at predict
        return True


def check_model_accepts(model, flat, X):
    """Refuse the rows that ``model`` itself refuses at predict, with its message.

    The kernel would explain any float64 row; a model that refuses one has no output
    to explain there. scikit-learn's trees, forests, gradient boosting and isolation
    forest compare in float32 and take NaN only where their tags say so (their own
    check); HistGradientBoosting and LightGBM take any value; XGBoost's ``DMatrix``
    refuses infinite values and values beyond float32 (unless ``missing`` is that
    infinity). A scipy sparse ``X`` is refused where the model refuses it
    (HistGradientBoosting), with the check the model runs.
    """
    if sparse.issparse(X) and not _takes_sparse(model):
        check_array(X, accept_sparse=False, estimator=model, input_name="X")
    if flat.model_type.startswith("sklearn.") and "HistGradient" not in (
        flat.model_type
    ):
        nan = "allow-nan" if get_tags(model).input_tags.allow_nan else True
        with np.errstate(over="ignore"):  # the overflow is refused just below
            check_array(
                X,
                accept_sparse=True,
                dtype=np.float32,
                ensure_all_finite=nan,
                estimator=model,
                input_name="X",
            )
    elif flat.model_type.startswith("xgboost."):
        values = X.data if sparse.issparse(X) else X
        with np.errstate(over="ignore"):
            values = np.asarray(values).astype(np.float32)
            refused = np.isinf(values) & (values != np.float32(flat.missing_value))
            if refused.any():
                raise ValueError(
                    "Input data contains `inf` or a value too large (beyond float32, "
                    "|x| >= 3.4e38), which the XGBoost model refuses (its DMatrix "
                    "check, while `missing` is not set to `inf`): clip them, or set "
                    "them to NaN to mark them missing."
                )


def _refuse_dmatrix(X):
    """Refuse an ``xgboost.DMatrix``: its rows cannot be read back."""
    xgboost = sys.modules.get("xgboost")
    if xgboost is not None and isinstance(X, xgboost.DMatrix):
        raise TypeError(
            f"QuadratureTreeExplainer does not read an xgboost.{type(X).__name__}: its "
            "rows cannot be read back from it. Pass the array, DataFrame or scipy sparse "
            "matrix it was built from (with missing=... on the explainer for a bare "
            "Booster whose DMatrix had missing=...)."
        )


class QuadratureTreeExplainer(BaseExplainer):
    """Exact TreeSHAP, Banzhaf values and interactions for tree ensembles.

    The ensemble is read once into flat arrays. ``feature_perturbation=
    "tree_path_dependent"`` (the default) explains the game in which a held-out
    feature follows both branches of its splits, weighted by cover: a Cython +
    OpenMP kernel evaluates the Shapley integral ``∫₀¹`` of each leaf's
    weighted-Banzhaf polynomial with Gauss–Legendre quadrature, choosing per tree the
    fewest points that make it exact. ``"interventional"`` explains
    ``v_x(S) = mean_b f(x_S, b_¬S)`` over background rows ``b`` (shap's
    ``TreeExplainer(model, data)``), "true to the model": each leaf folds the
    background into a table over its path features' pass / fail patterns once, and
    a row's values are a few look-ups per leaf, so the cost grows as rows plus
    background rows, not their product. ``index="banzhaf"`` gives Banzhaf values
    (uniform weights over coalitions) in either mode.

    Rows may be a scipy sparse matrix or array (CSR, CSC or another format, converted
    to CSR), in ``fit``, ``transform``, ``explain``, ``interactions`` and as the
    ``background``, where the model takes one: an absent entry means what the
    model's library makes of it. For XGBoost (a ``Booster`` and the scikit-learn
    models) it is a **missing** value, as in its ``DMatrix`` (NaN, which follows each
    split's default branch, not 0.0); for LightGBM, 0.0 (then subject to
    ``zero_as_missing``, as in LightGBM); for scikit-learn's trees, forests,
    gradient boosting and isolation forest, 0.0. A model that refuses sparse input
    (``HistGradientBoosting*``) is refused with its own message. The rows are made
    dense one block at a time. An ``xgboost.DMatrix`` is refused (its rows cannot be
    read back): pass what it was built from.

    Parameters
    ----------
    estimator : tree ensemble
        A scikit-learn ``DecisionTree*``, ``ExtraTree*``, ``RandomForest*``,
        ``ExtraTrees*``, ``GradientBoosting*``, ``HistGradientBoosting*`` or
        ``IsolationForest``; an XGBoost ``Booster`` / ``XGBRegressor`` /
        ``XGBClassifier`` / ``XGBRanker``; a LightGBM ``Booster`` / ``LGBM*``. Unfitted
        scikit-learn-style models are cloned and fitted on ``(X, y)``; pass a fitted
        one as ``FrozenEstimator(model)`` (or bare, with ``fit(X)`` and no ``y``).
        A fitted ``Pipeline`` whose last step is one of these: that step is explained
        on the features the steps before it make from ``X``, named by their
        ``get_feature_names_out``.
    feature_perturbation : {"tree_path_dependent", "interventional"}, \
            default="tree_path_dependent"
        How a held-out feature is removed: following both branches weighted by the
        training cover (path-dependent TreeSHAP), or taking it from background rows
        (interventional).
    background : array-like of shape (n_background, n_features), default=None
        Interventional only: the rows held-out features are taken from. ``None``
        uses the rows passed to ``fit``, at most ``n_background`` of them drawn
        with ``random_state``.
    n_background : int, default=1000
        The most rows of ``fit``'s ``X`` used as the background when ``background``
        is None.
    index : {"shapley", "banzhaf"}, default="shapley"
        Shapley values, or Banzhaf values (each coalition of the other features
        weighted equally; they do not sum to the output minus the base value).
    players : {None, "auto"}, default=None
        For a Pipeline: ``None`` attributes to each transformed feature; ``"auto"``
        to each input column, the **sum** of the attributions of the features made
        from it (a one-hot block of a ``ColumnTransformer`` / ``OneHotEncoder``; exact,
        as Shapley values add up). The model-agnostic explainers instead explain the
        whole Pipeline on its input columns, each column one player. Without a
        Pipeline both are the same.
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
    model_output : {"raw", "probability"}, default="raw"
        The explained quantity. ``"probability"`` is exact only where the raw output
        is the class probabilities (scikit-learn trees and forests) and is refused
        elsewhere: the game on a margin's sigmoid or softmax does not split over
        leaves (explain ``predict_proba`` with ``PermutationExplainer`` or
        ``ExactExplainer`` instead).
    random_state : int, RandomState instance or None, default=None
        Draws the default background.
    n_jobs : int or None, default=None
        OpenMP threads over rows (``None``: all available; ``-1`` all CPUs). Results
        are bit-identical for any ``n_jobs``.
    device : {"cpu", "cuda"}, default="cpu"
        Where the kernel runs; ``"cuda"`` (a CuPy kernel) is not available in this
        version and raises an error.
    missing : float or None, default=None
        The value the model was trained to treat as missing (besides NaN), i.e. the
        ``missing=`` its ``xgboost.DMatrix`` was built with; only needed for a bare
        ``xgboost.Booster``, which does not record it (the explanation is of the
        wrong function without it: entries equal to it are then explained as
        values). ``None`` reads it from the model: an XGBoost scikit-learn model's
        ``missing``, NaN for a ``Booster``. Refused for other libraries.

    Attributes
    ----------
    estimator_ : the explained model
    ensemble_ : FlatEnsemble
        The flat arrays the kernel reads.
    expected_value_ : ndarray of shape (n_outputs,)
        The base value: the cover-weighted mean output (path-dependent), the
        background's mean raw output (interventional).
    background_ : ndarray of shape (n_background, n_features) or None
        The background rows (interventional), else None.
    output_names_ : list of str
    n_features_in_, feature_names_in_

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sklearn.ensemble import GradientBoostingRegressor
    >>> from sklearn.frozen import FrozenEstimator
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    >>> model = GradientBoostingRegressor(n_estimators=20).fit(X, y)
    >>> path = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X)
    >>> inter = QuadratureTreeExplainer(
    ...     FrozenEstimator(model), feature_perturbation="interventional"
    ... ).fit(X)
    >>> path.transform(X[:3]).shape, inter.transform(X[:3]).shape
    ((3, 5), (3, 5))
    """

    _allow_nan = True
    _allow_inf = True  # where the model takes them: check_model_accepts
    _accept_sparse = "csr"  # where the model takes it: check_model_accepts
    _parameter_constraints: dict = {
        "interaction_order": [Interval(numbers.Integral, 1, 2, closed="both")],
        "n_quadrature": [
            StrOptions({"auto"}),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "n_jobs": [numbers.Integral, None],
        "device": [StrOptions({"cpu", "cuda"})],
        "feature_perturbation": [StrOptions({"tree_path_dependent", "interventional"})],
        "background": ["array-like", "sparse matrix", None],
        "n_background": [Interval(numbers.Integral, 1, None, closed="left")],
        "index": [StrOptions({"shapley", "banzhaf"})],
        "players": [StrOptions({"auto"}), None],
        "model_output": [StrOptions({"raw", "probability"})],
        "random_state": ["random_state"],
        "missing": [numbers.Real, None],
    }

    def __init__(
        self,
        estimator=None,
        *,
        feature_perturbation="tree_path_dependent",
        background=None,
        n_background=1000,
        index="shapley",
        players=None,
        interaction_order=1,
        n_quadrature="auto",
        output=None,
        model_output="raw",
        random_state=None,
        n_jobs=None,
        device="cpu",
        missing=None,
    ):
        self.estimator = estimator
        self.feature_perturbation = feature_perturbation
        self.background = background
        self.n_background = n_background
        self.index = index
        self.players = players
        self.interaction_order = interaction_order
        self.n_quadrature = n_quadrature
        self.output = output
        self.model_output = model_output
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device
        self.missing = missing

    def _fit_explainer(self, X, y):
        if self.device == "cuda":
            raise ValueError(
                "device='cuda' is not available in this version of sklearn_shapley "
                "(the CuPy kernel is not built); use device='cpu'."
            )
        model = self.estimator_
        if isinstance(model, FrozenEstimator):
            model = model.estimator
        self._preprocessing, model = split_pipeline(model)
        # the model's margin on the fingerprint's rows lets an XGBoost model read
        # before from the same booster be found without hashing its bytes
        fingerprint = self._model_fingerprint
        probe = fingerprint if getattr(self, "_margin_fingerprint", False) else None
        self.ensemble_ = flatten_ensemble(model, missing=self.missing, probe=probe)
        if self._preprocessing is None:  # else the Pipeline's steps check the rows
            check_model_accepts(model, self.ensemble_, X)
        self._prepared = {}  # kernel data per order, see _kernel_data
        n_features = self._tree_input(X[:1]).shape[1]
        if self.ensemble_.n_features != n_features:
            raise ValueError(
                f"X has {n_features} features, but the model was trained on "
                f"{self.ensemble_.n_features}."
            )
        if self.model_output == "probability":
            self._check_raw_is_probability(model, X)
        self._groups = None
        if self.players == "auto" and self._preprocessing is not None:
            self._groups = input_column_groups(self._preprocessing, X.shape[1])
        K = self.ensemble_.n_outputs
        names = self.ensemble_.output_names
        self.output_names_ = (
            [str(n) for n in names]
            if names and len(names) == K
            else [f"output_{k}" for k in range(K)]
        )
        self._is_binary_classifier = K == 2
        if self.feature_perturbation == "tree_path_dependent":
            self.background_ = None
            self._interventional = None
            self.expected_value_ = _kernel.expected_value_kept(self.ensemble_)
            return
        if self.background is None:
            background = default_background(X, self.n_background, self.random_state)
        else:
            background = check_array(
                self._background_rows(),
                accept_sparse="csr",
                dtype=np.float64,
                ensure_all_finite="allow-nan",
            )
            if background.shape[1] != X.shape[1]:
                raise ValueError(
                    f"background has {background.shape[1]} features, X has "
                    f"{X.shape[1]}: pass background rows of the model's features."
                )
        self.background_ = background
        background = self._tree_input(background)  # a Pipeline's features
        if sparse.issparse(background):  # the kernel holds it dense
            background = dense_rows(self.ensemble_, background)
        self._interventional = InterventionalTrees(
            self.ensemble_, background, index=self.index
        )
        self.expected_value_ = predict_raw(self.ensemble_, background).mean(axis=0)

    def _check_raw_is_probability(self, model, X):
        """Refuse ``model_output="probability"`` unless the raw output the kernels
        explain is the model's ``predict_proba`` (then both are the same game)."""
        rows = self._tree_input(X[:100])
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(rows), dtype=np.float64)
            raw = predict_raw(self.ensemble_, rows)
            if proba.shape == raw.shape and np.allclose(proba, raw, atol=1e-12):
                return
        raise ValueError(
            f'model_output="probability" is exact only where the trees\' raw output is '
            f"the class probabilities (scikit-learn trees and forests); "
            f"{type(model).__name__}'s is a margin, whose sigmoid / softmax does not "
            'split over leaves. Use model_output="raw" (the margin), or explain '
            "predict_proba with PermutationExplainer or ExactExplainer."
        )

    def _tree_input(self, X):
        """The features the tree model reads: ``X``, or what a Pipeline's
        preprocessing makes of it."""
        if self._preprocessing is None:
            return X
        rows = transform_rows(self._preprocessing, self._model_input(X))
        if sparse.issparse(rows):  # the Pipeline would give them to its model
            model = split_pipeline(_unwrap(self.estimator_))[1]
            if not _takes_sparse(model):
                check_array(rows, accept_sparse=False, estimator=model, input_name="X")
        return rows

    def _group_sum(self, values, n_axes=1):
        """``values`` with the feature axes 1 .. n_axes summed over each input
        column's group (``players="auto"``), or as they are."""
        if self._groups is None:
            return values
        membership = np.zeros((len(self._groups), values.shape[1]))
        for g, (_, cols) in enumerate(self._groups):
            membership[g, cols] = 1.0
        for axis in range(1, n_axes + 1):
            values = np.moveaxis(
                np.tensordot(membership, values, axes=([1], [axis])), 0, axis
            )
        return values

    def _player_names(self):
        if self._preprocessing is None:
            return super()._player_names()
        names_in = getattr(self, "feature_names_in_", None)
        if self._groups is not None:
            names = super()._player_names()
            return np.array([names[j] for j, _ in self._groups], dtype=object)
        return np.asarray(
            self._preprocessing.get_feature_names_out(names_in), dtype=object
        )

    def _explanation_data(self, X):
        if self._groups is not None:  # a Pipeline's input columns (absent: 0.0)
            X = X[:, [j for j, _ in self._groups]]
            return X.toarray() if sparse.issparse(X) else X
        # the model's rows, dense, an absent entry as the model reads it
        return self._by_blocks(X, lambda rows: rows)

    def _validate(self, X, reset):
        _refuse_dmatrix(X)
        X = super()._validate(X, reset)
        if not reset and self._preprocessing is None:  # at fit: _fit_explainer
            check_model_accepts(_unwrap(self.estimator_), self.ensemble_, X)
        return X

    def _explain_values(self, X):
        values = self._kernel_values(X, 1)
        base = np.broadcast_to(
            self.expected_value_, (X.shape[0], len(self.expected_value_))
        )
        return self._group_sum(values), np.array(base), {}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        model = _unwrap(getattr(self, "estimator", None))
        tags.input_tags.sparse = model is None or _takes_sparse(model)
        return tags

    def __getstate__(self):
        # the prepared kernel data is a cache of compiled-module objects: not pickled
        state = dict(super().__getstate__())
        state.pop("_prepared", None)
        return state

    def _kernel_data(self, order):
        """The kernel's data for ``order``, built on first use and kept
        until the ensemble or ``n_quadrature`` changes (``fit`` starts afresh)."""
        cache = self.__dict__.setdefault("_prepared", {})
        key = (order, repr(self.n_quadrature), self.index)
        if key not in cache:
            for stale in [k for k in cache if k[1:] != key[1:]]:
                del cache[stale]
            cache[key] = _kernel.prepare_kept(  # kept with the ensemble too
                self.ensemble_, order, self.n_quadrature, self.index
            )
        return cache[key]

    # -- the model's fingerprint (see BaseExplainer._fingerprint) -----------------------
    def _fingerprint(self, X):
        # An XGBoost model given rows as an array is fingerprinted by its margin,
        # one inplace_predict of its booster (what the explained trees give): the
        # fingerprint is then also the probe of read_xgboost (see _fit_explainer).
        # A frame's rows go through the scikit-learn wrapper's own predict.
        self._margin_fingerprint = is_xgboost(_unwrap(self.estimator_)) and (
            getattr(self, "_frame_codec", None) is None
        )
        self._fingerprint_missing = self.missing  # fit's, should it be set again
        fingerprint = super()._fingerprint(X)
        if fingerprint is None and self._margin_fingerprint:  # refused: as others
            self._margin_fingerprint = False
            fingerprint = super()._fingerprint(X)
        return fingerprint

    def _fingerprint_rows(self, X):
        # The rows probed when this booster was last read (rows of the X of that
        # fit, standing for the model's data as well): the same margins on them
        # find that read again without hashing the model (read_xgboost's probe).
        if self._margin_fingerprint:
            rows = probe_rows(_unwrap(self.estimator_), self._fingerprint_missing)
            if rows is not None and rows.shape[1] == X.shape[1]:
                return rows
        return super()._fingerprint_rows(X)

    def _fingerprint_outputs(self, rows):
        if getattr(self, "_margin_fingerprint", False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = _unwrap(self.estimator_)
                missing = getattr(self, "_fingerprint_missing", self.missing)
                return xgboost_margin(model, rows, missing)
        return super()._fingerprint_outputs(rows)

    def _model_is_deterministic(self):
        # a tree ensemble is (the kernel reads it); a Pipeline's steps may not be
        return not isinstance(_unwrap(self.estimator_), Pipeline)

    def _explained_output(self, X):
        return predict_raw(self.ensemble_, self._tree_input(X))

    def _predicted_scores(self, values, base_values, X):
        # Banzhaf values do not sum to the output: ask the model
        if self.index == "banzhaf":
            return self._explained_output(X)
        return super()._predicted_scores(values, base_values, X)

    def _kernel_values(self, X, order):
        """Values ``(n, d, K)`` (``order`` 1) or the interaction matrix
        ``(n, d, d, K)`` (``order`` 2) of ``X``'s model columns, from the
        interventional kernel or the path-dependent one."""
        if self._interventional is not None:
            return self._by_blocks(
                X,
                lambda rows: self._interventional.values(
                    rows, order, n_threads=self.n_jobs
                ),
            )
        compute = _kernel.shap_values if order == 1 else _kernel.shap_interaction_values
        return self._by_blocks(
            X,
            lambda rows: compute(
                self.ensemble_,
                rows,
                n_quadrature=self.n_quadrature,
                n_threads=self.n_jobs,
                prepared=self._kernel_data(order),
            ),
        )

    def _by_blocks(self, X, compute):
        """``compute`` of the tree input of ``X`` (a Pipeline's features), a block
        of rows at a time when it is sparse (:func:`~._flat.map_row_blocks`)."""
        return map_row_blocks(self.ensemble_, self._tree_input(X), compute)

    # -- interactions -----------------------------------------------------------------
    def interactions(self, X, order=2, *, dense=False):
        """Shapley (or, with ``index="banzhaf"``, Banzhaf) interactions of order
        ``order``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        order : int, default=2
            ``2``: the dense SHAP interaction matrix in the TreeSHAP convention of
            ``xgboost pred_interactions`` / ``shap_interaction_values`` (off-diagonal
            ``SII / 2``, diagonal the main effect, rows summing to ``φ``), shape
            ``(n, d, d)`` or ``(n, d, d, K)``. ``k >= 3``: the Shapley interaction
            index of every ``k``-subset of features that co-occur on some root-to-leaf
            path (path-dependent only).
        dense : bool, default=False
            For ``k >= 3``: return the full ``(n, d, ..., d)`` array (symmetric, zero
            on repeated indices) instead of the sparse pair.

        Returns
        -------
        ndarray, or for ``k >= 3`` and ``dense=False`` a pair ``(subsets, values)``:
        ``subsets`` int ``(m, k)`` of sorted feature indices, ``values`` ``(n, m)`` or
        ``(n, m, K)``. With ``players="auto"`` on a Pipeline, the order-2 matrix sums
        the blocks of the input columns; higher orders are not grouped (refused). A
        Dask array ``X`` gives a Dask array chunked by rows (the memory check
        applies to each chunk), for ``k <= 2`` or ``dense=True``.
        """
        check_is_fitted(self)
        check_scalar(order, "order", numbers.Integral, min_val=1)
        if _dask.is_dask_collection(X):
            return self._dask_interactions(X, int(order), dense)
        if order == 1:
            return self.explain(X).values
        X = self._validate(X, reset=False)
        if self._groups is not None and order >= 3:
            raise ValueError(
                f"Order-{order} interactions are not summed over players='auto' "
                "groups; use players=None for them."
            )
        n, d, K = X.shape[0], self.ensemble_.n_features, self.ensemble_.n_outputs
        squeeze = K == 1
        if order == 2:
            check_fits_in_memory((n, d, d, K), "The interaction matrix")
            values = self._group_sum(self._kernel_values(X, 2), n_axes=2)
            return values[..., 0] if squeeze else values
        if self._interventional is not None:
            raise ValueError(
                f"order={order}: interventional interactions are computed up to "
                "order 2; use feature_perturbation='tree_path_dependent' for higher "
                "orders."
            )
        kernel_data = self._kernel_data(order)
        subsets = kernel_data.subsets
        check_fits_in_memory(
            (n, max(len(subsets), 1), K), f"Order-{order} interactions"
        )
        if dense:
            check_fits_in_memory(
                (n,) + (d,) * order + (K,), f"The dense order-{order} array"
            )
        values = self._by_blocks(
            X,
            lambda rows: _kernel.shapley_interactions(
                self.ensemble_,
                rows,
                order,
                n_quadrature=self.n_quadrature,
                n_threads=self.n_jobs,
                prepared=kernel_data,
            ),
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
        n = X.shape[0]
        if values.ndim == 4:
            phi = values.sum(axis=2)
            base = np.broadcast_to(self.expected_value_, (n, values.shape[-1]))
            idx = self._output_index(phi, base, X)
            values = values[np.arange(n), :, :, idx]
        return values.reshape(n, -1)

    def get_feature_names_out(self, input_features=None):
        """Feature names, or ``"a*b"`` pairs with ``interaction_order=2``."""
        names = super().get_feature_names_out(input_features)
        if self.interaction_order == 1:
            return names
        return np.array([f"{a}*{b}" for a in names for b in names], dtype=object)

    def score(self, X, y=None):
        """Minus the mean absolute efficiency gap ``|base + Σφ − raw output|``.

        Zero (the best) when Shapley values are exact; usable in ``GridSearchCV``,
        e.g. over ``n_quadrature``. Banzhaf values are not efficient: their gap
        measures how far they are from summing to the output. ``y`` is ignored.
        """
        exp = self.explain(X)
        X = self._validate(X, reset=False)
        raw = self._explained_output(X)
        values = exp.values if exp.values.ndim == 3 else exp.values[:, :, None]
        base = (
            exp.base_values if exp.base_values.ndim == 2 else exp.base_values[:, None]
        )
        return -float(np.mean(np.abs(base + values.sum(axis=1) - raw)))
