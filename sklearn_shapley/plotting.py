"""Matplotlib plots of attributions, in shap's conventions.

Each plot takes an :class:`~sklearn_shapley.Explanation` (slice it as in shap first:
``e[0]`` for one row, ``e[:, :, k]`` for one output) and an optional ``ax=``, and
returns the matplotlib Axes it drew on:

- :func:`bar`: mean ``|φ|`` per feature (or one row's φ), sorted.
- :func:`beeswarm`: every row's φ per feature, coloured by the feature's value.
- :func:`waterfall`: one row, from the base value E[f(X)] to the output f(x).
- :func:`scatter`: dependence of one feature's φ on its value, optionally coloured by
  another feature.
- :func:`heatmap`: the rows x features matrix of φ with f(x) above it.
- :func:`interaction`: a pairwise interaction matrix (``QuadratureTreeExplainer.
  interactions``).
- :func:`image`: patch or pixel attributions over an image.

:func:`importance_bars` (several explainers side by side) and :func:`image_heatmap`
(a precomputed ``(H, W)`` map) take arrays and return the Figure.
"""

from __future__ import annotations

import numpy as np

from ._explanation import Explanation

__all__ = [
    "bar",
    "beeswarm",
    "heatmap",
    "image",
    "image_heatmap",
    "importance_bars",
    "interaction",
    "red_blue",
    "red_transparent_blue",
    "red_white_blue",
    "scatter",
    "strongest_interaction",
    "waterfall",
]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in (
        "agg",
        "pdf",
        "svg",
        "module://matplotlib_inline.backend_inline",
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def importance_bars(
    importances, feature_names, *, max_features=10, title=None, ax=None
):
    """Horizontal bars of mean ``|φ|`` per feature, one group of bars per explainer.

    Parameters
    ----------
    importances : dict of str -> ndarray of shape (n_features,)
        Mean absolute attribution of each feature, per explainer name.
    feature_names : list of str
    max_features : int, default=10
        Show the features most important on average across explainers.
    title : str, default=None
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    names = list(importances)
    table = np.array([np.asarray(importances[n], dtype=float) for n in names])
    scaled = table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300)
    order = np.argsort(scaled.mean(axis=0))[::-1][:max_features][::-1]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.5))
    else:
        fig = ax.figure
    height = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        ax.barh(
            np.arange(len(order)) + k * height,
            table[k, order],
            height=height,
            label=name,
        )
    ax.set_yticks(np.arange(len(order)) + 0.4 - height / 2)
    ax.set_yticklabels([feature_names[i] for i in order])
    ax.set_xlabel("mean |Shapley value|")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def image_heatmap(heatmap, image=None, *, ax=None, cmap="RdBu_r", title=None):
    """Overlay an ``(H, W)`` attribution map on an image (``(H, W)`` or ``(H, W, C)``)."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(3, 3))
    else:
        fig = ax.figure
    if image is not None:
        ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
    limit = np.abs(heatmap).max() or 1.0
    ax.imshow(
        heatmap,
        cmap=cmap,
        vmin=-limit,
        vmax=limit,
        alpha=0.6 if image is not None else 1.0,
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize="small")
    return fig


# -- the plot set on Explanations ------------------------------------------------------
#: shap's colours: red for positive attributions and high feature values, blue for
#: negative ones and low values, grey for values that cannot be coloured (NaN, strings).
RED = "#ff0051"
BLUE = "#008bfb"
GRAY = "#848484"
#: Samples of shap's perceptually uniform blue -> red map (``shap.plots.colors.red_blue``).
_RED_BLUE_SAMPLES = (
    "#008bfb",
    "#0078f3",
    "#4b63e3",
    "#7d48cb",
    "#9c23ad",
    "#c2009b",
    "#e00085",
    "#f6006c",
    "#ff0051",
)


def red_blue():
    """shap's blue (low) -> red (high) colour map, grey for missing values."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "red_blue", _RED_BLUE_SAMPLES
    ).with_extremes(bad=GRAY)


def red_white_blue():
    """shap's diverging map for signed matrices: blue (negative), white (0), red."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("red_white_blue", [BLUE, "#ffffff", RED])


def red_transparent_blue():
    """shap's map for overlays: blue (negative), transparent at 0, red (positive)."""
    from matplotlib.colors import LinearSegmentedColormap, to_rgba

    colors = [to_rgba(BLUE), to_rgba(BLUE, 0.0), to_rgba(RED, 0.0), to_rgba(RED)]
    return LinearSegmentedColormap.from_list(
        "red_transparent_blue", list(zip([0.0, 0.5, 0.5, 1.0], colors))
    )


def _white_red():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("white_red", ["#ffffff", RED])


def _new_axes(ax, figsize):
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def _explanation(e, function):
    if not isinstance(e, Explanation):
        raise TypeError(
            f"{function} takes an sklearn_shapley.Explanation (from explainer.explain(X)), "
            f"got {type(e).__name__}."
        )
    return e


def _require_matrix(e, function):
    """Check for ``(rows, features)`` values: one output selected."""
    e = _explanation(e, function)
    if e.axes == ("rows", "features"):
        return e
    if "outputs" in e.axes:
        names = e.output_names if isinstance(e.output_names, list) else None
        raise ValueError(
            f"{function} draws one output; this Explanation has {e.values.shape[-1]} "
            f"(names {names}). Select one first: e[:, :, k] or e[:, :, name]."
        )
    raise ValueError(
        f"{function} needs rows and features, got an Explanation with axes {e.axes} "
        "(pass the explanation of several rows, not one row or one feature)."
    )


def _numeric(column):
    """The column as floats, or None when it holds strings or other objects."""
    if column is None:
        return None
    column = np.asarray(column)
    if column.dtype.kind in "biuf":
        return column.astype(float)
    try:
        return column.astype(float)
    except (TypeError, ValueError):
        return None


def _color_limits(column):
    """shap's robust colour range: the 5th and 95th percentiles (else 1st/99th, min/max)."""
    finite = column[np.isfinite(column)]
    if finite.size == 0:
        return 0.0, 1.0
    for low, high in ((5, 95), (1, 99)):
        vmin, vmax = np.percentile(finite, [low, high])
        if vmin < vmax:
            return float(vmin), float(vmax)
    vmin, vmax = float(finite.min()), float(finite.max())
    return (vmin, vmax) if vmin < vmax else (vmin - 0.5, vmax + 0.5)


def _format(value):
    """A feature value for a label: 4 significant digits, strings as they are."""
    if isinstance(value, (float, np.floating)):
        return "nan" if np.isnan(value) else f"{value:.4g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _display_order(importance, max_display):
    """Features by decreasing importance: the shown ones, and the rest (lumped)."""
    if max_display is None or max_display < 1:
        max_display = len(importance)
    order = np.argsort(-np.asarray(importance), kind="stable")
    if len(order) <= max_display:
        return order, order[:0]
    return order[: max_display - 1], order[max_display - 1 :]


def _clean_axes(ax, keep_left=False):
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    if not keep_left:
        ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)


