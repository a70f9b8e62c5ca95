"""The one result object every explainer returns from ``explain``."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

#: The axes an Explanation's ``values`` can have, in order.
_AXES = ("rows", "features", "outputs")


class Explanation:
    """Attributions for a batch of rows, in the conventions of ``shap.Explanation``.

    Slicing follows ``shap.Explanation``: ``e[0]`` is one row (``values`` ``(d,)``,
    a scalar base value), ``e[:10]`` or ``e[mask]`` a subset of rows, ``e[:, "bmi"]``
    (or ``e[:, 2]``) one feature, ``e[:, ["bmi", "bp"]]`` several, and for
    ``(n, d, K)`` values ``e[:, :, 1]`` or ``e[..., "class_1"]`` one output.
    ``base_values``, ``data``, ``feature_names``, ``output_names`` and
    ``n_evaluations`` follow the selection; an axis indexed by a single integer or
    name is dropped, and its name becomes a ``str`` (``e[:, "bmi"].feature_names``
    is ``"bmi"``). ``e.abs``, ``e.mean(0)`` and ``e.sum(0)`` give the Explanations
    that ``shap.plots`` builds on (``e.abs.mean(0)`` is the mean ``|φ|`` per feature).

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_players) or (n_samples, n_players, n_outputs)
        The attributions.
    base_values : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        The value of the empty coalition; ``base_values + values.sum(axis=1)`` is the
        explained output (efficiency).
    data : ndarray of shape (n_samples, n_features) or None
        The explained rows. ``n_features`` may differ from ``n_players`` (e.g. the
        pixels of an image explained by patches); then selecting players leaves
        ``data`` out.
    feature_names : list of str
        One name per player.
    output_names : list of str or None
        One name per output when ``values`` is 3-D.
    n_evaluations : ndarray of shape (n_samples,) or None
        Model evaluations spent on each row, for the sampling explainers.

    Attributes
    ----------
    axes : tuple of str
        What each axis of ``values`` is: ``"rows"``, ``"features"`` or ``"outputs"``
        (``("rows", "features")`` for a full single-output Explanation, ``("features",)``
        for ``e[0]``).
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
        if self.values.ndim not in (2, 3):
            raise ValueError(
                f"values must be 2-D or 3-D, got shape {self.values.shape}."
            )
        if feature_names is None:
            feature_names = [f"x{i}" for i in range(self.values.shape[1])]
        self.feature_names = [str(name) for name in feature_names]
        self.output_names = (
            None if output_names is None else [str(o) for o in output_names]
        )
        self.n_evaluations = (
            None if n_evaluations is None else np.asarray(n_evaluations)
        )
        self.axes = _AXES[: self.values.ndim]
        if len(self.feature_names) != self.values.shape[1]:
            raise ValueError(
                f"{len(self.feature_names)} feature_names for values of shape "
                f"{self.values.shape}; give one name per player (axis 1)."
            )
        if self.output_names is not None and (
            self.values.ndim != 3 or len(self.output_names) != self.values.shape[2]
        ):
            raise ValueError(
                f"{len(self.output_names)} output_names for values of shape "
                f"{self.values.shape}; give one per output (axis 2), or None for "
                "2-D values."
            )
        if self.base_values.shape != (self.values.shape[0],) + self.values.shape[2:]:
            raise ValueError(
                f"base_values has shape {self.base_values.shape}; expected "
                f"{(self.values.shape[0],) + self.values.shape[2:]} for values of shape "
                f"{self.values.shape}."
            )
        self._data_axes = self._initial_data_axes()

    def _initial_data_axes(self):
        """What each axis of ``data`` is: rows, then features when they line up."""
        if self.data is None:
            return None
        n, d = self.values.shape[:2]
        if self.data.ndim == 2 and self.data.shape == (n, d):
            return ("rows", "features")
        if self.data.ndim >= 1 and self.data.shape[0] == n:
            return ("rows",) + (None,) * (self.data.ndim - 1)
        return (None,) * self.data.ndim

    @classmethod
    def _new(cls, values, base_values, data, data_axes, feature_names, output_names,
             n_evaluations, axes):  # fmt: skip
        """Build a (possibly sliced) Explanation without the full-object checks."""
        new = object.__new__(cls)
        new.values = values
        new.base_values = base_values
        new.data = data
        new._data_axes = None if data is None else data_axes
        new.feature_names = feature_names
        new.output_names = output_names
        new.n_evaluations = n_evaluations
        new.axes = tuple(axes)
        return new

    @property
    def shape(self):
        """The shape of ``values``."""
        return self.values.shape

    def __len__(self):
        if self.values.ndim == 0:
            raise TypeError("len() of an Explanation of a single value.")
        return self.values.shape[0]

    # -- slicing ---------------------------------------------------------------------
    def _names(self, axis):
        if axis == "features":
            return self.feature_names
        if axis == "outputs":
            return self.output_names
        return None

    def _resolve(self, axis, key):
        """Turn names into positions and check the key for one axis."""
        size = self.values.shape[self.axes.index(axis)]
        if isinstance(key, slice):
            return key
        if isinstance(key, (str, np.str_)):
            return self._position(axis, str(key))
        if isinstance(key, numbers.Integral) and not isinstance(key, (bool, np.bool_)):
            if not -size <= key < size:
                raise IndexError(f"index {key} is out of range for {size} {axis}.")
            return int(key)
        key = np.asarray(key)
        if key.dtype.kind in "US" or (
            key.dtype == object and key.size and isinstance(key.flat[0], str)
        ):
            return np.array([self._position(axis, str(k)) for k in key.ravel()])
        if key.dtype == bool:
            if key.shape != (size,):
                raise IndexError(
                    f"a boolean mask over {axis} needs {size} entries, got shape "
                    f"{key.shape}."
                )
            return np.flatnonzero(key)
        if key.size == 0:
            return key.astype(np.intp)
        if key.dtype.kind not in "iu" or key.ndim != 1:
            raise IndexError(
                f"cannot index {axis} with {key!r}: use an int, a slice, a name, or a "
                "1-D array of ints, names or booleans."
            )
        return key

    def _position(self, axis, name):
        names = self._names(axis)
        if names is None:
            if axis == "rows":
                raise IndexError(
                    f"rows are selected by position, not by name ({name!r}); select a "
                    "feature with e[:, name]."
                )
            raise IndexError(f"this Explanation has no output names to find {name!r}.")
        try:
            return list(names).index(name)
        except ValueError:
            raise IndexError(
                f"{name!r} is not one of the {axis[:-1]} names {list(names)}."
            ) from None

    def __getitem__(self, item):
        """Select rows, features and outputs: ``e[0]``, ``e[:, "bmi"]``, ``e[..., 1]``."""
        if not isinstance(item, tuple):
            item = (item,)
        if sum(k is Ellipsis for k in item) > 1:
            raise IndexError("an Explanation index can have only one Ellipsis (...).")
        if any(k is Ellipsis for k in item):
            at = next(i for i, k in enumerate(item) if k is Ellipsis)
            fill = (slice(None),) * (len(self.axes) - len(item) + 1)
            item = item[:at] + fill + item[at + 1 :]
        if len(item) > len(self.axes):
            raise IndexError(
                f"too many indices: this Explanation has axes {self.axes}."
            )
        keys = {axis: self._resolve(axis, key) for axis, key in zip(self.axes, item)}

        def take(array, array_axes):
            """Apply the keys to the axes of ``array`` named in ``array_axes``."""
            for pos in reversed(range(len(array_axes))):
                key = keys.get(array_axes[pos])
                if key is None or (isinstance(key, slice) and key == slice(None)):
                    continue
                array = array[(slice(None),) * pos + (key,)]
            return array

        def kept(array_axes):
            return tuple(
                a for a in array_axes if not isinstance(keys.get(a), numbers.Integral)
            )

        values = take(self.values, self.axes)
        base_axes = tuple(a for a in self.axes if a != "features")
        base = None if self.base_values is None else take(self.base_values, base_axes)
        data, data_axes = self.data, self._data_axes
        if data is not None:
            feature_key = keys.get("features")
            if "features" not in data_axes and not (
                feature_key is None
                or (isinstance(feature_key, slice) and feature_key == slice(None))
            ):
                data = None  # data is not per player (e.g. pixels of patches)
            else:
                data = take(data, data_axes)
                data_axes = kept(data_axes)
        n_evaluations = self.n_evaluations
        if n_evaluations is not None and "rows" in self.axes:
            n_evaluations = take(np.asarray(n_evaluations), ("rows",))

        def names(axis):
            current = self._names(axis)
            if current is None or axis not in keys or isinstance(current, str):
                return current
            selected = np.array(current, dtype=object)[keys[axis]]
            return str(selected) if np.ndim(selected) == 0 else list(selected)

        return Explanation._new(
            values,
            base,
            data,
            data_axes,
            names("features"),
            names("outputs"),
            n_evaluations,
            kept(self.axes),
        )

    # -- numpy-style reductions ------------------------------------------------------
    @property
    def abs(self):
        """The Explanation of ``|values|`` (base values and data unchanged)."""
        return self._with_values(np.abs(self.values))

    def _with_values(self, values):
        return Explanation._new(
            values,
            self.base_values,
            self.data,
            self._data_axes,
            self.feature_names,
            self.output_names,
            self.n_evaluations,
            self.axes,
        )

    def mean(self, axis):
        """Mean over one axis: ``e.abs.mean(0)`` is the mean ``|φ|`` per feature.

        Over rows the base values are averaged too (efficiency holds on average) and
        ``data`` is left out (a mean of rows is no row); over features or outputs the
        axis and its names are left out.
        """
        return self._reduce(np.mean, axis)

    def sum(self, axis):
        """Sum over one axis, like :meth:`mean`."""
        return self._reduce(np.sum, axis)

    def _reduce(self, function, axis):
        if not isinstance(axis, numbers.Integral) or not (
            -len(self.axes) <= axis < len(self.axes)
        ):
            raise ValueError(
                f"axis must be an int in [0, {len(self.axes)}) for axes {self.axes}, "
                f"got {axis!r}."
            )
        label = self.axes[axis]
        values = function(self.values, axis=axis)
        base = self.base_values
        base_axes = tuple(a for a in self.axes if a != "features")
        if label != "features" and base is not None:
            base = function(base, axis=base_axes.index(label))
        data, data_axes = self.data, self._data_axes
        if label != "outputs":
            data, data_axes = None, None
        return Explanation._new(
            values,
            base,
            data,
            data_axes,
            None if label == "features" else self.feature_names,
            None if label == "outputs" else self.output_names,
            None if label == "rows" else self.n_evaluations,
            tuple(a for a in self.axes if a != label),
        )

    # -- checks and conversion -------------------------------------------------------
    def efficiency_gap(self, outputs):
        """``|base_values + Σφ − outputs|`` per row (and output)."""
        if "features" not in self.axes:
            raise ValueError(
                "efficiency_gap needs the features axis (do not slice it)."
            )
        total = self.values.sum(axis=self.axes.index("features"))
        return np.abs(self.base_values + total - np.asarray(outputs))

    def to_shap(self):
        """Return a ``shap.Explanation`` (requires shap) so shap's plots work on it.

        Works on sliced Explanations too: ``e[0].to_shap()`` is what
        ``shap.plots.waterfall`` takes.
        """
        try:
            import shap
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "to_shap() needs the shap package: pip install shap"
            ) from exc

        def as_list(names):
            return names if names is None or isinstance(names, str) else list(names)

        output_names = as_list(self.output_names)
        # shap's constructor refuses one output name for 1-D values; its own slicing
        # sets it afterwards, as here.
        late = isinstance(output_names, str) and self.values.ndim < 2
        converted = shap.Explanation(
            values=self.values,
            base_values=self.base_values,
            data=self.data,
            feature_names=as_list(self.feature_names),
            output_names=None if late else output_names,
        )
        if late:
            converted.output_names = output_names
        return converted

    def __repr__(self):
        names = self.feature_names
        if isinstance(names, list):
            names = f"{names[:5]}{'...' if len(names) > 5 else ''}"
        return (
            f"Explanation(values shape={self.values.shape}, axes={self.axes}, "
            f"features={names}, outputs={self.output_names})"
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
