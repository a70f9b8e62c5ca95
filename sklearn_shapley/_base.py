"""``BaseExplainer``: what every explainer shares.

Estimator resolution (clone-and-fit, frozen or callable), parameter and input
validation, output selection, ``transform`` / ``explain`` /
``get_feature_names_out``. Subclasses implement ``_fit_explainer(X, y)``,
``_explain_values(X) -> (values (n, d, K), base (n, K))`` and ``score``.
"""

from __future__ import annotations

import numbers
import sys
import warnings

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _dask
from ._explanation import Explanation
from ._frames import FrameCodec, is_frame, model_category_codes
from ._pipelines import group_data, group_name


def is_fitted_estimator(estimator):
    """True when ``estimator`` is a fitted scikit-learn style estimator."""
    if isinstance(estimator, FrozenEstimator):
        return True
    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError):
        return False
    return True


#: Quantile levels of the rows on which ``fit`` records the model's outputs.
FINGERPRINT_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Of sparse rows, the first this many (made dense) give those quantiles.
FINGERPRINT_SPARSE_ROWS = 1000


def _unwrap(model):
    return model.estimator if isinstance(model, FrozenEstimator) else model


def _model_outputs(model, X):
    """The model's outputs on ``X`` as a float64 array, whatever kind of model it is.

    The most informative method a model has: a margin (``decision_function``, a
    booster's raw score), probabilities, or ``predict``; a torch module or callable is
    called on the array.
    """
    model = _unwrap(model)
    kind = type(model).__module__.split(".")[0] + "." + type(model).__name__
    if kind == "xgboost.Booster":
        import xgboost

        out = model.predict(xgboost.DMatrix(X), output_margin=True)
    elif kind == "lightgbm.Booster":
        out = model.predict(X, raw_score=True)
    elif hasattr(model, "decision_function"):
        out = model.decision_function(X)
    elif hasattr(model, "predict_proba"):
        out = model.predict_proba(X)
    elif hasattr(model, "predict"):
        out = model.predict(X)
    elif "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module):
        import torch

        param = next(model.parameters(), None)
        dtype = torch.float32 if param is None else param.dtype
        device = "cpu" if param is None else param.device
        with torch.no_grad():
            out = model(torch.as_tensor(np.asarray(X), dtype=dtype, device=device))
        out = out.detach().cpu().numpy().astype(np.float64)
    else:
        out = model(X)
    return np.array(out, dtype=np.float64)