def _feature_colorbar(ax, label="Feature value"):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=red_blue())
    bar = ax.figure.colorbar(mappable, ax=ax, ticks=[0, 1], aspect=40, pad=0.02)
    bar.set_ticklabels(["Low", "High"])
    bar.set_label(label, labelpad=0)
    bar.outline.set_visible(False)
    return bar


def bar(e, *, max_display=10, ax=None):
    """Bars of feature importance, largest at the top, as ``shap.plots.bar``.

    For the Explanation of several rows each bar is the mean ``|φ|`` of a feature over
    the rows; for one row (``e[i]``) or an aggregate (``e.abs.mean(0)``) the bars are
    the values themselves, red when positive and blue when negative, and a single
    row's labels carry the feature values. Past ``max_display`` features the rest are
    summed into one last bar.

    Parameters
    ----------
    e : Explanation
        ``(n, d)`` values (select an output of a multi-output Explanation first), or
        ``(d,)`` values.
    max_display : int, default=10
        Bars drawn, the lumped "Sum of N other features" bar included.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
    """
    e = _explanation(e, "bar")
    labels_from_data = False
    if e.axes == ("rows", "features"):
        heights = np.abs(e.values).mean(axis=0)
        xlabel = "mean(|Shapley value|)"
    elif e.axes == ("features",):
        heights = np.asarray(e.values, dtype=float)
        xlabel = "Shapley value"
        labels_from_data = e.data is not None and e._data_axes == ("features",)
    else:
        _require_matrix(e, "bar")  # raises with the message for outputs
    names = list(e.feature_names)
    shown, rest = _display_order(np.abs(heights), max_display)
    values = list(heights[shown])
    if labels_from_data:
        labels = [f"{_format(e.data[j])} = {names[j]}" for j in shown]
    else:
        labels = [names[j] for j in shown]
    if len(rest):
        values.append(heights[rest].sum())
        labels.append(f"Sum of {len(rest)} other features")
    ax = _new_axes(ax, (7, 0.45 * len(values) + 1.2))
    ypos = np.arange(len(values))[::-1]
    colors = [RED if v >= 0 else BLUE for v in values]
    ax.barh(ypos, values, height=0.7, color=colors)
    span = max(np.abs(values).max(initial=0.0), 1e-300)
    for y, v in zip(ypos, values):
        ax.text(
            v + np.sign(v or 1) * 0.01 * span,
            y,
            f"{v:+.3g}" if xlabel == "Shapley value" else f"{v:.3g}",
            va="center",
            ha="left" if v >= 0 else "right",
            fontsize="small",
            color=RED if v >= 0 else BLUE,
        )
    ax.set_yticks(ypos, labels)
    ax.axvline(0, color="#999999", linewidth=0.8, zorder=0)
    ax.set_xlabel(xlabel)
    low, high = min(0.0, min(values)), max(0.0, max(values))
    if high > low:
        ax.set_xlim(low - 0.12 * span * (low < 0), high + 0.12 * span * (high > 0))
    _clean_axes(ax)
    return ax


