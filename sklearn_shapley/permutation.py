"""Shapley values by (antithetic) permutation sampling, and its explainer."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval

from ._explanation import ShapleyValues
from ._game_explainer import GameExplainer
from .exact import overflow_scale
from .sampling import row_generators


def permutation_shapley(
    game, X, *, max_evaluations=1000, antithetic=True, random_state=None
):
    """Average marginal contributions along random player orders.

    Each permutation costs ``d − 1`` new evaluations (``v(∅)`` and ``v([d])`` are
    shared); with ``antithetic`` every order is followed by its reverse. As many
    permutations as fit in ``max_evaluations`` are used (at least one, or one pair).

    Returns
    -------
    ShapleyValues
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = len(X), game.n_players
    full, empty = game.grand_and_empty(X)
    if d == 1 or n == 0:
        return ShapleyValues((full - empty)[:, None, :], empty, np.full(n, 2))
    n_perm = max(1, (max_evaluations - 2) // (d - 1))
    if antithetic:
        n_perm = max(2, n_perm - n_perm % 2)
    rngs = row_generators(X, random_state)
    orders = np.empty((n, n_perm, d), dtype=np.int64)
    for i, rng in enumerate(rngs):
        half = np.argsort(
            rng.random((n_perm // 2 if antithetic else n_perm, d)), axis=1
        )
        orders[i] = np.concatenate([half, half[:, ::-1]]) if antithetic else half
    # Prefix coalitions of sizes 1..d-1 of every order: (n, n_perm, d-1, d).
    rank = np.argsort(orders, axis=2)  # position of each player in the order
    sizes = np.arange(1, d)
    prefixes = rank[:, :, None, :] < sizes[None, None, :, None]
    values = game(X, prefixes.reshape(n, -1, d)).reshape(n, n_perm, d - 1, -1)
    K = values.shape[-1]
    chain = np.concatenate(
        [
            empty[:, None, None, :].repeat(n_perm, 1),
            values,
            full[:, None, None, :].repeat(n_perm, 1),
        ],
        axis=2,
    )  # (n, n_perm, d + 1, K): v of the first k players of the order
    scale = overflow_scale(chain)[:, None, None, None]
    gains = np.diff(chain / scale, axis=2)  # gain of the player at position k
    phi = np.zeros((n, d, K))
    np.add.at(
        phi,
        (np.arange(n)[:, None, None], orders),
        gains,
    )
    with np.errstate(over="ignore"):  # refused by the explainer if it overflows
        phi = phi / n_perm * scale[:, :, 0]
    return ShapleyValues(phi, empty, np.full(n, 2 + n_perm * (d - 1)))


class PermutationExplainer(GameExplainer):
    """Model-agnostic Shapley values by antithetic permutation sampling.

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable
    value_function, background, n_background, link, players, output :
        See :class:`~sklearn_shapley.ExactExplainer`.
    max_evaluations : int, default=1000
        Coalition evaluations per row (``d − 1`` per permutation).
    antithetic : bool, default=True
        Pair every permutation with its reverse.
    random_state : int, RandomState or None, default=None
    """

    _parameter_constraints: dict = {
        "max_evaluations": [Interval(Integral, 1, None, closed="left")],
        "antithetic": ["boolean"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        value_function="baseline",
        background=None,
        n_background=100,
        link="identity",
        players=None,
        output=None,
        max_evaluations=1000,
        antithetic=True,
        random_state=None,
    ):
        super().__init__(
            estimator,
            value_function=value_function,
            background=background,
            n_background=n_background,
            link=link,
            players=players,
            output=output,
            random_state=random_state,
        )
        self.max_evaluations = max_evaluations
        self.antithetic = antithetic

    def _estimate(self, X):
        return permutation_shapley(
            self.game_,
            X,
            max_evaluations=self.max_evaluations,
            antithetic=self.antithetic,
            random_state=self._rng_seed(4),
        )
