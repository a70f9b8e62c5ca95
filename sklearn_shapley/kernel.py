"""KernelSHAP with paired sampling and convergence detection, and its explainer."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval

from ._explanation import ShapleyValues
from ._game_explainer import GameExplainer
from ._memory import check_fits_in_memory
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


#: Bytes of work arrays kernel_shap holds at once (rows are solved in chunks).
WORK_BYTES = 2**28


def min_evaluations(n_players):
    """The smallest budget with which KernelSHAP determines ``n_players`` values.

    ``v(∅)``, ``v([d])`` and about ``2.5 d`` sampled coalitions: paired sampling gives
    ``d`` independent equations only with more than ``d`` pairs (the Shapley kernel
    draws the singletons and their complements often, so some pairs repeat), and a
    budget of ``2 d`` leaves a linear model's values several percent off.
    """
    sampled = -(-5 * n_players // 2)
    return 2 + sampled + sampled % 2


def _warn_unconverged(converged, error_ratio, threshold, max_evaluations, batch_size):
    """Warn, with the measured standard error, about rows the budget left unconverged."""
    n = len(converged)
    measured = ~converged & ~np.isnan(error_ratio)
    if measured.any():
        warnings.warn(
            f"KernelSHAP did not converge for {int(measured.sum())} of {n} rows within "
            f"max_evaluations={max_evaluations}: their standard error is up to "
            f"{np.nanmax(error_ratio[measured]):.3g} of the range of their values "
            f"(convergence_threshold={threshold}). Raise max_evaluations for values "
            "that precise.",
            ConvergenceWarning,
            stacklevel=3,
        )
    unmeasured = ~converged & np.isnan(error_ratio)
    if unmeasured.any():
        warnings.warn(
            f"KernelSHAP could not measure its standard error for "
            f"{int(unmeasured.sum())} of {n} rows: max_evaluations={max_evaluations} "
            f"holds fewer than 3 batches of {batch_size} coalitions. Raise it to at "
            f"least {2 + 3 * batch_size} to measure it, or pass "
            "convergence_threshold=None to spend the budget without measuring.",
            ConvergenceWarning,
            stacklevel=3,
        )


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

    A budget below :func:`min_evaluations` (about ``2.5 d + 2``) cannot determine the
    values and is raised to it, with a ``ConvergenceWarning``; rows that spend their
    budget without converging get a ``ConvergenceWarning`` with their measured
    standard error (or saying it could not be measured: fewer than 3 batches).

    Parameters
    ----------
    game : Game
    X : ndarray of shape (n_rows, n_features)
    max_evaluations : int, default=1000
    batch_size : int, default=None
        Coalitions per batch; default ``max(min_evaluations(d) - 2, 32)``, so that
        every batch determines an estimate and their spread measures the error.
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
    if d == 1 or n == 0:
        evaluations = np.full(n, 2, dtype=np.int64)
        return ShapleyValues((full - empty)[:, None, :], empty, evaluations)
    if max_evaluations < 4:
        raise ValueError(
            "max_evaluations must be at least 4 (v(∅), v([d]) and a pair)."
        )
    needed = min_evaluations(d)
    if max_evaluations < needed:
        warnings.warn(
            f"max_evaluations={max_evaluations} cannot determine the Shapley values "
            f"of {d} players: KernelSHAP needs about 2.5 coalitions per player "
            f"(fewer leave the least-squares fit underdetermined); it was raised to "
            f"{needed}. Pass max_evaluations >= {needed}, or group features with "
            "players=..., to choose the budget yourself.",
            ConvergenceWarning,
            stacklevel=2,
        )
        max_evaluations = needed
    if batch_size is None:  # each batch determines its own estimate (for the error)
        batch_size = max(needed - 2, 32)
    batch_size += batch_size % 2
    # Rows are independent: solve them in chunks whose work arrays (the d x d
    # least-squares matrices and their temporaries, a batch of coalitions and the
    # game's inputs for it) take about WORK_BYTES.
    per_row = (8 * d + 3 * batch_size) * d
    chunk = int(max(1, min(n, WORK_BYTES // (8 * per_row))))
    check_fits_in_memory(
        (chunk, d, 8 * d + 3 * batch_size),
        f"KernelSHAP's work arrays for {chunk} row(s) of {d} players (the d x d "
        "least-squares matrices and a batch of coalitions)",
        advice="group features into fewer players (players=...), or pass a smaller "
        "batch_size to kernel_shap.",
    )
    sampler = CoalitionSampler(d, "shapley", paired=paired_sampling)
    rngs = row_generators(X, random_state)
    estimate = np.empty((n, d, K))
    evaluations = np.empty(n, dtype=np.int64)
    converged = np.empty(n, dtype=bool)
    error_ratio = np.empty(n)
    for first in range(0, n, chunk):
        rows = slice(first, first + chunk)
        (estimate[rows], evaluations[rows], converged[rows], error_ratio[rows]) = (
            _kernel_rows(
                game,
                X[rows],
                full[rows],
                empty[rows],
                rngs[rows],
                sampler,
                max_evaluations,
                batch_size,
                convergence_threshold,
            )
        )
    if convergence_threshold is not None:
        _warn_unconverged(
            converged, error_ratio, convergence_threshold, max_evaluations, batch_size
        )
    return ShapleyValues(estimate, empty, evaluations)


def _kernel_rows(
    game,
    X,
    full,
    empty,
    rngs,
    sampler,
    max_evaluations,
    batch_size,
    convergence_threshold,
):
    """The batches of :func:`kernel_shap` for rows ``X``.

    Returns ``(estimate (n, d, K), evaluations (n,), converged (n,), error_ratio
    (n,))``, the last NaN where fewer than 3 batches were drawn.
    """
    n, d, K = len(X), game.n_players, full.shape[1]
    evaluations = np.full(n, 2, dtype=np.int64)
    A_sum = np.zeros((n, d, d))
    b_sum = np.zeros((n, d, K))
    n_sampled = np.zeros(n, dtype=np.int64)
    batch_estimates = [[] for _ in range(n)]
    error_ratio = np.full(n, np.nan)  # standard error / range, from 3 batches on
    converged = np.zeros(n, dtype=bool)
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
        S_T = S.transpose(0, 2, 1)
        A_batch = (S_T @ S) / m
        b_batch = (S_T @ v) / m
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
                error_ratio[i] = ratio.max()
                if np.all(ratio < convergence_threshold):
                    converged[i] = True
                    continue
            if evaluations[i] + 2 <= max_evaluations:
                still.append(i)
        active = np.asarray(still, dtype=np.int64)
    with np.errstate(over="ignore"):  # refused by the explainer if it overflows
        estimate = estimate * scale[:, None, None]
    return estimate, evaluations, converged, error_ratio


class KernelExplainer(GameExplainer):
    """Model-agnostic Shapley values by KernelSHAP (paired, with convergence detection).

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable
        The model to explain.
    value_function, background, n_background, link, players, output :
        See :class:`~sklearn_shapley.ExactExplainer`.
    max_evaluations : int, default=1000
        Most coalition evaluations per row; raised, with a warning, to about
        ``2.5 d + 2`` for ``d`` players when lower (see :func:`min_evaluations`).
    paired_sampling : bool, default=True
        Sample every coalition with its complement.
    convergence_threshold : float or None, default=0.01
        Stop a row early when its estimated standard error is this small relative to
        the range of its values; rows that spend the budget first get a
        ``ConvergenceWarning`` with their standard error. ``None`` spends the whole
        budget without measuring it.
    random_state : int, RandomState or None, default=None
        Seeds the background sample and, with each row's values, its coalitions.
    """

    _parameter_constraints: dict = {
        "max_evaluations": [Interval(Integral, 1, None, closed="left")],
        "paired_sampling": ["boolean"],
        "convergence_threshold": [Interval(Real, 0, None, closed="neither"), None],
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