def _swarm_offsets(x, width=0.4, n_bins=100):
    """Vertical offsets that stack points of close ``x`` instead of overlapping them.

    Points are binned along ``x``; within a bin they alternate above and below the
    row's centre line, one layer further out each time.
    """
    x = np.asarray(x, dtype=float)
    offsets = np.zeros(len(x))
    finite = np.isfinite(x)
    if finite.sum() < 2:
        return offsets
    low, high = x[finite].min(), x[finite].max()
    bins = np.zeros(len(x), dtype=int)
    if high > low:
        bins[finite] = np.round((n_bins - 1) * (x[finite] - low) / (high - low))
    order = np.lexsort((x, bins))
    sorted_bins = bins[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_bins)) + 1]
    rank = np.arange(len(x)) - np.repeat(starts, np.diff(np.r_[starts, len(x)]))
    layer = (rank + 1) // 2 * np.where(rank % 2 == 1, 1, -1)
    offsets[order] = layer
    depth = np.abs(offsets).max()
    return offsets * (width / max(depth, 8)) if depth else offsets


def beeswarm(e, *, max_display=10, color_bar=True, ax=None):
    """One dot per row and feature at its φ, coloured by the feature's value.

    As ``shap.plots.beeswarm``: features top to bottom by decreasing mean ``|φ|``, dots
    of close φ stacked into a swarm, colour from blue (low feature value) to red
    (high) between the 5th and 95th percentiles, grey for missing or non-numeric
    values. Past ``max_display`` the remaining features' φ are summed into one row.

    Parameters
    ----------
    e : Explanation
        ``(n, d)`` values with ``data`` (select an output first for ``(n, d, K)``).
    max_display : int, default=10
        Rows drawn, the lumped "Sum of N other features" row included.
    color_bar : bool, default=True
        Draw the "Feature value" colour bar.
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes
        Each row is one ``PathCollection`` labelled with the feature's name
        (``collection.get_label()``); its ``get_array()`` holds the feature values
        behind the colours (grey dots are a second collection of the same label).
    """
    e = _require_matrix(e, "beeswarm")
    values = np.asarray(e.values, dtype=float)
    aligned = e.data is not None and e._data_axes == ("rows", "features")
    shown, rest = _display_order(np.abs(values).mean(axis=0), max_display)
    rows = [(e.feature_names[j], values[:, j], j) for j in shown]
    if len(rest):
        rows.append(
            (f"Sum of {len(rest)} other features", values[:, rest].sum(axis=1), None)
        )
    ax = _new_axes(ax, (7.5, 0.45 * len(rows) + 1.4))
    cmap = red_blue()
    coloured = False
    size = 16 if len(values) < 500 else 9
    for i, (name, phi, j) in enumerate(rows):
        y = len(rows) - 1 - i + _swarm_offsets(phi)
        column = _numeric(e.data[:, j]) if aligned and j is not None else None
        ok = np.isfinite(column) if column is not None else np.zeros(len(phi), bool)
        if ok.any():
            vmin, vmax = _color_limits(column)
            ax.scatter(
                phi[ok],
                y[ok],
                c=column[ok],
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                s=size,
                linewidths=0,
                alpha=1.0,
                zorder=3,
                label=name,
                rasterized=len(phi) > 500,
            )
            coloured = True
        if (~ok).any():
            ax.scatter(
                phi[~ok],
                y[~ok],
                color=GRAY,
                s=size,
                linewidths=0,
                zorder=3,
                label=name,
                rasterized=len(phi) > 500,
            )
    ypos = np.arange(len(rows))[::-1]
    ax.set_yticks(ypos, [name for name, _, _ in rows])
    for y in ypos:
        ax.axhline(y, color="#cccccc", linewidth=0.5, linestyle=(0, (1, 4)), zorder=0)
    ax.axvline(0, color="#999999", linewidth=0.8, zorder=1)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("Shapley value (impact on model output)")
    _clean_axes(ax)
    if color_bar and coloured:
        _feature_colorbar(ax)
    return ax


