"""Matplotlib figures for attributions: global importance bars and image heatmaps."""

from __future__ import annotations

import numpy as np


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
    """Horizontal bars of mean |φ| per feature, one group of bars per explainer.

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
