"""``FastSHAPExplainer``: amortized Shapley values from a network trained on the game.

FastSHAP (Jethani et al., 2022) trains an explainer network ``φ(x; θ) ∈ R^{d × K}`` to
minimise ``E_x E_{S ~ Shapley kernel} Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀ φ_k(x; θ))²`` with the
additive efficient normalization as its output layer; the global optimum is the exact
Shapley value of the game ``v``. After training, explaining a row costs one forward pass
plus ``v(full)`` (one model evaluation), and with ``first_last`` (games of up to 16
players by default) ``2d + 1`` more: the players' first and last marginal
contributions, inputs of the network, which learns a correction to their average.
For a game of up to 10 players the expectation over ``S`` is taken exactly: the game is
evaluated once on every coalition of augmented copies of the training rows, whose loss
is then a quadratic form in ``φ`` of a few statistics per row.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn

from .._explanation import ShapleyValues
from .._game_explainer import GameExplainer
from ..games import BaselineGame, Game, MarginalGame, player_membership
from ..mlp import MLPMarginalGame, mlp_marginal_game
from ..sampling import CoalitionSampler, all_coalitions, shapley_kernel_size_weights
from ..tree import flatten_ensemble
from ..tree._flat import NUMERIC_SPLIT
from ..tree._marginal import TreeMarginalGame, tree_marginal_game
from ._nets import (
    NORMALIZATIONS,
    BatchIterator,
    ShapleyModule,
    ShapleyNet,
    augment_rows,
    first_last_contributions,
    first_last_masks,
    inference_threads,
    kernel_gram,
    kernel_statistics,
    quantile_bin_edges,
    single_thread,
    training_callbacks,
)
from ._surrogate import SurrogateGame, fit_surrogate

__all__ = ["FastSHAPExplainer"]

VALUE_FUNCTIONS = ("surrogate", "baseline", "marginal")

#: Background rows drawn per (row, coalition) for the training targets of the
#: marginal game: an unbiased estimate of ``v_x(S)`` at ``1 / n_background`` the cost.
MARGINAL_SAMPLES = 1
#: Background rows averaged over for the partial dependence of the estimates'
#: control variate (:meth:`MarginalGame.additive_control`). Measured (seed 0, the
#: bench's defaults), error / KernelSHAP@1000's without → with it: diabetes x
#: gradient boosting 6.07 → 3.89, x MLP 6.18 → 4.59; breast_cancer x gradient
#: boosting 0.84 → 0.77, x MLP 1.04 → 1.00.
CONTROL_INNER_ROWS = 100

#: Quantile bins per feature with ``n_bins="auto"`` for a piecewise-constant output
#: of a model whose splits are not known.
AUTO_BINS = 64
#: Most split thresholds per feature in the step encoding (more are thinned).
MAX_STEPS = 256
#: Rows, and most (row, feature) moves, that tell a piecewise-constant output.
STEP_PROBE_ROWS = 64
STEP_PROBE_MOVES = 1024

#: Optimizer steps with ``max_epochs=None`` (at least ``MIN_EPOCHS`` epochs).
N_STEPS = 4000
#: The same when the network sees the model's split thresholds: its step weights,
#: one per threshold, keep improving far longer (measured: breast_cancer x gradient
#: boosting x baseline game, error 1.38 / 1.07 / 1.00 x KernelSHAP@1000's after
#: 4,000 / 8,000 / 16,000 steps), while a smooth model's error does not
#: (breast_cancer x MLP x marginal game, 1.08 after 4,000 steps, 1.16 after 8,000).
N_STEPS_SPLITS = 16000
MIN_EPOCHS = 20

#: Training on the expected loss of a small game (``n_coalitions="auto"``, at most
#: 10 players, not the marginal game unless a tree ensemble's): the game is
#: evaluated once on every coalition of ``AUGMENTED_ROWS`` augmented copies of the
#: training rows, so that steps evaluate nothing and the loss has no sampling
#: noise, and the explainer's error keeps falling with more steps, copies, rows per
#: step and width. Measured on diabetes x MLP x baseline game (seed 0), error /
#: KernelSHAP@1000's with (copies, steps, batch, width):
#:
#: - (60,000, 16,000, 64, 128): 1.47 in 80 s;
#: - (180,000, 32,000, 64, 128): 1.24 in 141 s;
#: - (180,000, 64,000, 64, 128): 1.14 in 215 s;
#: - (180,000, 64,000, 256, 128): 1.11 in 304 s;
#: - (360,000, 64,000, 256, 128): 1.06 in 422 s;
#: - (180,000, 64,000, 256, 256): 0.98 in 361 s, the defaults below (with
#:   ``batch_size="auto"`` and ``hidden_layer_sizes="auto"``).
AUGMENTED_ROWS = 180000
N_STEPS_EXPECTED = 64000
BATCH_SIZE_EXPECTED = 256
HIDDEN_LAYER_SIZES_EXPECTED = (256, 256)
#: The same on the marginal game. A tree ensemble's is computed exactly from its
#: leaves (:class:`~sklearn_shapley.tree._marginal.TreeMarginalGame`: exact
#: statistics for the augmented copies without evaluating any coalition, the game's
#: own first and last contributions as inputs). Measured on diabetes x gradient
#: boosting (seed 0), error / KernelSHAP@1000's with (width, batch): (256, 256)
#: 0.70 after 372 s of training, (512, 512) 0.22 after 1,312 s. A one-hidden-layer
#: MLP's is computed exactly from its weights
#: (:class:`~sklearn_shapley.mlp.MLPMarginalGame`, 30 times faster than the model
#: on every hybrid row) on as many copies; the network sees the first and last
#: contributions of the same game on the first ``FIRST_LAST_BACKGROUND``
#: background rows (``2d + 2`` coalitions on each per explained row, a few
#: milliseconds per 1,000 rows). Measured on diabetes x MLP (seed 0): 20,000 exact
#: copies (the model on every hybrid row) 1.43 after 1,396 s; 180,000 copies 1.20
#: after 633 s (360,000: 0.99 after twice as long); with the first and last
#: contributions on 10 / 20 background rows instead of the baseline game's at the
#: background's mean, 0.97 / 0.88. Another model's is evaluated exactly (the whole
#: background) on as many copies as ``MARGINAL_EVALUATIONS`` model evaluations
#: allow (each value costs ``n_background``): 20,000 with 10 players and 100
#: background rows.
FIRST_LAST_BACKGROUND = 20
HIDDEN_LAYER_SIZES_MARGINAL = (512, 512)
BATCH_SIZE_MARGINAL = 512
MARGINAL_EVALUATIONS = 2_044_000_000
#: ``batch_size="auto"`` and ``hidden_layer_sizes="auto"`` elsewhere (the
#: surrogate's network too).
BATCH_SIZE = 64
HIDDEN_LAYER_SIZES = (128, 128)

#: Validation rows are scored on every coalition, weighted by the Shapley kernel (the
#: expected FastSHAP loss itself, a function of the explainer's error alone up to a
#: constant), when there are at most this many (10 players); else on sampled ones.
EXACT_VALIDATION_COALITIONS = 1022

#: Most players of a "small" game, where ``first_last="auto"`` gives the network the
#: players' first and last marginal contributions and ``n_coalitions="auto"`` is
#: ``N_COALITIONS_SMALL`` instead of ``N_COALITIONS``.
SMALL_GAME_PLAYERS = 16
N_COALITIONS = 128
N_COALITIONS_SMALL = 512


class FastSHAPExplainer(GameExplainer):
    """Amortized Shapley values: an explainer network trained by FastSHAP.

    ``fit`` builds the game (by default a surrogate network of the model, trained
    first and kept as ``surrogate_``), then trains an explainer network
    ``φ(x) ∈ R^{d × K}`` (an MLP, plus a small MLP per player on its own features,
    both seeing, for a piecewise-constant game, the features' positions in quantile
    bins or relative to a tree ensemble's split thresholds: ``n_bins``)
    through skorch on the Shapley weighted-least-squares loss
    ``Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀ φ_k(x))²`` averaged over rows and
    ``n_coalitions`` Shapley-kernel coalitions per row, with the efficiency
    normalization inside the forward pass. The coalitions are fresh for every batch
    and their values computed by the game (numpy) for the batch's rows, augmented
    (``swap_probability``: features taken from other rows; ``input_noise``: Gaussian
    noise), the game being evaluated at the augmented rows so the targets stay exact;
    for the marginal game, where a value costs ``n_background`` model evaluations,
    the training targets are unbiased one-background-row estimates of ``v_x(S)``
    (``SampledMarginalGame``; the loss being quadratic, its minimiser is
    unchanged), less the model's partial dependence on the players drawn from that
    row (a control variate of mean zero). For a game of at most 10 players, the
    game is instead evaluated once, before training, on every coalition of
    180,000 augmented copies of the training rows, and each batch takes the
    expected loss over the Shapley kernel at one copy of each of its rows
    (``n_coalitions="auto"``). A tree ensemble's marginal game is computed
    exactly from its leaves there (:class:`~sklearn_shapley.tree.TreeMarginalGame`,
    whose tables give the loss's statistics without evaluating any coalition);
    a one-hidden-layer MLP's exactly from its weights
    (:class:`~sklearn_shapley.mlp.MLPMarginalGame`); another model's marginal game
    exactly, on every background row, on 20,000 copies (about 2 billion model
    evaluations, ``MARGINAL_EVALUATIONS``). With
    ``n_cached_coalitions``, each row's values are computed once for a cache of
    coalitions that the batches draw from. Early stopping watches the same loss on
    held-out rows with fixed seeded coalitions; the learning rate is halved on
    plateaus and the best weights are restored.

    ``transform`` / ``explain`` then cost one forward pass plus ``v(full)`` per row
    (one model evaluation for the baseline and marginal games, one surrogate pass for
    the surrogate); ``v(∅)``, the same for every row under these three value
    functions, is computed once in ``fit`` (a custom
    :class:`~sklearn_shapley.games.Game` is asked for both, two evaluations per row).
    With ``first_last`` (at most 16 players by default) they cost ``2d + 2``
    evaluations per row instead, in one call. The additive normalization is applied
    again in float64 at inference, so ``base_values + values.sum(axis=1)`` equals
    the explained output to float precision.

    Accuracy is limited by how well one network represents ``x ↦ φ(x)`` and
    generalises from the training rows. On diabetes (10 features, 331 training
    rows) paired KernelSHAP with 1,000 evaluations per row samples nearly all
    1,022 coalitions and is nearly exact: error 0.40 for gradient boosting with the
    baseline game (mean attribution norm 45). The network alone reached 2.6 there
    (with the model's split thresholds as its encoding, ``n_bins``; 10.9 without);
    regressed directly on the exact values of 20,331 rows it still reached only
    2.45. Three changes for small games close the gap: the players' first and last
    marginal contributions as inputs, the network learning a correction to their
    average (``first_last``; 1.81), validation on every coalition (1.23) and 512
    coalitions per row (``n_coalitions``; 0.40, as accurate as KernelSHAP@1000);
    the expected loss over every coalition of 180,000 augmented rows evaluated
    once, with a wider network and longer training (``n_coalitions="auto"``),
    brings it to 0.20 (0.49x KernelSHAP@1000's). With the baseline game of an MLP
    and with the surrogate game it is more accurate than KernelSHAP@1000 on
    diabetes too (0.98x, 0.41-0.48x its error), and with the marginal game of
    gradient boosting, computed exactly from the trees (0.22x), and with that of an
    MLP, computed exactly from its weights (0.88x). With 30 features
    (breast_cancer) it is at least as accurate as KernelSHAP@1000 in all six
    configurations (0.64-1.00x its error). See
    ``benchmarks/results/fastshap.md``. Its advantage is speed once trained.

    Parameters
    ----------
    estimator : estimator, FrozenEstimator or callable, default=None
        The model to explain (see :class:`~sklearn_shapley.BaseExplainer`).
    value_function : {"surrogate", "baseline", "marginal"} or Game, default="surrogate"
        ``"surrogate"``: a masked network ``g(x ⊙ S, S)`` trained on the model
        (:func:`~sklearn_shapley.amortized.fit_surrogate`, the conditional /
        in-distribution value function); ``"baseline"``: held-out features set to
        ``background`` (default the column means); ``"marginal"``: averaged over a
        background sample (``n_background`` rows of ``background`` or of ``X``); or a
        :class:`~sklearn_shapley.games.Game`.
    background : array-like, default=None
        Baseline values ``(n_features,)`` or rows ``(n, n_features)``.
    n_background : int, default=100
        Rows kept for the marginal value function.
    link : {"identity", "logit", "log", "log_softmax"} or callable, default="identity"
        Applied to each prediction before the game averages or differences it. The
        default explains classifiers' predicted probabilities (all classes at once)
        and regressors' predictions; ``"logit"`` / ``"log_softmax"`` explain log-odds
        / log-probabilities.
    players : list of lists of int, default=None
        Column groups (e.g. one-hot blocks) treated as one player each.
    normalization : {"additive", "multiplicative", "none"}, default="additive"
        Efficiency layer in the training forward pass: ``φ + (v(full) − v(∅) − 1ᵀφ)/d``,
        ``φ · (v(full) − v(∅)) / 1ᵀφ``, or none (see ``efficiency_lambda``).
    paired_sampling : bool, default=True
        Draw every training coalition together with its complement.
    n_coalitions : int or "auto", default="auto"
        Coalitions per row and batch (rounded up to even when paired). ``"auto"``:
        for a game of at most 10 players, none are sampled: the game is evaluated
        once, before training, on every coalition of ``AUGMENTED_ROWS``
        (180,000) augmented copies of the training rows (20,000 for the marginal
        game of a model that is neither a tree ensemble
        :func:`~sklearn_shapley.tree.tree_marginal_game` reads nor an MLP
        :func:`~sklearn_shapley.mlp.mlp_marginal_game` reads: its values cost
        ``n_background`` model evaluations each)
        (``swap_probability``, ``input_noise``; at most ``max_epochs`` copies of
        each), and every batch takes one copy of each of its rows with the
        expected loss there, a quadratic form in ``φ`` (no sampling noise, no
        evaluations while training; 64,000 optimizer steps, see ``max_epochs``,
        ``batch_size`` and ``hidden_layer_sizes``). Measured on diabetes (seed 0),
        error / KernelSHAP@1000's with 512 fresh coalitions per batch → the
        expected loss on 20,000 augmented rows (for the current defaults see
        ``AUGMENTED_ROWS``): gradient boosting, baseline game 1.00 →
        0.89 (training 577 s → 166 s); MLP, baseline game 1.90 → 1.53. Else 512
        for a game of at most 16 players, 128 for a larger one. In a small
        game the network is accurate enough that the loss's sampling noise is what is
        left: diabetes x gradient boosting x baseline game (with ``first_last``), error
        / KernelSHAP@1000's 1.23 with 128 coalitions, 1.00 with 512. Fewer coalitions
        make every step cheaper but its gradient noisier; measured with the other
        defaults (seed 0), held-out error / KernelSHAP@1000's with 64 → 128 on
        breast_cancer: gradient boosting, baseline game 1.00 → 0.92, marginal 1.07 →
        0.84; MLP, baseline 0.98 → 0.86, marginal 1.08 → 1.04, for about 1.5-2x the
        training time.
    hidden_layer_sizes : tuple of int or "auto", default="auto"
        Hidden ReLU layers of the explainer (and of the surrogate). ``"auto"``:
        (256, 256) when the explainer trains on a small game's expected loss
        (``n_coalitions``), which keeps improving with width (diabetes x MLP x
        baseline game, error / KernelSHAP@1000's 1.11 with (128, 128), 0.98 with
        (256, 256)); (512, 512) there for the marginal game (diabetes x gradient
        boosting: 0.70 with (256, 256) and batches of 256, 0.22 with (512, 512)
        and batches of 512, for 3.5x the training time; see
        ``HIDDEN_LAYER_SIZES_MARGINAL``); else (128, 128), the surrogate's too.
    playerwise_layer_sizes : tuple of int or None, default=(16, 16)
        Hidden layers of a second branch, one small MLP per player on that player's
        own features, whose output is added to the joint MLP's: an inductive bias
        towards main effects, the bulk of most tabular models' attributions. Measured
        with the baseline game and the other defaults (one seed): 20-28 % lower
        held-out error for gradient boosting on diabetes, within ±10 % of the plain
        MLP for an MLP model on diabetes and gradient boosting on breast_cancer.
        ``(16, 16)`` rather than wider keeps explaining 1,000 rows of 30 features
        within a few milliseconds. ``None`` disables it.
    n_bins : int, "auto" or None, default="auto"
        How the network sees the features of a piecewise-constant game. An int:
        that many quantile bins per feature (edges from the training rows) of a
        piecewise-linear encoding
        (:class:`~sklearn_shapley.amortized._nets.PiecewiseLinearLayer`): the joint
        MLP's first layer sees it beside the standardised row, and each player's MLP
        sees it instead of its features' values. The Shapley values of tree
        ensembles are step functions of each feature, which ReLU layers on the raw
        values fit poorly; those of a smooth game (a network) are not, and there the
        encoding costs accuracy. ``"auto"``, when the explained output is piecewise
        constant (at least half of the moves of one feature of a training row by
        1e-4 of its standard deviation leave it exactly unchanged, as for tree
        ensembles): the model's own split thresholds, as steps
        (``[x_j > threshold]``, the same layer with ``steps=True``), for the
        baseline and marginal games of a tree ensemble that
        :func:`~sklearn_shapley.tree.flatten_ensemble` reads (scikit-learn,
        XGBoost, LightGBM; bare or in a ``FrozenEstimator``, not in a Pipeline;
        numeric splits; at most 256 thresholds per feature), trained for 16,000
        optimizer steps instead of 4,000 (see ``max_epochs``); else 64 quantile
        bins; no encoding for a smooth output (smooth models, the surrogate
        network). Measured (``benchmarks/bench_fastshap.py``'s models, seed 0),
        held-out error / KernelSHAP@1000's for gradient boosting, no encoding →
        64 quantile bins → split thresholds (4,000 steps) → split thresholds
        (16,000 steps): breast_cancer baseline game 2.24 → 1.76 → 1.38 → 1.00,
        marginal 1.43 → 1.38 → 1.16 → 1.07; diabetes baseline 27 → 13.3 → 9.7 →
        6.1; with an MLP model the quantile bins made it worse (breast_cancer
        baseline 0.98 → 1.13, marginal 1.08 → 1.51). ``None``: the raw
        standardised features only.
    first_last : "auto" or bool, default="auto"
        Whether the network also sees every player's first and last marginal
        contributions ``v({i}) − v(∅)`` and ``v(N) − v(N∖{i})`` and outputs a
        correction to their average, which is the Shapley value of any game whose
        interactions involve two players at most (the network starts there: its
        last layers are initialised to zero), so that it only learns the
        interactions of three or more players. It costs ``2d + 1`` game evaluations
        per explained row besides ``v(full)`` (``2d + 2`` in all), and as many per
        training row and batch. For the marginal game, whose every value costs
        ``n_background`` model evaluations, they are the contributions in the
        baseline game at the background's mean (one model evaluation each), or,
        for a tree ensemble of at most 10 players, the marginal game's own from
        :class:`~sklearn_shapley.tree.TreeMarginalGame` (one table look-up per
        tree for all of them), for a one-hidden-layer MLP of at most 10 players,
        those of its marginal game on the first ``FIRST_LAST_BACKGROUND`` (20)
        background rows (:class:`~sklearn_shapley.mlp.MLPMarginalGame`).
        ``"auto"``: when the game has at most 16 players, where the ``2d + 2``
        evaluations stay a small share of what sampling estimators need (paired
        KernelSHAP with 1,000 evaluations per row is then nearly exact).
        Measured on diabetes (seed 0), error / KernelSHAP@1000's without → with it
        (and 128 coalitions, sampled validation): gradient boosting, baseline game
        6.6 → 1.81; MLP, baseline game 4.2 → 2.35. Explaining 1,000 rows then takes
        11-22 ms (22 model evaluations or surrogate passes per row; the surrogate's
        evaluated row by row in float32, see ``SurrogateGame.rowwise_copy``).
    efficiency_lambda : float, default=0.0
        Weight of the penalty ``(1ᵀφ − v(full) + v(∅))²`` added to the loss (useful with
        ``normalization="none"``).
    input_noise : float, default=0.1
        Training rows are perturbed by Gaussian noise of this many standard deviations
        per feature at every batch (the game is evaluated at the perturbed rows, so the
        targets stay exact): the network sees the neighbourhood of the training rows,
        not only the rows (measured before ``swap_probability`` existed: 1-5 % lower
        error; on top of it, no measurable difference). ``0`` disables it; ignored
        with cached coalitions.
    swap_probability : float, default=0.2
        At every batch, each player of each training row takes, with this
        probability, its features' values in another training row drawn at random
        (towards the product of the players' marginals); the game is evaluated at the
        new rows, so the targets stay exact. The network is trained on fresh synthetic
        rows around the data instead of memorising a few hundred: measured on
        diabetes (MLP model, baseline game) held-out error 4.9 → 3.5 at equal
        training error (2.6-2.8). ``0`` disables it; ignored with cached coalitions.
    n_cached_coalitions : int, "auto" or None, default="auto"
        When set, every training row gets this many coalitions (paired) evaluated once
        before training, and batches draw their ``n_coalitions`` from them, instead of
        evaluating the game on fresh coalitions every batch (no row augmentation
        then). ``"auto"``: no cache; a game of at most 10 players is evaluated
        once on augmented copies of the rows (``n_coalitions``),
        other games on fresh coalitions, the marginal game's values estimated with
        one background row each during training (measured on diabetes with an MLP
        model: held-out error 3.0, against 3.7 with 512 cached coalitions per row).
    batch_size : int or "auto", default="auto"
        Rows per optimizer step. ``"auto"``: 256 when the explainer trains on a
        small game's expected loss (``n_coalitions``; diabetes x MLP x baseline
        game, 64,000 steps: error / KernelSHAP@1000's 1.14 with 64 rows, 1.11 with
        256), 512 there for the marginal game (see ``hidden_layer_sizes``),
        else 64.
    learning_rate : float, default=1e-3
        Adam's initial learning rate (halved after ``patience // 4`` epochs without
        improvement).
    max_epochs : int, default=None
        ``None``: ``max(20, ceil(4_000 / batches_per_epoch))`` epochs, i.e. at least
        4,000 optimizer steps whatever the number of rows, 16,000 when the network
        sees a tree ensemble's split thresholds (``n_bins``), whose step weights
        keep improving longer, 64,000 when it is trained on the expected loss of a
        small game (``n_coalitions``), whose steps evaluate nothing (early stopping
        may end training sooner).
    patience : int or None, default=None
        Epochs without improvement of the held-out loss before training stops;
        ``None``: a quarter of the epochs (at least 10). Early stopping watches a loss
        dominated by the game's non-additive residual, so that a short patience
        stops long before the error stops decreasing.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their loss stops
        improving and restore the best weights. The loss of a game of at most 10
        players is taken on all its coalitions with their Shapley-kernel
        probabilities (the expected loss, whose changes are those of the
        explainer's error alone), of a larger one on ``n_coalitions`` fixed sampled
        coalitions per row (measured on diabetes x gradient boosting x baseline
        game, 128 coalitions: error / KernelSHAP@1000's 1.81 → 1.23).
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    surrogate_params : dict, default=None
        Keyword arguments for :func:`~sklearn_shapley.amortized.fit_surrogate`
        (``hidden_layer_sizes``, ``max_epochs``, ``learning_rate``, ``distribution``,
        ...); by default the surrogate has the explainer's ``hidden_layer_sizes``
        ((128, 128) with ``"auto"``).
    output : int, str or None, default=None
        Output ``transform`` returns (see :class:`~sklearn_shapley.BaseExplainer`).
    device : str, default="cpu"
        Torch device of the networks.
    random_state : int, RandomState or None, default=None
        Seeds the split, the coalitions, the background sample and torch (in a forked
        RNG): equal seeds give equal explainers.
    verbose : int, default=0
        Print skorch's per-epoch log of the training losses.

    Attributes
    ----------
    estimator_ : the explained model
    game_ : Game
        The value function the explainer was trained on.
    surrogate_ : SurrogateGame
        The surrogate (``value_function="surrogate"`` only), a game of its own.
    module_ : ShapleyModule
        The trained explainer network.
    history_ : skorch History
        Training and validation losses per epoch.
    n_features_in_, feature_names_in_, output_names_

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn_shapley import FastSHAPExplainer
    >>> X, y = load_diabetes(return_X_y=True)
    >>> model = FrozenEstimator(Ridge().fit(X, y))
    >>> explainer = FastSHAPExplainer(
    ...     model, value_function="baseline", max_epochs=5, random_state=0
    ... ).fit(X)
    >>> explainer.transform(X[:3]).shape
    (3, 10)
    """

    def __init__(
        self,
        estimator=None,
        *,
        value_function="surrogate",
        background=None,
        n_background=100,
        link="identity",
        players=None,
        normalization="additive",
        paired_sampling=True,
        n_coalitions="auto",
        hidden_layer_sizes="auto",
        playerwise_layer_sizes=(16, 16),
        n_bins="auto",
        first_last="auto",
        efficiency_lambda=0.0,
        input_noise=0.1,
        swap_probability=0.2,
        n_cached_coalitions="auto",
        batch_size="auto",
        learning_rate=1e-3,
        max_epochs=None,
        patience=None,
        early_stopping=True,
        validation_fraction=0.1,
        surrogate_params=None,
        output=None,
        device="cpu",
        random_state=None,
        verbose=0,
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
        self.normalization = normalization
        self.paired_sampling = paired_sampling
        self.n_coalitions = n_coalitions
        self.hidden_layer_sizes = hidden_layer_sizes
        self.playerwise_layer_sizes = playerwise_layer_sizes
        self.n_bins = n_bins
        self.first_last = first_last
        self.efficiency_lambda = efficiency_lambda
        self.input_noise = input_noise
        self.swap_probability = swap_probability
        self.n_cached_coalitions = n_cached_coalitions
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.surrogate_params = surrogate_params
        self.device = device
        self.verbose = verbose

    # -- the game -----------------------------------------------------------------
    def _make_game(self, X):
        vf = self.value_function
        if isinstance(vf, Game):
            return vf
        if not isinstance(vf, str) or vf not in VALUE_FUNCTIONS:
            raise ValueError(
                f"value_function must be one of {VALUE_FUNCTIONS} or a Game instance, "
                f"got {vf!r}."
            )
        if vf != "surrogate":
            return super()._make_game(X)
        hidden_layer_sizes, _ = self._network_sizes(expected=False, marginal=False)
        params = {
            "hidden_layer_sizes": hidden_layer_sizes,
            "verbose": self.verbose,
            "device": self.device,
        }
        params.update(self.surrogate_params or {})
        self.surrogate_ = fit_surrogate(
            self.estimator_,
            self._model_input(X),
            link=self.link,
            players=self.players,
            random_state=self._rng_seed(4),
            **params,
        )
        return self.surrogate_

    def _grand_and_empty(self, X):
        """``(v(full), v(∅), evaluations per row)`` with ``v(∅)`` cached when constant."""
        game = self._grand_game
        full_mask = np.ones((1, game.n_players), dtype=bool)
        if self._empty_value is None:
            return super()._grand_and_empty(X)
        if isinstance(game, MarginalGame):
            # v_x(full) = mean_b link(f(x)) = link(f(x)): no need for the background.
            game = BaselineGame(
                game.model, game.background[0], link=game.link, players=game.players
            )
        full = game(X, full_mask)[:, 0]
        return full, np.broadcast_to(self._empty_value, full.shape), 1

    # -- training -------------------------------------------------------------------
    def _check_params(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got "
                f"{self.normalization!r}."
            )
        if not _auto_or_positive_int(self.n_coalitions):
            raise ValueError(
                "n_coalitions must be 'auto' or an int >= 1, got "
                f"{self.n_coalitions!r}."
            )
        if not (self.n_bins is None or _auto_or_positive_int(self.n_bins)):
            raise ValueError(
                f"n_bins must be 'auto', None or a positive int, got {self.n_bins!r}."
            )
        if not (
            isinstance(self.first_last, (bool, np.bool_))
            or (isinstance(self.first_last, str) and self.first_last == "auto")
        ):
            raise ValueError(
                f"first_last must be 'auto', True or False, got {self.first_last!r}."
            )
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, str):
            valid_hidden = hidden == "auto"
        else:
            valid_hidden = np.ndim(hidden) == 1 and all(map(_positive_int, hidden))
        if not valid_hidden:
            raise ValueError(
                "hidden_layer_sizes must be 'auto' or a tuple of ints >= 1, got "
                f"{hidden!r}."
            )
        if not _auto_or_positive_int(self.batch_size):
            raise ValueError(
                f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}."
            )
        if self.input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}.")
        if not 0 <= self.swap_probability <= 1:
            raise ValueError(
                f"swap_probability must be in [0, 1], got {self.swap_probability}."
            )
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}.")
        n_cached = self.n_cached_coalitions
        if not (
            n_cached is None
            or (isinstance(n_cached, str) and n_cached == "auto")
            or (not isinstance(n_cached, str) and int(n_cached) >= 0)
        ):
            raise ValueError(
                "n_cached_coalitions must be 'auto', None or a non-negative int, got "
                f"{n_cached!r}."
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                "validation_fraction must be in [0, 1), got "
                f"{self.validation_fraction}."
            )

    def _fit_explainer(self, X, y):
        self._check_params()
        super()._fit_explainer(X, y)

    def _fit_estimator(self, X, y):
        game = self.game_
        # v(full) and v(∅), which the normalization makes the attributions add up to,
        # and the first and last contributions: a surrogate's evaluated row by row,
        # so that a row's explanation does not depend on the rows explained with it
        self._grand_game = (
            game.rowwise_copy() if isinstance(game, SurrogateGame) else game
        )
        self._empty_value = None
        if isinstance(game, (BaselineGame, MarginalGame, SurrogateGame)):
            self._empty_value = self._grand_game.grand_and_empty(X[:1])[1][0]
        self._mean = X.mean(axis=0)
        self._scale = X.std(axis=0)
        self._scale[self._scale < 1e-12] = 1.0
        n, d, K = len(X), game.n_players, game.n_outputs
        m = self.n_coalitions
        auto_coalitions = isinstance(m, str)
        if auto_coalitions:
            m = N_COALITIONS_SMALL if d <= SMALL_GAME_PLAYERS else N_COALITIONS
        m = int(m)
        m += m % 2 if self.paired_sampling else 0
        n_cached = self._n_cached_coalitions(m)
        # every coalition with its probability, for a game small enough
        enumerated = 2**d - 2 <= EXACT_VALIDATION_COALITIONS
        # a small game's expected loss on every coalition, for augmented copies of
        # the training rows evaluated once. The marginal game too, exactly: a tree
        # ensemble's from its leaves (TreeMarginalGame), another model's on fewer
        # copies (MARGINAL_EVALUATIONS). Measured on diabetes (seed 0), error /
        # KernelSHAP@1000's, with fresh one-row estimates (SampledMarginalGame)
        # 3.89 (gradient boosting) / 4.59 (MLP); with the expected loss of one-row
        # estimates frozen in 60,000 copies 6.22 / 4.65, with exact values on
        # 6,000 / 3,000 copies 3.97 / 3.26; with TreeMarginalGame's on 180,000
        # copies and its own first and last contributions, gradient boosting
        # 0.22; with exact values on 20,000 copies, MLP 1.43, with
        # MLPMarginalGame's on 180,000 copies 1.20, and with its first and last
        # contributions on 20 background rows 0.88.
        expected = auto_coalitions and enumerated and not n_cached
        exact_game = None
        marginal = expected and isinstance(game, MarginalGame)
        if marginal:
            # the same game computed exactly and fast from the model's structure:
            # a tree ensemble's leaves, or a one-hidden-layer MLP's weights
            exact_game = tree_marginal_game(game, X)
            if exact_game is None:
                exact_game = mlp_marginal_game(game, X)
        hidden_layer_sizes, batch_size = self._network_sizes(expected, marginal)
        self.module_ = ShapleyModule(
            X.shape[1], d, K, hidden_layer_sizes, self.normalization
        )
        self.history_ = []
        self._contributions_game = None
        if d < 2:  # one player: φ = v(full) − v(∅), nothing to learn
            return
        if isinstance(self.first_last, str):  # "auto"
            use_first_last = d <= SMALL_GAME_PLAYERS
        else:  # a bool or numpy bool (validated in _check_params)
            use_first_last = bool(self.first_last)
        if use_first_last:
            self._contributions_game = self._first_last_game(exact_game)
            full, empty, contributions, _ = self._first_last_values(X)
        else:
            full, empty, _ = self._grand_and_empty(X)
        self._output_scale = _value_scale(full - empty)
        data = {
            "x": self._standardize(X),
            "rows": X.astype(np.float64),
            "empty": empty.astype(np.float32),
            "total": (full - empty).astype(np.float32),
        }
        if use_first_last:
            data["contributions"] = (contributions / self._output_scale).astype(
                np.float32
            )
        kernel = _kernel_coalitions(d) if enumerated else None
        sampler = CoalitionSampler(d, "shapley", paired=self.paired_sampling)
        rng = np.random.default_rng(self._rng_seed(5))
        order = rng.permutation(n)
        n_valid = int(round(self.validation_fraction * n)) if self.early_stopping else 0
        early_stopping = n_valid >= 1 and n - n_valid >= 1
        train, valid = (
            (order[n_valid:], order[:n_valid])
            if early_stopping
            else (
                order,
                order[:0],
            )
        )
        # the marginal game's exact form, when it has one, for every value (a tree
        # game's training and validation losses are then the excess over the exact
        # values')
        train_game = game if exact_game is None else exact_game
        train_split = None
        if early_stopping:
            valid_data = {key: value[valid] for key, value in data.items()}
            if kernel is not None:  # the expected loss itself
                valid_data["cross"], valid_data["square"] = _expected_loss_statistics(
                    train_game, X[valid], empty[valid], kernel
                )
            else:
                masks = sampler.sample(n_valid * m, rng)[: n_valid * m]
                valid_data["masks"] = masks.reshape(n_valid, m, d)
                valid_data["values"] = game(X[valid], valid_data["masks"]).astype(
                    np.float32
                )
            train_split = predefined_split(Dataset(valid_data, None))
        pool_masks = pool_values = None
        membership = player_membership(self.players, X.shape[1])
        if n_cached:
            data["index"] = np.arange(n)
            pool_masks = sampler.sample(n * n_cached, rng).reshape(n, n_cached, d)
            pool_values = game(X, pool_masks).astype(np.float32)
        elif not expected and isinstance(game, MarginalGame):
            train_game = SampledMarginalGame(
                game,
                MARGINAL_SAMPLES,
                self._empty_value,
                self._rng_seed(8),
                control=game.additive_control(
                    CONTROL_INNER_ROWS, random_state=self._rng_seed(9)
                ),
            )
        bin_edges, bin_steps = self._bin_edges(X[train])
        max_epochs = self.max_epochs
        if max_epochs is None:
            batches_per_epoch = max(1, math.ceil(len(train) / batch_size))
            n_steps = (
                N_STEPS_EXPECTED
                if expected
                else (N_STEPS_SPLITS if bin_steps else N_STEPS)
            )
            max_epochs = max(MIN_EPOCHS, math.ceil(n_steps / batches_per_epoch))
        augmented = None
        if expected:
            data["index"] = np.arange(n)
            rows = AUGMENTED_ROWS
            if marginal and exact_game is None:  # n_background calls per value
                evaluations = len(kernel[0]) * len(game.background)
                rows = max(len(train), MARGINAL_EVALUATIONS // evaluations)
            copies = min(int(max_epochs), math.ceil(rows / len(train)))
            if not (self.swap_probability or self.input_noise):
                copies = 1  # the rows themselves
            augmented = self._augmented_copies(
                X, train, copies, train_game, kernel, use_first_last, membership, rng
            )
        patience = self.patience
        if patience is None:
            patience = max(10, int(max_epochs) // 4)
        net = ShapleyNet(
            ShapleyModule,
            module__n_features=X.shape[1],
            module__n_players=d,
            module__n_outputs=K,
            module__hidden_layer_sizes=hidden_layer_sizes,
            module__normalization=self.normalization,
            module__output_scale=self._output_scale,
            module__membership=membership,
            module__playerwise_layer_sizes=self.playerwise_layer_sizes,
            module__bin_edges=bin_edges,
            module__bin_steps=bin_steps,
            module__first_last=use_first_last,
            criterion=nn.MSELoss,  # unused: get_loss computes the Shapley loss
            optimizer=torch.optim.Adam,
            lr=self.learning_rate,
            batch_size=batch_size,
            max_epochs=max_epochs,
            train_split=train_split,
            iterator_train=BatchIterator,
            iterator_valid=BatchIterator,
            iterator_train__shuffle=True,
            callbacks=training_callbacks(
                early_stopping=early_stopping,
                patience=patience,
                lr_patience=max(1, patience // 4),
            ),
            game=train_game,
            n_coalitions=m,
            efficiency_lambda=self.efficiency_lambda,
            input_noise=0.0 if n_cached else self.input_noise,
            swap_probability=0.0 if n_cached else self.swap_probability,
            donor_rows=X[train].astype(np.float64),
            membership=membership,
            pool_masks=pool_masks,
            pool_values=pool_values,
            augmented=augmented,
            gram=None if kernel is None else kernel_gram(*kernel),
            first_last_game=(
                # the training game when it is the same (one call for all values)
                train_game
                if self._contributions_game is self._grand_game
                else self._contributions_game
            ),
            feature_scale=self._scale,
            sampler=sampler,
            mask_seed=self._rng_seed(6),
            device=self.device,
            verbose=self.verbose,
        )
        with torch.random.fork_rng(devices=[]), single_thread():
            torch.manual_seed(self._rng_seed(7))
            net.fit({key: value[train] for key, value in data.items()}, None)
        self.module_ = net.module_.eval()
        self.history_ = net.history

    def _augmented_copies(
        self, X, train, copies, game, kernel, first_last, membership, rng
    ):
        """``copies`` augmented copies of each training row (rows ``X[train]``; the
        players' columns: ``membership``) and the statistics of the expected loss
        there, ``game`` evaluated on every coalition: a dict of arrays
        ``(n_rows, copies, ...)`` indexed by row number
        (:class:`~sklearn_shapley.amortized._nets.ShapleyNet`'s ``augmented``).
        """
        n, copies = len(X), int(copies)
        rows = np.repeat(X[train], copies, axis=0)
        rows += self._scale * augment_rows(
            rows,
            rng,
            donors=X[train],
            membership=membership,
            swap_probability=self.swap_probability,
            input_noise=self.input_noise,
            feature_scale=self._scale,
        )
        if first_last:
            full, empty, contributions, _ = self._first_last_values(rows)
        else:
            full, empty, _ = self._grand_and_empty(rows)
        cross, square = _expected_loss_statistics(game, rows, empty, kernel)
        fields = {
            "x": self._standardize(rows),
            "total": (full - empty).astype(np.float32),
            "cross": cross,
            "square": square,
        }
        if first_last:
            fields["contributions"] = (contributions / self._output_scale).astype(
                np.float32
            )
        augmented = {}
        for key, value in fields.items():
            table = np.zeros((n, copies, *value.shape[1:]), dtype=value.dtype)
            table[train] = value.reshape(len(train), copies, *value.shape[1:])
            augmented[key] = table
        return augmented

    def _bin_edges(self, rows):
        """The encoding's edges of the standardised training ``rows`` and whether
        they are split thresholds (steps): ``(None, False)`` for none.

        ``n_bins="auto"``, when the explained output is piecewise constant
        (:meth:`_steps_share` of the ``rows`` at least 1/2): the model's own split
        thresholds (:func:`_split_thresholds`) for the baseline and marginal games of
        a tree ensemble the package reads, else ``AUTO_BINS`` quantile bins.
        """
        n_bins = self.n_bins
        if isinstance(n_bins, str):
            if self._steps_share(rows) < 0.5:
                return None, False
            thresholds = None
            if isinstance(self.value_function, str):  # a game of estimator_
                thresholds = _split_thresholds(self.estimator_, rows, MAX_STEPS)
            if thresholds is not None:
                scaled = [
                    self._standardize_column(t, j) for j, t in enumerate(thresholds)
                ]
                # float32 may merge thresholds, or send far ones to ±inf: a step
                # that no finite value crosses is constant, dropped
                return [np.unique(t[np.isfinite(t)]) for t in scaled], True
            n_bins = AUTO_BINS
        if n_bins is None:
            return None, False
        return quantile_bin_edges(self._standardize(rows), n_bins), False

    def _first_last_game(self, exact_game):
        """The game whose first and last marginal contributions the network sees.

        The explained game, except for the marginal game, where each value costs
        ``n_background`` model evaluations: there its exact tree form when it has
        one (``exact_game``, a :class:`~sklearn_shapley.tree._marginal.TreeMarginalGame`:
        one table look-up per tree for all the contributions); a one-hidden-layer
        MLP's exact form (:class:`~sklearn_shapley.mlp.MLPMarginalGame`) on the first
        ``FIRST_LAST_BACKGROUND`` background rows; else the baseline game at the
        background's mean (the same ``v(full)``, one model evaluation per value).
        """
        if isinstance(exact_game, TreeMarginalGame):
            return exact_game
        if isinstance(exact_game, MLPMarginalGame):
            return exact_game.with_background(
                exact_game.background[:FIRST_LAST_BACKGROUND]
            )
        game = self._grand_game
        if isinstance(game, MarginalGame):
            return BaselineGame(
                game.model,
                game.background.mean(axis=0),
                link=game.link,
                players=game.players,
            )
        return game

    def _first_last_values(self, X):
        """``(v(full), v(∅), contributions, evaluations per row)`` for rows ``X``.

        ``contributions (n, d, 2K)``: the first then the last marginal contributions
        of the players in :meth:`_first_last_game`, from one call on the ``2d + 2``
        coalitions of :func:`first_last_masks` (which give ``v(full)`` too).
        """
        queries = first_last_masks(self.game_.n_players)
        game = self._contributions_game
        if isinstance(game, TreeMarginalGame):
            values = game.first_last_values(X)
        else:
            values = game(X, np.broadcast_to(queries, (len(X), *queries.shape)))
        first, last, full, empty = first_last_contributions(values)
        if isinstance(game, TreeMarginalGame) and not game.matches_model:
            # the explained v(full) is the model's rounded output (float32, or the
            # logit of a clipped probability), which the attributions add up to
            full = self._grand_game.grand_and_empty(X)[0]
        if self._empty_value is not None:  # the explained game's, when constant
            empty = np.broadcast_to(self._empty_value, full.shape)
        contributions = np.concatenate([first, last], axis=2)
        return full, empty, contributions, len(queries)

    def _steps_share(self, rows):
        """Share of small one-feature moves that leave ``v(full)`` exactly unchanged.

        Up to ``STEP_PROBE_MOVES`` (row, feature) pairs of the first
        ``STEP_PROBE_ROWS`` rows, each feature moved by ``1e-4`` of its standard
        deviation: a tree ensemble's output almost never changes (its Shapley values
        are step functions, which the encoding fits), a smooth model's or a network
        surrogate's almost always does.
        """
        rows = rows[:STEP_PROBE_ROWS]
        n, n_features = rows.shape
        if not n:
            return 0.0
        moves = np.arange(min(STEP_PROBE_MOVES, n * n_features))
        row, feature = moves % n, (moves // n) % n_features
        moved = rows[row]
        moved[moves, feature] += 1e-4 * self._scale[feature]
        full, _, _ = self._grand_and_empty(np.vstack([rows, moved]))
        return float(np.mean(np.all(full[n:] == full[row], axis=-1)))

    def _network_sizes(self, expected, marginal):
        """``(hidden_layer_sizes, batch_size)`` with ``"auto"`` resolved: larger
        when the explainer trains on a small game's ``expected`` loss, larger still
        on the marginal game's."""
        hidden, batch = self.hidden_layer_sizes, self.batch_size
        auto_hidden, auto_batch = HIDDEN_LAYER_SIZES, BATCH_SIZE
        if marginal:
            auto_hidden, auto_batch = HIDDEN_LAYER_SIZES_MARGINAL, BATCH_SIZE_MARGINAL
        elif expected:
            auto_hidden, auto_batch = HIDDEN_LAYER_SIZES_EXPECTED, BATCH_SIZE_EXPECTED
        hidden = auto_hidden if isinstance(hidden, str) else hidden
        batch = auto_batch if isinstance(batch, str) else batch
        return tuple(int(h) for h in hidden), int(batch)

    def _n_cached_coalitions(self, m):
        """Coalitions per row evaluated once before training (0: fresh every batch)."""
        n_cached = self.n_cached_coalitions
        if n_cached is None or isinstance(n_cached, str) or not int(n_cached):
            return 0  # "auto" (validated in _check_params), None or 0
        n_cached = max(int(n_cached), m)
        return n_cached + n_cached % 2

    def _standardize(self, X):
        return ((X - self._mean) / self._scale).astype(np.float32)

    def _standardize_column(self, values, j):
        """Values of column ``j`` as :meth:`_standardize` maps them."""
        return ((values - self._mean[j]) / self._scale[j]).astype(np.float32)

    # -- inference -------------------------------------------------------------------
    def _values_for_rows(self, X):
        """``(v(full), v(∅), contributions or None, evaluations per row)``, from one
        call (a surrogate rounds ``v(full)`` by the shape of its products)."""
        if self._contributions_game is not None and len(X):
            return self._first_last_values(X)
        full, empty, evaluations = self._grand_and_empty(X)
        return full, empty, None, evaluations

    def _explained_output(self, X):
        return self._values_for_rows(X)[0]

    def _estimate(self, X):
        full, empty, contributions, evaluations = self._values_for_rows(X)
        total = full - empty
        d = self.game_.n_players
        if d < 2 or len(X) == 0:
            values = total[:, None, :].copy()
        else:
            param = next(self.module_.parameters())
            if contributions is not None:
                contributions = torch.as_tensor(
                    contributions / self._output_scale,
                    dtype=torch.float32,
                    device=param.device,
                )
            with torch.no_grad(), inference_threads(len(X)):
                phi = self.module_(
                    torch.as_tensor(self._standardize(X), device=param.device),
                    torch.as_tensor(total, dtype=torch.float32, device=param.device),
                    contributions,
                )
            values = phi.double().cpu().numpy()
            values += (total - values.sum(axis=1))[:, None, :] / d
        return ShapleyValues(values, np.array(empty), np.full(len(X), evaluations))


def _split_thresholds(estimator, rows, max_steps):
    """Every feature's numeric split thresholds in ``estimator``, or None.

    None unless ``estimator`` (or the model in a ``FrozenEstimator``) is a tree
    ensemble :func:`~sklearn_shapley.tree.flatten_ensemble` reads, with numeric splits
    only, on ``rows``' columns. A row goes left at a split when ``x_j <= threshold``
    (in the model's precision), so the model's output, and any game's Shapley values
    built on it, are constant between consecutive thresholds. A feature with more
    than ``max_steps`` thresholds keeps those nearest to ``max_steps`` quantiles of
    its values in ``rows``.
    """
    model = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    try:
        flat = flatten_ensemble(model)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return None  # not a tree ensemble the package reads, or not fitted
    n_features = rows.shape[1]
    internal = flat.feature >= 0
    if flat.n_features != n_features or np.any(
        flat.split_kind[internal] != NUMERIC_SPLIT
    ):
        return None
    thresholds = []
    for j in range(n_features):
        t = np.unique(flat.threshold[internal & (flat.feature == j)])
        if len(t) > max_steps:
            quantiles = np.quantile(rows[:, j], np.linspace(0.0, 1.0, max_steps))
            nearest = np.searchsorted(t, quantiles).clip(1, len(t) - 1)
            below = quantiles - t[nearest - 1] < t[nearest] - quantiles
            t = np.unique(t[nearest - below])
        thresholds.append(t)
    return thresholds


def _positive_int(value):
    """Whether ``value`` is an int (not a bool) of at least 1."""
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value >= 1
    )


def _auto_or_positive_int(value):
    """Whether ``value`` is ``"auto"`` or an int (not a bool) of at least 1."""
    if isinstance(value, str):
        return value == "auto"
    return _positive_int(value)


def _kernel_coalitions(n_players):
    """Every coalition but the empty and full ones, and its Shapley-kernel
    probability ``(d − 1) / (C(d, k) k (d − k))`` normalised to sum to 1."""
    masks = all_coalitions(n_players)[1:-1]
    sizes = masks.sum(axis=1)
    per_size = shapley_kernel_size_weights(n_players)[sizes - 1]
    counts = np.array([math.comb(n_players, int(k)) for k in sizes])
    return masks, (per_size / counts).astype(np.float32)


def _expected_loss_statistics(game, rows, empty, kernel, max_values=2**22):
    """``(cross, square)`` of the expected FastSHAP loss for ``rows``
    (:func:`~sklearn_shapley.amortized._nets.kernel_statistics`), ``game`` evaluated on
    every coalition of ``kernel`` (``(masks, probabilities)``), relative to ``empty``
    ``(n, K)``, in row chunks whose (row, coalition) pairs hold at most
    ``max_values`` feature values.

    A :class:`~sklearn_shapley.tree._marginal.TreeMarginalGame` (whose ``v(∅)`` is
    ``empty``) gives ``cross`` and the exact Shapley values ``φ`` from its tables
    instead, without evaluating any coalition; ``square``, which needs every
    coalition's value, is then replaced by ``2 φᵀ cross − φᵀ A φ``, which makes the
    loss at ``φ`` zero: a constant per row, so the gradients and the minimiser do
    not change and the loss reads as the excess over the exact values'.
    """
    masks, weights = kernel
    if isinstance(game, TreeMarginalGame):
        cross, phi = game.kernel_cross(rows), game.shapley_values(rows)
        gram = kernel_gram(masks, weights)
        square = 2 * np.einsum("ndk,ndk->nk", phi, cross) - np.einsum(
            "ndk,de,nek->nk", phi, gram, phi
        )
        return cross, square
    chunk = max(1, max_values // (len(masks) * rows.shape[1]))
    cross, square = [], []
    for start in range(0, len(rows), chunk):
        stop = start + chunk
        targets = game(rows[start:stop], masks) - empty[start:stop, None, :]
        c, q = kernel_statistics(targets, masks, weights)
        cross.append(c)
        square.append(q)
    if not cross:
        K = empty.shape[-1]
        return np.zeros((0, masks.shape[1], K)), np.zeros((0, K))
    return np.concatenate(cross), np.concatenate(square)


def _value_scale(total):
    """Typical size of the attributions: the RMS of ``v(full) − v(∅)`` (1 if 0)."""
    scale = float(np.sqrt(np.mean(np.square(total)))) if total.size else 0.0
    return scale if scale > 1e-12 else 1.0


class SampledMarginalGame(Game):
    """Unbiased, cheap estimates of a :class:`MarginalGame`'s values, for training.

    ``v_x(S) = mean_b link(f(x_S, b_{¬S}))`` is estimated with ``n_samples`` background
    rows drawn at random for every (row, coalition) instead of the whole background
    (:meth:`MarginalGame.sampled`); ``v(∅)`` is the exact constant ``empty_value``
    and ``v(full) = link(f(x))`` is exact anyway. The FastSHAP loss is quadratic in
    the target, so an unbiased target leaves its minimiser (the Shapley value of the
    marginal game) unchanged and only adds variance, while each value costs
    ``n_samples`` model evaluations instead of ``n_background``: the explainer can
    then be trained on fresh coalitions and augmented rows like the other games.
    ``control`` (:meth:`MarginalGame.additive_control`) takes the noise of the
    model's additive part out of the estimates, still unbiased.
    """

    def __init__(self, game, n_samples, empty_value, seed, control=None):
        self.game = game
        self.control = control
        self.n_samples = int(n_samples)
        self.empty_value = np.asarray(empty_value, dtype=np.float64)
        self.n_players = game.n_players
        self.n_outputs = game.n_outputs
        self.rng = np.random.default_rng(seed)

    def __call__(self, X, masks):
        values = self.game.sampled(
            X, masks, self.n_samples, self.rng, control=self.control
        )
        empty = ~np.asarray(masks, dtype=bool).any(axis=-1)
        values[np.broadcast_to(empty, values.shape[:2])] = self.empty_value
        return values