def waterfall(e, *, max_display=10, ax=None):
    """How one row's features move the output from E[f(X)] to f(x).

    As ``shap.plots.waterfall``: the bottom bar starts at the base value E[f(X)],
    each bar adds one feature's φ (red when it raises the output, blue when it
    lowers it), and the top bar ends at f(x) = E[f(X)] + Σφ. Features are sorted by
    ``|φ|``, the largest at the top; past ``max_display`` the rest are summed into an
    "N other features" bar at the bottom. Labels read ``value = name``.

    Parameters
    ----------
    e : Explanation
        One row: ``e[i]`` (values ``(d,)``), or a one-row ``e[i:i + 1]``.
    max_display : int, default=10
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes
        The bars are ``ax.patches``, bottom (starting at E[f(X)]) to top.
    """
    e = _explanation(e, "waterfall")
    if e.axes and e.axes[0] == "rows":
        if len(e) != 1:
            raise ValueError(
                f"waterfall explains one row; got {len(e)}. Pass e[i] for row i."
            )
        e = e[0]
    if e.axes != ("features",):
        if "outputs" in e.axes:
            raise ValueError(
                "waterfall draws one output: select it first, e[i, :, k] or "
                "e[i, :, name]."
            )
        raise ValueError(f"waterfall needs one row's features, got axes {e.axes}.")
    phi = np.asarray(e.values, dtype=float)
    base = float(np.asarray(e.base_values).reshape(-1)[0])
    fx = base + phi.sum()
    with_data = e.data is not None and e._data_axes == ("features",)
    names = list(e.feature_names)
    shown, rest = _display_order(np.abs(phi), max_display)
    values = list(phi[shown])
    labels = [
        f"{_format(e.data[j])} = {names[j]}" if with_data else names[j] for j in shown
    ]
    if len(rest):
        values.append(phi[rest].sum())
        labels.append(f"{len(rest)} other features")
    n_rows = len(values)
    ax = _new_axes(ax, (7.5, 0.45 * n_rows + 1.6))
    ypos = np.arange(n_rows)[::-1]  # the first (largest) feature at the top
    start = base
    ends = []
    for k in reversed(range(n_rows)):  # from the bottom, which starts at E[f(X)]
        v = values[k]
        ax.barh(ypos[k], v, left=start, height=0.7, color=RED if v >= 0 else BLUE)
        ends.append(start + v)
        start += v
    span = max(np.ptp([base, fx, *ends]), np.abs(values).max(initial=0.0), 1e-300)
    cumulative = dict(zip(reversed(range(n_rows)), ends))
    for k, v in enumerate(values):
        end = cumulative[k]
        ax.text(
            max(end, end - v) + 0.01 * span,
            ypos[k],
            f"{v:+.3g}",
            va="center",
            ha="left",
            fontsize="small",
            color=RED if v >= 0 else BLUE,
        )
    ax.set_yticks(ypos, labels)
    ax.axvline(base, color="#888888", linestyle="--", linewidth=0.8, zorder=0)
    ax.axvline(fx, color="#888888", linestyle="--", linewidth=0.8, zorder=0)
    ax.set_ylim(-1.1, n_rows + 0.1)
    ax.text(
        base,
        -0.85,
        f"E[f(X)] = {base:.4g}",
        ha="center",
        va="center",
        fontsize="small",
        color="#555555",
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
    )
    ax.text(
        fx,
        n_rows - 0.2,
        f"f(x) = {fx:.4g}",
        ha="center",
        va="center",
        fontsize="small",
        color="#555555",
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
    )
    low, high = min(base, fx, *ends), max(base, fx, *ends)
    ax.set_xlim(low - 0.05 * span, high + 0.15 * span)
    ax.set_xlabel("model output")
    _clean_axes(ax)
    return ax


