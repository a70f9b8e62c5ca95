"""Accuracy measures for attributions: the Shapley loss and distances to ground truth."""

from __future__ import annotations

import numpy as np

from .sampling import CoalitionSampler


def shapley_loss(game, X, values, *, n_coalitions=64, random_state=0):
    """The Shapley weighted-least-squares loss of attributions ``values``.

    ``mean over rows, coalitions S ~ Shapley kernel (paired) and outputs of
    (v_x(S) − v_x(∅) − 1_Sᵀ φ(x))²``. Exact Shapley values minimise it among efficient
    attributions; FastSHAP trains on it; explainers use it as a ground-truth-free score.

    Parameters
    ----------
    game : Game
    X : ndarray of shape (n_rows, n_features)
    values : ndarray of shape (n_rows, n_players, n_outputs)
    n_coalitions : int, default=64
    random_state : int, default=0

    Returns
    -------
    float
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    d = game.n_players
    if d < 2:
        return 0.0
    masks = CoalitionSampler(d, "shapley", paired=True).sample(
        n_coalitions, random_state
    )
    full_empty = np.vstack([masks, np.zeros((1, d), dtype=bool)])
    table = game(X, full_empty)
    v_s, v_empty = table[:, :-1], table[:, -1:]
    pred = np.einsum("md,ndk->nmk", masks.astype(np.float64), values)
    return float(np.mean((v_s - v_empty - pred) ** 2))


def shapley_error(estimate, truth):
    """Mean over rows (and outputs) of the L2 distance ``‖φ̂ − φ‖₂`` across players."""
    estimate, truth = np.asarray(estimate), np.asarray(truth)
    if estimate.shape != truth.shape:
        raise ValueError(f"Shapes differ: {estimate.shape} vs {truth.shape}.")
    return float(np.mean(np.linalg.norm(estimate - truth, axis=1)))
