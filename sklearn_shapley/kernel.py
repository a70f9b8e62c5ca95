"""KernelSHAP with paired sampling and convergence detection, and its explainer."""

from __future__ import annotations

import numpy as np

from ._explanation import ShapleyValues
from ._game_explainer import GameExplainer
from .exact import overflow_scale
from .sampling import CoalitionSampler, row_generators


def _solve_constrained(A, b, total):
    """``argmin φ`` of the kernel-weighted least squares with ``1ᵀφ = total``.

    ``φ = A⁻¹b − A⁻¹1 (1ᵀA⁻¹b − total) / (1ᵀA⁻¹1)`` for a stack of problems.
    A ``(n, d, d)``, b ``(n, d, K)``, total ``(n, K)``.
    """
    A_inv = np.linalg.pinv(A, hermitian=True)
    A_inv_b = A_inv @ b
    A_inv_1 = A_inv.sum(axis=2)  # (n, d)
    num = A_inv_b.sum(axis=1) - total  # (n, K)
    den = A_inv_1.sum(axis=1)  # (n,)
    return A_inv_b - A_inv_1[:, :, None] * (num / den[:, None])[:, None, :]


def kernel_shap(
    game,
    X,
    *,
    max_evaluations=1000,
    batch_size=None,
    paired_sampling=True,
    convergence_threshold=0.01,
    random_state=None,
):
    """KernelSHAP: Shapley values as a constrained weighted least-squares fit.

    Coalitions are drawn from the Shapley kernel (with their complements when
    ``paired_sampling``) in batches of ``batch_size``; after each batch every row's
    estimate and its standard error (the spread of per-batch estimates) are updated,
    and a row stops once ``max_i std_i / (max φ − min φ) < convergence_threshold`` or
    its budget of ``max_evaluations`` coalition evaluations (``v(∅)`` and ``v([d])``
    included) is spent. Each row's coalitions come from its own generator, seeded by
    ``random_state`` and the row, so results do not depend on the other rows.

    Parameters
    ----------
    game : Game
    X : ndarray of shape (n_rows, n_features)
    max_evaluations : int, default=1000
    batch_size : int, default=None
        Coalitions per batch; default ``max(2 * d, 32)`` rounded to even.
    paired_sampling : bool, default=True
    convergence_threshold : float or None, default=0.01
        ``None`` spends the whole budget.
    random_state : int, RandomState or None

    Returns
    -------
    ShapleyValues
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = len(X), game.n_players
    full, empty = game.grand_and_empty(X)
    K = full.shape[1]
    evaluations = np.full(n, 2, dtype=np.int64)
    if d == 1 or n == 0:
        return ShapleyValues((full - empty)[:, None, :], empty, evaluations)
    if max_evaluations < 4:
        raise ValueError(
            "max_evaluations must be at least 4 (v(∅), v([d]) and a pair)."
        )
    if batch_size is None:
        batch_size = max(2 * d, 32)
    batch_size += batch_size % 2
    sampler = CoalitionSampler(d, "shapley", paired=paired_sampling)
    rngs = row_generators(X, random_state)
    A_sum = np.zeros((n, d, d))
    b_sum = np.zeros((n, d, K))
    n_sampled = np.zeros(n, dtype=np.int64)
    batch_estimates = [[] for _ in range(n)]
    estimate = np.zeros((n, d, K))
    active = np.arange(n)
    scale = None  # per row, see overflow_scale; set from the first batch
    while active.size:
        m = int(min(batch_size, max_evaluations - evaluations[active].max()))
        m -= m % 2
        if m < 2:
            break
        masks = np.stack([sampler.sample(m, rngs[i])[:m] for i in active])  # (a, m, d)
        v = game(X[active], masks)  # (a, m, K)
        if scale is None:  # the first batch: every row is active
            scale = overflow_scale(
                np.concatenate([v, full[:, None], empty[:, None]], 1)
            )
            total = (full - empty) / scale[:, None]
            empty_scaled = empty / scale[:, None]
        v = v / scale[active, None, None] - empty_scaled[active, None, :]
        S = masks.astype(np.float64)
        A_batch = np.einsum("ami,amj->aij", S, S) / m
        b_batch = np.einsum("ami,amk->aik", S, v) / m
        A_sum[active] += A_batch * m
        b_sum[active] += b_batch * m
        n_sampled[active] += m
        evaluations[active] += m
        estimate[active] = _solve_constrained(
            A_sum[active] / n_sampled[active, None, None],
            b_sum[active] / n_sampled[active, None, None],
            total[active],
        )
        per_batch = _solve_constrained(A_batch, b_batch, total[active])
        still = []
        for j, i in enumerate(active):
            batch_estimates[i].append(per_batch[j])
            n_batches = len(batch_estimates[i])
            if convergence_threshold is not None and n_batches >= 3:
                std = np.std(batch_estimates[i], axis=0, ddof=1) / np.sqrt(n_batches)
                spread = estimate[i].max(axis=0) - estimate[i].min(axis=0)
                ratio = std.max(axis=0) / np.maximum(spread, 1e-12)
                if np.all(ratio < convergence_threshold):
                    continue
            if evaluations[i] + 2 <= max_evaluations:
                still.append(i)
        active = np.asarray(still, dtype=np.int64)
    with np.errstate(over="ignore"):  # refused by the explainer if it overflows
        estimate = estimate * scale[:, None, None]
    return ShapleyValues(estimate, empty, evaluations)


class KernelExplainer(GameExplainer):
    """Model-agnostic Shapley values by KernelSHAP (paired, with convergence detection).

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable
        The model to explain.
    value_function, background, n_background, link, players, output :
        See :class:`~sklearn_shapley.ExactExplainer`.
    max_evaluations : int, default=1000
        Most coalition evaluations per row.
    paired_sampling : bool, default=True
        Sample every coalition with its complement.
    convergence_threshold : float or None, default=0.01
        Stop a row early when its estimated standard error is this small relative to
        the range of its values; ``None`` spends the whole budget.
    random_state : int, RandomState or None, default=None
        Seeds the background sample and, with each row's values, its coalitions.
    """

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
        paired_sampling=True,
        convergence_threshold=0.01,
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
        self.paired_sampling = paired_sampling
        self.convergence_threshold = convergence_threshold

    def _estimate(self, X):
        return kernel_shap(
            self.game_,
            X,
            max_evaluations=self.max_evaluations,
            paired_sampling=self.paired_sampling,
            convergence_threshold=self.convergence_threshold,
            random_state=self._rng_seed(3),
        )