def _codes(column):
    """Categories of a non-numeric column as integer codes, and their names."""
    names, codes = np.unique(np.asarray(column).astype(str), return_inverse=True)
    return codes.astype(float), list(names)


def _as_float(column):
    numeric = _numeric(column)
    return (numeric, None) if numeric is not None else _codes(column)


def strongest_interaction(e, feature):
    """The feature that most changes ``feature``'s φ at a fixed value of ``feature``.

    Rows are sorted by the value of ``feature`` and cut into bins of about √n rows;
    within each bin the φ of ``feature`` is correlated with every other feature's
    value, and the feature of the largest size-weighted mean ``|correlation|`` wins
    (the colouring ``scatter(..., color="auto")`` uses, in the spirit of shap's
    ``approximate_interactions``).

    Parameters
    ----------
    e : Explanation
        ``(n, d)`` values with ``data``.
    feature : int or str

    Returns
    -------
    int
        The index of the other feature.
    """
    e = _require_matrix(e, "strongest_interaction")
    if e.data is None or e._data_axes != ("rows", "features"):
        raise ValueError(
            "strongest_interaction needs data with one column per feature."
        )
    j = e._resolve("features", feature)
    if not isinstance(j, int):
        raise ValueError(
            f"feature must be one feature (an int or a name), got {feature!r}."
        )
    j %= len(e.feature_names)
    n, d = e.values.shape
    if d < 2:
        raise ValueError("strongest_interaction needs at least two features.")
    x, _ = _as_float(e.data[:, j])
    phi = np.asarray(e.values[:, j], dtype=float)
    order = np.argsort(np.where(np.isfinite(x), x, np.inf), kind="stable")
    size = max(10, int(np.sqrt(n)))
    scores = np.full(d, -1.0)
    for k in range(d):
        if k == j:
            continue
        other, _ = _as_float(e.data[:, k])
        total = weight = 0.0
        for start in range(0, n, size):
            rows = order[start : start + size]
            a, b = phi[rows], other[rows]
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
                continue
            total += ok.sum() * abs(np.corrcoef(a[ok], b[ok])[0, 1])
            weight += ok.sum()
        scores[k] = total / weight if weight else 0.0
    return int(np.argmax(scores))


def scatter(e, feature=None, *, color=None, ax=None):
    """Dependence plot: one feature's value against its φ, as ``shap.plots.scatter``.

    Parameters
    ----------
    e : Explanation
        Either one feature's column, ``e[:, "bmi"]``, or the ``(n, d)`` Explanation
        with ``feature`` naming the feature. Needs ``data``.
    feature : int or str, default=None
        The feature, when ``e`` has all of them.
    color : None, "auto", int, str or Explanation, default=None
        ``None``: one colour. ``"auto"`` (or the full Explanation, as in shap): the
        feature of :func:`strongest_interaction`. A feature index or name: colour by
        that feature's value (needs the full ``e``). A one-feature Explanation
        (``e[:, "age"]``): colour by its data. Blue (low) to red (high), with a
        colour bar named after the colouring feature.
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes
        One ``PathCollection`` whose offsets are ``(feature value, φ)``; non-numeric
        feature values are placed at category codes named by the x tick labels.
    """
    e = _explanation(e, "scatter")
    full = None
    if e.axes == ("rows",):
        if feature is not None:
            raise ValueError(
                "e is already one feature's column; pass feature=None, or pass the "
                "full Explanation with feature=name."
            )
        column = e
    elif e.axes == ("rows", "features"):
        if feature is None:
            raise ValueError(
                "scatter draws one feature: pass feature=name, or e[:, name]."
            )
        full, column = e, e[:, feature]
    else:
        _require_matrix(e, "scatter")
    if column.data is None or "rows" not in (column._data_axes or ()):
        raise ValueError(
            "scatter needs the feature values (Explanation.data) of the explained rows."
        )
    name = str(column.feature_names)
    x, categories = _as_float(column.data)
    phi = np.asarray(column.values, dtype=float)

    color_values = color_name = None
    if isinstance(color, Explanation):
        if color.axes == ("rows", "features"):
            full, color = color, "auto"
        elif color.axes == ("rows",) and color.data is not None:
            color_values, color_name = color.data, str(color.feature_names)
        else:
            raise ValueError(
                f"color= takes one feature's column e[:, name] or the full "
                f"Explanation; got axes {color.axes}."
            )
    if color is not None and not isinstance(color, Explanation):
        if full is None:
            raise ValueError(
                f"color={color!r} picks another feature: pass the full Explanation "
                "(scatter(e, name, color=...)) or color=e[:, other]."
            )
        if isinstance(color, str) and color == "auto":
            k = strongest_interaction(full, column.feature_names)
        else:
            k = full._resolve("features", color)
        color_values, color_name = full.data[:, k], full.feature_names[k]

    ax = _new_axes(ax, (6, 4.5))
    size = 16 if len(phi) < 500 else 8
    if color_values is None:
        ax.scatter(x, phi, color=BLUE, s=size, linewidths=0, label=name)
    else:
        c, color_categories = _as_float(color_values)
        ok = np.isfinite(c)
        vmin, vmax = _color_limits(c)
        points = ax.scatter(
            x[ok],
            phi[ok],
            c=c[ok],
            cmap=red_blue(),
            vmin=vmin,
            vmax=vmax,
            s=size,
            linewidths=0,
            label=name,
        )
        if (~ok).any():
            ax.scatter(x[~ok], phi[~ok], color=GRAY, s=size, linewidths=0, label=name)
        bar = ax.figure.colorbar(points, ax=ax, aspect=40, pad=0.02)
        bar.set_label(color_name)
        bar.outline.set_visible(False)
        if color_categories is not None:
            bar.set_ticks(range(len(color_categories)), labels=color_categories)
    if categories is not None:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(name)
    ax.set_ylabel(f"Shapley value for\n{name}")
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    return ax