def _fingerprint_rows(X):
    """A few rows that stand for ``X``: its per-column quantiles (values it holds)."""
    if not np.isnan(X).any():  # the same rows, vectorised (nanquantile loops on
        # the columns in Python)
        rows = np.quantile(X, FINGERPRINT_QUANTILES, axis=0, method="nearest")
        return np.ascontiguousarray(rows, dtype=X.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        rows = np.nanquantile(X, FINGERPRINT_QUANTILES, axis=0, method="nearest")
    return np.ascontiguousarray(rows, dtype=X.dtype)


class BaseExplainer(TransformerMixin, BaseEstimator):
    """Base class of the explainers: a transformer from rows to attributions.

    The first parameter of every explainer is ``estimator``, the model to explain:

    - an unfitted scikit-learn estimator is cloned and fitted on ``(X, y)`` in ``fit``;
    - a fitted one wrapped in :class:`sklearn.frozen.FrozenEstimator` is explained as is
      (and survives ``clone``, so ``GridSearchCV`` works); a fitted estimator passed
      bare is explained as is when ``fit`` gets no ``y``, and cloned and refitted when
      it does, as scikit-learn meta-estimators do;
    - model-agnostic explainers also accept any callable ``f(X) -> array`` (a function,
      a torch module).

    ``X`` may be a pandas DataFrame with numeric, ``category`` and string columns (and
    NaN, for models that take it): the explainer computes on category codes (those a
    tree model's own splits use), the model gets the DataFrame back with fit's dtypes,
    the column names name the attributions, and ``transform`` / ``explain`` refuse a
    DataFrame whose columns differ from fit's, naming them. ``Explanation.data``
    holds the codes.

    ``output`` selects what ``transform`` returns for models with several outputs:
    ``None`` picks the only output, the positive class of a binary classifier (column
    1), and for multi-class models the class each row is predicted to be (the argmax
    of the explained output); an int selects that output column, any other value
    (e.g. a class label) is looked up in ``output_names``, and ``"predicted"`` forces
    the per-row predicted class.

    For shap users: an explainer is callable like shap's, ``explainer(X)`` returning
    the :class:`~sklearn_shapley.Explanation` of ``explain(X)``. shap's
    ``explainer.expected_value`` (the base value every row's attributions start from)
    is ``expected_value_`` on :class:`~sklearn_shapley.QuadratureTreeExplainer`, one
    value per output; for every explainer it is ``explain(X).base_values``, per row
    (the same for every row of a baseline or marginal game).
    """

    _accepts_callables = False
    _allow_nan = False
    _allow_inf = False
    #: ``accept_sparse`` of the rows' validation: False, or the scipy sparse format
    #: the explainer reads (it then handles sparse rows itself).
    _accept_sparse = False
    _parameter_constraints: dict = {
        "estimator": "no_validation",  # resolved, with its own errors, in fit
        "output": "no_validation",  # any output label
    }

    def __init_subclass__(cls, **kwargs):
        """Merge the constraints a class declares for the parameters it adds with
        its bases', keeping those of its own parameters: ``fit`` checks them all."""
        super().__init_subclass__(**kwargs)
        merged = {}
        for base in reversed(cls.__mro__[1:]):
            merged.update(getattr(base, "_parameter_constraints", {}))
        merged.update(cls.__dict__.get("_parameter_constraints", {}))
        names = cls._get_param_names()
        cls._parameter_constraints = {k: v for k, v in merged.items() if k in names}

    #: Whether rows from a DataFrame may hold NaN (for the model to handle); False
    #: for explainers whose network reads the rows.
    _nan_from_frames = True

    # -- estimator -----------------------------------------------------------------
    def _needs_target(self):
        est = getattr(self, "estimator", None)
        if est is None or isinstance(est, FrozenEstimator):
            return False
        if isinstance(est, BaseEstimator):
            return not is_fitted_estimator(est)
        return False

    def _resolve_estimator(self, X, y):
        est = self.estimator
        if est is None:
            raise ValueError(
                f"{type(self).__name__} needs a model to explain: pass it as the first "
                "argument, e.g. "
                f"{type(self).__name__}(FrozenEstimator(fitted_model))."
            )
        if isinstance(est, FrozenEstimator):
            return est
        if isinstance(est, BaseEstimator) and hasattr(est, "fit"):
            if y is None:
                if is_fitted_estimator(est):
                    return est
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y "
                    f"is None: the estimator {type(est).__name__} is not fitted, so it "
                    "is cloned and fitted on (X, y). Pass y, or pass a fitted model "
                    "wrapped in sklearn.frozen.FrozenEstimator."
                )
            return clone(est).fit(X, y)
        if hasattr(est, "predict") or (self._accepts_callables and callable(est)):
            return est
        supported = "a scikit-learn estimator"
        if self._accepts_callables:
            supported += ", a torch module or a callable f(X) -> array"
        raise TypeError(
            f"{type(self).__name__} cannot explain an object of type "
            f"{type(est).__name__}; pass {supported}."
        )

    # -- validation -----------------------------------------------------------------
    def _validate(self, X, reset):
        if reset:
            self._model_fingerprint = None
            named = is_frame(X) and all(isinstance(c, str) for c in X.columns)
            self._frame_codec = FrameCodec(X) if named else None
        else:
            self._check_model_unchanged()
        if is_frame(X) and getattr(self, "_frame_codec", None) is not None:
            X = self._frame_codec.encode(X)  # category codes, fit's columns checked
        # an explainer that allows inf checks what its model takes itself
        finite = (
            False if self._allow_inf else ("allow-nan" if self._takes_nan() else True)
        )
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_all_finite=finite,
            accept_sparse=self._accept_sparse,
        )

    def _takes_nan(self):
        """Whether rows may hold NaN: always for an explainer that handles missing
        values itself; for the others when fitted on a DataFrame, whose model then
        decides (HistGradientBoosting and Pipelines with imputers take NaN), unless
        a network of the explainer reads the rows."""
        from_frame = getattr(self, "_frame_codec", None) is not None
        return self._allow_nan or (from_frame and self._nan_from_frames)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the model if needed, then prepare the explainer.

        The parameters are checked first against ``_parameter_constraints``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (for the model, background data and explainer training).
        y : array-like of shape (n_samples,), default=None
            Target, needed only when ``estimator`` is an unfitted scikit-learn model.

        Returns
        -------
        self
        """
        X = self._validate(X, reset=True)
        self._prepare_fit(X)
        self.estimator_ = self._resolve_estimator(self._model_input(X), y)
        X = self._use_model_codes(X)
        self._model_fingerprint = self._fingerprint(X)
        self._fit_explainer(X, y)
        return self

    def _prepare_fit(self, X):
        """Hook: settle what the model's input depends on (the image explainers'
        image shape) before the model is resolved; nothing by default."""

    # -- the model must stay the one the explainer was fitted for --------------------
    def _fingerprint(self, X):
        """``(rows, outputs)``: the model's outputs on a few rows standing for ``X``.

        ``transform`` / ``explain`` re-evaluate the model on these rows to detect a
        model changed (e.g. refitted in place) after ``fit``: what the explainer
        prepared at ``fit`` (a tree ensemble's flat arrays, a trained explainer
        network, a background game) would then explain a model that no longer
        exists. ``None`` (no check) when the model cannot be evaluated on them or
        is not deterministic.
        """
        if self.estimator_ is None or X.shape[0] == 0:
            return None
        rows = self._fingerprint_rows(X)
        # a model known to be deterministic is asked once, any other twice
        n_calls = 1 if self._model_is_deterministic() else 2
        try:
            first, *again = (self._fingerprint_outputs(rows) for _ in range(n_calls))
        except Exception:  # a model that refuses these rows: no check
            return None
        for second in again:
            if first.shape != second.shape or not np.array_equal(
                first, second, equal_nan=True
            ):
                return None  # not deterministic (e.g. dropout in training mode)
        return rows, first

    def _fingerprint_rows(self, X):
        """The rows ``_fingerprint`` evaluates the model on: the quantiles of ``X``
        (of its first rows, made dense, when sparse)."""
        if sparse.issparse(X):
            X = X[:FINGERPRINT_SPARSE_ROWS].toarray()
        return _fingerprint_rows(X)

    def _model_is_deterministic(self):
        """Whether ``estimator_`` is known to give the same outputs for the same
        rows (then ``_fingerprint`` asks it once, not twice): False here; an
        explainer that reads the model itself (a tree ensemble) knows better."""
        return False

    def _fingerprint_outputs(self, rows):
        model = _unwrap(self.estimator_)
        if isinstance(model, BaseEstimator):
            rows = self._model_input(rows)  # as the model was fitted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _model_outputs(model, rows)

    def _check_model_unchanged(self):
        """Raise ``ValueError`` when the model's outputs differ from those at ``fit``."""
        fingerprint = getattr(self, "_model_fingerprint", None)
        if fingerprint is None:
            return
        rows, expected = fingerprint
        try:
            outputs = self._fingerprint_outputs(rows)
        except Exception as exc:
            raise ValueError(
                f"The model explained by this {type(self).__name__} no longer "
                f"predicts the rows it predicted at fit ({type(exc).__name__}: "
                f"{exc}); it was changed after fit. Refit the explainer: "
                "explainer.fit(X)."
            ) from exc
        if outputs.shape == expected.shape and np.array_equal(
            outputs, expected, equal_nan=True
        ):
            return  # the same outputs (a deterministic model's): no tolerance needed
        scale = np.max(np.abs(expected[np.isfinite(expected)]), initial=1.0)
        if outputs.shape != expected.shape or not np.allclose(
            outputs, expected, rtol=1e-6, atol=1e-6 * scale, equal_nan=True
        ):
            raise ValueError(
                f"The model explained by this {type(self).__name__} was changed "
                "after fit (e.g. refitted in place): its outputs on the rows "
                "recorded at fit differ from those it gave then, and the explainer "
                "would explain the old model. Refit the explainer: explainer.fit(X)."
            )

    def _use_model_codes(self, X):
        """``X`` recoded with the category codes the model's own splits use (a tree
        model's; see :func:`~sklearn_shapley._frames.model_category_codes`)."""
        codec = getattr(self, "_frame_codec", None)
        codes = {} if codec is None else model_category_codes(self.estimator_, codec)
        if not codes:
            return X
        self._frame_codec = codec.with_codes(codes)
        return self._frame_codec.encode(codec.decode(X)).to_numpy(dtype=X.dtype)

    def _background_rows(self):
        """The ``background`` parameter as float rows: a DataFrame in the codes of
        fit's (its categories as the model reads them), a sparse matrix as it is."""
        if getattr(self, "_frame_codec", None) is not None and is_frame(
            self.background
        ):
            return self._frame_codec.encode(self.background).to_numpy(np.float64)
        if sparse.issparse(self.background):
            return self.background
        return np.asarray(self.background, dtype=np.float64)

    def _model_input(self, X):
        """What the model is fitted on: the DataFrame of fit (its columns, dtypes and
        categories) when it had one, ``X`` with its column names when it had them."""
        codec = getattr(self, "_frame_codec", None)
        if codec is not None:
            return codec.decode(X)
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return X
        import pandas as pd

        return pd.DataFrame(X, columns=names)

    # -- players and outputs --------------------------------------------------------
    def _player_names(self):
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.array(
                [f"x{i}" for i in range(self.n_features_in_)], dtype=object
            )
        players = getattr(self, "players", None)
        if players is None or isinstance(players, str):  # "auto": one per column
            return np.asarray(names, dtype=object)
        members = [[str(names[c]) for c in np.atleast_1d(g)] for g in players]
        short = [group_name(m) for m in members]
        return np.array(  # a name two groups would share: their columns, joined
            [n if short.count(n) == 1 else "+".join(m) for n, m in zip(short, members)],
            dtype=object,
        )

    def get_feature_names_out(self, input_features=None):
        """Names of the attribution columns ``transform`` returns (one per player)."""
        check_is_fitted(self)
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            if len(input_features) != self.n_features_in_:
                raise ValueError(
                    f"input_features has {len(input_features)} names, expected "
                    f"{self.n_features_in_}."
                )
            names_in = getattr(self, "feature_names_in_", None)
            if names_in is not None and not np.array_equal(input_features, names_in):
                raise ValueError("input_features is not equal to feature_names_in_")
        return self._player_names()

    def _output_index(self, values, base_values, X):
        """Column of the output to return for each row: an int array ``(n,)``."""
        n, K = base_values.shape
        output = self.output
        names = self.output_names_
        predicted = None
        if output is None:
            if K == 1:
                return np.zeros(n, dtype=np.int64)
            if K == 2 and getattr(self, "_is_binary_classifier", False):
                return np.ones(n, dtype=np.int64)
            predicted = True
        elif isinstance(output, str) and output == "predicted":
            predicted = True
        if predicted:
            return np.argmax(self._predicted_scores(values, base_values, X), axis=1)
        if isinstance(output, numbers.Integral) and not isinstance(output, bool):
            if not -K <= output < K:
                raise ValueError(f"output={output} is out of range for {K} outputs.")
            return np.full(n, output % K, dtype=np.int64)
        if names is not None and str(output) in names:
            return np.full(n, names.index(str(output)), dtype=np.int64)
        raise ValueError(
            f"output={output!r} is neither an output index in [0, {K}) nor one of the "
            f"output names {names}."
        )

    # -- the public methods -----------------------------------------------------------
    def explain(self, X):
        """Explain rows: return an :class:`~sklearn_shapley.Explanation`.

        ``values`` is ``(n, n_players)`` for single-output models and
        ``(n, n_players, n_outputs)`` otherwise; ``base_values + values.sum(axis=1)``
        equals the explained output. A Dask collection is refused: use
        ``transform``, which returns one lazily.
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            raise _dask.refuse_explain(self)
        X = self._validate(X, reset=False)
        values, base, extra = self._finite_values(X)
        if values.shape[2] == 1:
            values, base = values[:, :, 0], base[:, 0]
            output_names = None
        else:
            output_names = self.output_names_
        return Explanation(
            values,
            base,
            data=self._explanation_data(X),
            feature_names=list(self._player_names()),
            output_names=output_names,
            **extra,
        )

    def __call__(self, X):
        """Explain rows like shap's ``explainer(X)``: the same as :meth:`explain`."""
        return self.explain(X)

    def _explanation_data(self, X):
        """The data of each player shown beside its values: ``X``'s columns, or
        with player groups of one-hot blocks one column per group (so that plots
        pair them); other groups (an image's patches) keep the rows whole."""
        players = getattr(self, "players", None)
        grouped = None
        if players is not None and not isinstance(players, str):
            grouped = group_data(X, players)
        return X if grouped is None else grouped

    def _finite_values(self, X):
        """``_explain_values(X)``, refused when a value is not finite: a NaN or an
        overflow would otherwise come back as an attribution."""
        values, base, extra = self._explain_values(X)
        bad = ~(
            np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
            & np.isfinite(base).all(axis=tuple(range(1, base.ndim)))
        )
        if bad.any():
            rows = X[np.flatnonzero(bad)]
            rows = rows.toarray() if sparse.issparse(rows) else rows
            with np.errstate(invalid="ignore"):
                largest = np.nanmax(np.abs(rows), initial=0.0)
            raise ValueError(
                f"{type(self).__name__} computed non-finite attributions (NaN or inf) "
                f"for {int(bad.sum())} of {X.shape[0]} rows (largest |x| among them "
                f"{largest:.3g}): their values are outside the range the computation "
                "holds (float64: |v| < 1.8e308; a float32 network: |v| < 3.4e38). "
                "Explain rows with smaller values, or rescale the inputs or the "
                "model's output."
            )
        return values, base, extra

    def transform(self, X):
        """Attributions ``(n_samples, n_players)`` for the selected ``output``.

        A Dask array or DataFrame gives the same kind back, computed lazily block by
        block (see :mod:`sklearn_shapley._dask`).
        """
        check_is_fitted(self)
        if _dask.is_dask_collection(X):
            return _dask.transform(self, X)
        X = self._validate(X, reset=False)
        values, base, _ = self._finite_values(X)
        idx = self._output_index(values, base, X)
        return values[np.arange(X.shape[0]), :, idx]

    def explained_output(self, X):
        """The model output that ``base_values + Σφ`` reconstructs, ``(n, n_outputs)``.

        For the model-agnostic explainers this is the game of the grand coalition
        (the model's prediction under ``link``); for tree models the raw margin.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return self._explained_output(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allow_nan
        tags.target_tags.required = self._needs_target()
        tags.requires_fit = True
        return tags

    # -- to implement ---------------------------------------------------------------
    def _predicted_scores(self, values, base_values, X):
        """``(n, K)`` scores whose argmax is the predicted output (``output=None``):
        ``base + Σφ``, the explained output when the values are efficient."""
        return base_values + values.sum(axis=1)

    def _explained_output(self, X):  # pragma: no cover - interface
        raise NotImplementedError

    def _fit_explainer(self, X, y):  # pragma: no cover - interface
        raise NotImplementedError

    def _explain_values(self, X):  # pragma: no cover - interface
        """Return ``(values (n, d, K), base (n, K), extra dict for Explanation)``."""
        raise NotImplementedError
