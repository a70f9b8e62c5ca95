"""The one result object every explainer returns from ``explain``."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np


class Explanation:
    """Attributions for a batch of rows, in the conventions of ``shap.Explanation``.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_players) or (n_samples, n_players, n_outputs)
        The attributions.
    base_values : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The value of the empty coalition; ``base_values + values.sum(axis=1)`` is the
        explained output (efficiency).
    data : ndarray of shape (n_samples, n_features) or None
        The explained rows.
    feature_names : list of str
        One name per player.
    output_names : list of str or None
        One name per output when ``values`` is 3-D.
    n_evaluations : ndarray of shape (n_samples,) or None
        Model evaluations spent on each row, for the sampling explainers.
    """

    def __init__(
        self,
        values,
        base_values,
        data=None,
        feature_names=None,
        output_names=None,
        n_evaluations=None,
    ):
        self.values = np.asarray(values)
        self.base_values = np.asarray(base_values)
        self.data = None if data is None else np.asarray(data)
        if feature_names is None:
            feature_names = [f"x{i}" for i in range(self.values.shape[1])]
        self.feature_names = [str(name) for name in feature_names]
        self.output_names = (
            None if output_names is None else [str(o) for o in output_names]
        )
        self.n_evaluations = n_evaluations
        if self.values.ndim not in (2, 3):
            raise ValueError(
                f"values must be 2-D or 3-D, got shape {self.values.shape}."
            )
        if self.base_values.shape != (self.values.shape[0],) + self.values.shape[2:]:
            raise ValueError(
                f"base_values has shape {self.base_values.shape}; expected "
                f"{(self.values.shape[0],) + self.values.shape[2:]} for values of shape "
                f"{self.values.shape}."
            )

    @property
    def shape(self):
        return self.values.shape

    def __len__(self):
        return self.values.shape[0]

    def __getitem__(self, rows):
        """Select rows: ``exp[3]``, ``exp[10:20]``, ``exp[mask]``."""
        if isinstance(rows, tuple):
            raise IndexError(
                "Explanation indexes rows only; slice .values for players or outputs."
            )
        if isinstance(rows, numbers.Integral):
            rows = [rows]
        return Explanation(
            self.values[rows],
            self.base_values[rows],
            None if self.data is None else self.data[rows],
            self.feature_names,
            self.output_names,
            None
            if self.n_evaluations is None
            else np.asarray(self.n_evaluations)[rows],
        )

    def efficiency_gap(self, outputs):
        """``|base_values + Σφ − outputs|`` per row (and output)."""
        return np.abs(self.base_values + self.values.sum(axis=1) - np.asarray(outputs))

    def to_shap(self):
        """Return a ``shap.Explanation`` (requires shap) so shap's plots work on it."""
        try:
            import shap
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "to_shap() needs the shap package: pip install shap"
            ) from exc
        return shap.Explanation(
            values=self.values,
            base_values=self.base_values,
            data=self.data,
            feature_names=list(self.feature_names),
            output_names=None if self.output_names is None else list(self.output_names),
        )

    def __repr__(self):
        return (
            f"Explanation(values shape={self.values.shape}, "
            f"features={self.feature_names[:5]}{'...' if len(self.feature_names) > 5 else ''}, "
            f"outputs={self.output_names})"
        )


class ShapleyValues(NamedTuple):
    """What the ground-truth functions return.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_players, n_outputs)
    base_values : ndarray of shape (n_rows, n_outputs)
        ``v(∅)`` of each row's game.
    n_evaluations : ndarray of shape (n_rows,)
        Coalition evaluations ``v_x(S)`` spent on each row (``v(∅)`` and the grand
        coalition included).
    """

    values: np.ndarray
    base_values: np.ndarray
    n_evaluations: np.ndarray