def _instance_order(values, fx, order):
    n = len(values)
    if order is None or (isinstance(order, str) and order == "input"):
        return np.arange(n)
    if isinstance(order, str) and order == "output":
        return np.argsort(-fx, kind="stable")
    if isinstance(order, str) and order == "hclust":
        if n < 3:
            return np.arange(n)
        from scipy.cluster.hierarchy import leaves_list, linkage

        return leaves_list(linkage(values, method="complete", metric="sqeuclidean"))
    if isinstance(order, str):
        raise ValueError(
            f"order={order!r}: use 'hclust', 'output', 'input' or an array of rows."
        )
    order = np.asarray(order)
    if order.dtype.kind not in "iu" or order.ndim != 1:
        raise ValueError(
            "order must be 'hclust', 'output', 'input' or 1-D row indices."
        )
    return order


def heatmap(e, *, order="hclust", max_display=10, ax=None):
    """Rows x features matrix of φ, with the model output f(x) above it.

    As ``shap.plots.heatmap``: one column per explained row, one row per feature
    (top to bottom by decreasing mean ``|φ|``, the rest summed into one row past
    ``max_display``), red for positive and blue for negative φ on a symmetric scale
    (99.9th percentile of ``|φ|``). A line above the matrix traces f(x) = base + Σφ of
    each column, with the mean base value dashed. Blue-white-red, as shap's.

    Parameters
    ----------
    e : Explanation
        ``(n, d)`` values (select an output first for ``(n, d, K)``).
    order : {"hclust", "output", "input"} or array of int, default="hclust"
        Column order: hierarchical clustering of the rows' φ (complete linkage, so
        rows explained alike sit together; quadratic in the rows, so pass a few
        thousand at most, e.g. ``e[:1000]``), decreasing f(x), as given, or explicit.
    max_display : int, default=10
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes
        The matrix is ``ax.images[0]`` (features x ordered rows); the f(x) line is
        on ``ax.child_axes[0]``.
    """
    e = _require_matrix(e, "heatmap")
    values = np.asarray(e.values, dtype=float)
    fx = np.asarray(e.base_values, dtype=float) + values.sum(axis=1)
    columns = _instance_order(values, fx, order)
    shown, rest = _display_order(np.abs(values).mean(axis=0), max_display)
    matrix = [values[columns, j] for j in shown]
    labels = [e.feature_names[j] for j in shown]
    if len(rest):
        matrix.append(values[np.ix_(columns, rest)].sum(axis=1))
        labels.append(f"Sum of {len(rest)} other features")
    matrix = np.array(matrix)
    limit = float(np.nanpercentile(np.abs(values), 99.9)) or 1.0
    ax = _new_axes(ax, (8, 0.4 * len(labels) + 2.5))
    image = ax.imshow(
        matrix,
        aspect="auto",
        interpolation="nearest",
        cmap=red_white_blue(),
        vmin=-limit,
        vmax=limit,
    )
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.set_xlabel("Instances")
    ax.tick_params(axis="y", length=0)
    top = ax.inset_axes([0, 1.03, 1, 0.22], sharex=ax)
    top.plot(np.arange(len(columns)), fx[columns], color="#333333", linewidth=1)
    top.axhline(
        float(np.mean(e.base_values)), color="#888888", linestyle="--", linewidth=0.8
    )
    top.set_ylabel("f(x)", rotation=0, ha="right", va="center")
    top.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right", "bottom"):
        top.spines[side].set_visible(False)
    bar = ax.figure.colorbar(image, ax=ax, aspect=40, pad=0.02)
    bar.set_label("Shapley value")
    bar.outline.set_visible(False)
    return ax


def interaction(values, feature_names=None, *, max_display=None, ax=None):
    """A pairwise interaction matrix as a labelled heatmap.

    Parameters
    ----------
    values : array-like of shape (d, d) or (n, d, d)
        E.g. ``QuadratureTreeExplainer.interactions(X)`` (TreeSHAP convention:
        diagonal the main effects, off-diagonal half the pair's interaction). A
        ``(d, d)`` matrix is drawn as given, signed, blue-white-red around 0; for
        ``(n, d, d)`` the mean ``|value|`` over the rows, white to red. Select one output
        of ``(n, d, d, K)`` first (``values[..., k]``).
    feature_names : list of str or Explanation, default=None
        Names of the ``d`` features (an Explanation gives its ``feature_names``).
    max_display : int, default=None
        Keep the features of largest total ``|interaction|`` (row sums); all when None.
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes
        Features ordered by decreasing total ``|interaction|`` on both axes; the
        matrix is ``ax.images[0]``, cells annotated when at most 12 features.
    """
    array = np.asarray(values, dtype=float)
    if array.ndim == 3 and array.shape[1] == array.shape[2]:
        matrix, signed = np.abs(array).mean(axis=0), False
    elif array.ndim == 2 and array.shape[0] == array.shape[1]:
        matrix, signed = array, True
    else:
        raise ValueError(
            f"interaction takes a (d, d) or (n, d, d) matrix, got shape {array.shape}"
            "; for several outputs (n, d, d, K) select one: values[..., k]."
        )
    d = len(matrix)
    if isinstance(feature_names, Explanation):
        feature_names = feature_names.feature_names
    names = (
        [f"x{i}" for i in range(d)] if feature_names is None else list(feature_names)
    )
    if len(names) != d:
        raise ValueError(f"{len(names)} feature_names for a {d} x {d} matrix.")
    total = np.abs(matrix).sum(axis=1)
    keep = np.argsort(-total, kind="stable")[: max_display or d]
    shown = matrix[np.ix_(keep, keep)]
    labels = [names[i] for i in keep]
    limit = float(np.abs(shown).max()) or 1.0
    ax = _new_axes(ax, (0.55 * len(keep) + 2.5, 0.55 * len(keep) + 1.5))
    image = ax.imshow(
        shown,
        cmap=red_white_blue() if signed else _white_red(),
        vmin=-limit if signed else 0.0,
        vmax=limit,
        interpolation="nearest",
    )
    ticks = np.arange(len(keep))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels)
    if len(keep) <= 12:
        for r in range(len(keep)):
            for c in range(len(keep)):
                strong = abs(shown[r, c]) > 0.6 * limit
                ax.text(
                    c,
                    r,
                    f"{shown[r, c]:.2g}",
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="white" if strong else "black",
                )
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("interaction value" if signed else "mean |interaction value|")
    bar.outline.set_visible(False)
    return ax


def _image_shape_of(image_shape, pixels, n_players):
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        return (1, *shape) if len(shape) == 2 else shape
    if pixels is not None and pixels.ndim == 2:
        return (1, *pixels.shape)
    if pixels is not None and pixels.ndim == 3:
        return pixels.shape
    size = pixels.size if pixels is not None else n_players
    for channels in (1, 3):
        side = int(round(np.sqrt(size / channels)))
        if size % channels == 0 and side * side * channels == size:
            return (channels, side, side)
    raise ValueError(
        f"cannot tell the image shape of {size} values; pass image_shape=(C, H, W)."
    )


def _patch_index(names, n_players, shape, patch_size):
    """The player of each pixel, ``(H, W)``, for pixel or patch attributions."""
    import re

    C, H, W = shape
    if patch_size is None:
        if n_players in (H * W, C * H * W):
            return None  # one player per pixel
        cells = [re.fullmatch(r"patch_(\d+)_(\d+)", str(n)) for n in names]
        if not all(cells):
            raise ValueError(
                f"{n_players} players for a {H} x {W} image: pass patch_size=(ph, pw), "
                "or name the players patch_<row>_<col> (as ViTShapleyExplainer does)."
            )
        gh = 1 + max(int(m.group(1)) for m in cells)
        gw = 1 + max(int(m.group(2)) for m in cells)
        patch_size = (int(np.ceil(H / gh)), int(np.ceil(W / gw)))
    ph, pw = (patch_size, patch_size) if np.ndim(patch_size) == 0 else patch_size
    gh, gw = int(np.ceil(H / ph)), int(np.ceil(W / pw))
    if gh * gw != n_players:
        raise ValueError(
            f"patches of {ph} x {pw} tile a {H} x {W} image into {gh * gw}, but there "
            f"are {n_players} players; check patch_size."
        )
    return (np.arange(H) // ph)[:, None] * gw + (np.arange(W) // pw)[None, :]


def image(
    e,
    row=0,
    *,
    output=None,
    image_shape=None,
    patch_size=None,
    color_bar=False,
    ax=None,
):
    """One image with its patch (or pixel) attributions laid over it.

    As ``shap.plots.image``: red marks patches that raise the explained output, blue
    ones that lower it, on a symmetric scale that is transparent at 0, over the image
    drawn faintly in grey (one channel) or colour (three channels, scaled to [0, 1]).

    Parameters
    ----------
    e : Explanation
        E.g. ``ViTShapleyExplainer.explain(X)``: values ``(n, n_patches[, K])``,
        data the images (flattened rows or ``(n, C, H, W)``).
    row : int, default=0
        The row drawn, when ``e`` has several.
    output : int or str, default=None
        The output drawn, required when ``e`` has several (e.g. the predicted class).
    image_shape : tuple of int, default=None
        ``(C, H, W)`` or ``(H, W)``; by default from the data's shape, else a square
        of one or three channels.
    patch_size : int or pair of int, default=None
        Patch height and width; by default from player names ``patch_<r>_<c>``, or
        one player per pixel when the counts match. Patches that do not tile the
        image evenly end at its right and bottom edges, as in ``PatchGrid``.
    color_bar : bool, default=False
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes
        The attribution map (``(H, W)``, each pixel its patch's φ) is the last of
        ``ax.images``.
    """
    e = _explanation(e, "image")
    if e.axes and e.axes[0] == "rows":
        e = e[row]
    if "outputs" in e.axes:
        if output is None:
            raise ValueError(
                f"this Explanation has {e.values.shape[-1]} outputs "
                f"({e.output_names}); choose one with output=k or output=name."
            )
        e = e[:, output]
    if e.axes != ("features",):
        raise ValueError(f"image needs one row's players, got axes {e.axes}.")
    phi = np.asarray(e.values, dtype=float)
    pixels = None if e.data is None else np.asarray(e.data)
    C, H, W = _image_shape_of(image_shape, pixels, len(phi))
    index = _patch_index(e.feature_names, len(phi), (C, H, W), patch_size)
    if index is not None:
        heat = phi[index]
    elif len(phi) == H * W:
        heat = phi.reshape(H, W)
    else:
        heat = phi.reshape(C, H, W).sum(axis=0)
    ax = _new_axes(ax, (3.2, 3.2))
    if pixels is not None:
        picture = pixels.astype(float).reshape(C, H, W)
        if C == 1:
            ax.imshow(picture[0], cmap="gray", alpha=0.5)
        else:
            picture = np.moveaxis(picture, 0, -1)
            low, high = np.nanmin(picture), np.nanmax(picture)
            ax.imshow((picture - low) / (high - low or 1.0), alpha=0.5)
    limit = float(np.abs(heat).max()) or 1.0
    overlay = ax.imshow(
        heat,
        cmap=red_transparent_blue() if pixels is not None else red_white_blue(),
        vmin=-limit,
        vmax=limit,
    )
    ax.set_axis_off()
    if isinstance(e.output_names, str):
        ax.set_title(e.output_names, fontsize="small")
    if color_bar:
        bar = ax.figure.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("Shapley value")
        bar.outline.set_visible(False)
    return ax
