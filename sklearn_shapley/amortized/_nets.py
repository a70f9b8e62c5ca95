"""PyTorch modules and skorch nets shared by the amortized explainers.

- :func:`make_mlp`: a ReLU multilayer perceptron.
- :class:`MaskedModule`: ``g(x ⊙ S, S)``, a network that sees the features of the
  players in a coalition ``S`` (the others set to 0) with the mask appended.
- :class:`ShapleyModule`: ``φ(x) ∈ R^{d × K}`` with the efficiency normalization as its
  output layer.
- :class:`PiecewiseLinearLayer`: a linear layer on the features' positions in their
  quantile bins (:func:`quantile_bin_edges`), or on steps at split thresholds,
  computed by table lookup.
- :class:`SurrogateNet`: a skorch ``NeuralNet`` training a :class:`MaskedModule` on
  fresh random coalitions (KL divergence to the model's probabilities, or MSE).
- :class:`ShapleyNet`: a skorch ``NeuralNet`` training a :class:`ShapleyModule` on the
  FastSHAP loss ``Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀ φ_k(x))²``, on coalitions evaluated
  before training, on the loss's expectation over every coalition (statistics
  computed once, :func:`kernel_gram`), or on fresh coalitions evaluated per batch.

Training coalitions are drawn by a :class:`numpy.random.Generator` owned by the net and
seeded by the caller; validation coalitions are fixed (part of the validation data), so
the validation loss that drives early stopping is comparable across epochs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.dataset import Dataset, unpack_data
from torch import nn
from torch.nn import functional as F

from ..games import first_last_masks
from ..sampling import shapley_kernel_size_weights

NORMALIZATIONS = ("additive", "multiplicative", "none")
#: Quantile bins per feature of the bin encoding by default.
AUTO_BINS = 32
#: Most split thresholds per feature in the step encoding (more are thinned).
MAX_STEPS = 256


def make_mlp(n_inputs, n_outputs, hidden_layer_sizes):
    """A ReLU MLP ``n_inputs → hidden_layer_sizes → n_outputs`` (linear output)."""
    sizes = [int(n_inputs), *(int(h) for h in hidden_layer_sizes)]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], int(n_outputs)))
    return nn.Sequential(*layers)


def quantile_bin_edges(X, n_bins):
    """Per column of ``X``, the distinct edges of ``n_bins`` quantile bins.

    Returns a list of increasing float arrays, at least two edges each (a constant
    column gets one bin of width 1).
    """
    X = np.asarray(X, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, int(n_bins) + 1)
    edges = []
    for column in X.T:
        e = np.unique(np.quantile(column, levels)) if len(column) else np.zeros(1)
        edges.append(e if len(e) > 1 else np.array([e[0], e[0] + 1.0]))
    return edges


def thin_thresholds(thresholds, values, max_steps=MAX_STEPS):
    """At most ``max_steps`` of sorted ``thresholds``: those nearest to as many
    quantiles of the feature's ``values``."""
    if len(thresholds) <= max_steps:
        return thresholds
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, max_steps))
    nearest = np.searchsorted(thresholds, quantiles).clip(1, len(thresholds) - 1)
    below = quantiles - thresholds[nearest - 1] < thresholds[nearest] - quantiles
    return np.unique(thresholds[nearest - below])


class _Bins(nn.Module):
    """Bin edges of every feature, padded to the most bins ``T`` for the search.

    Feature ``j`` with edges ``b_0 < … < b_{T_j}`` has bins ``t < T_j`` at
    ``lo[j, t] = b_t`` of width ``width[j, t]``; ``inner[j]`` holds ``b_1 … b_{T_j−1}``
    then ``+inf``, so that ``searchsorted`` gives a bin ``< T_j``.

    ``steps=True``: the edges are split thresholds ``c_1 < … < c_{m_j}`` (any number,
    none included), cutting the line into the ``T_j = m_j + 1`` bins
    ``(c_t, c_{t+1}]``; ``inner[j]`` holds the thresholds, ``lo`` and ``width`` are
    unused.
    """

    def __init__(self, edges, steps=False):
        super().__init__()
        self.steps = bool(steps)
        lengths = self.count(edges, steps)
        d, T = len(edges), max(lengths, default=1)
        lo = np.zeros((d, T), dtype=np.float32)
        width = np.ones((d, T), dtype=np.float32)
        inner = np.full((d, max(T - 1, 1)), np.inf, dtype=np.float32)
        for j, (e, t) in enumerate(zip(edges, lengths)):
            e = np.asarray(e, dtype=np.float64).reshape(-1)
            if t < 1 or np.any(np.diff(e) <= 0) or not np.all(np.isfinite(e)):
                raise ValueError(
                    "bin edges must be finite and increasing, two or more per "
                    "feature (split thresholds with steps=True: any number)"
                )
            if self.steps:
                inner[j, : t - 1] = e
            else:
                lo[j, :t] = e[:-1]
                width[j, :t] = np.diff(e)
                inner[j, : t - 1] = e[1:-1]
        self.n_features, self.n_bins = d, T
        self.register_buffer("lo", torch.as_tensor(lo))
        self.register_buffer("width", torch.as_tensor(width))
        self.register_buffer("inner", torch.as_tensor(inner))

    @staticmethod
    def count(edges, steps=False):
        """Bins of every feature: ``(n_features,)``."""
        extra = 1 if steps else -1
        return np.array([len(e) + extra for e in edges], dtype=np.int64)


class PiecewiseLinearLayer(_Bins):
    """A linear layer on the piecewise-linear encoding of the features, by lookup.

    The encoding (Gorishniy et al., 2022) turns feature ``j`` with bin edges
    ``b_0 < … < b_T`` into ``T`` values ``clip((x_j − b_t) / (b_{t+1} − b_t), 0, 1)``,
    the first bin not clipped below and the last not above: ``x_j`` is a linear
    function of its encoding (a network on it can still extrapolate linearly), while
    a ReLU layer on it places steps and kinks at the data's quantiles. The Shapley
    values of tree ensembles are piecewise constant in every feature, which an MLP
    on the raw values fits poorly.

    Below ``x_j``'s bin ``k`` every value of the encoding is 1, above it 0, so the
    layer's output is ``Σ_j c_j`` with ``c_j = Σ_{t<k} W_{j,t} + e_j W_{j,k}``
    (``e_j``: the position in bin ``k``): two rows of a table per feature instead of a
    product with the ``Σ_j T_j``-wide encoding (30 features × 32 bins: ~30x fewer
    operations). No bias.

    With ``steps=True`` the edges are split thresholds ``c_1 < … < c_m`` and the
    encoding is the step (thermometer) one, ``[x_j > c_t]`` for every ``t``:
    ``c_j = Σ_{t<k} W_{j,t}`` with ``k`` the number of thresholds below ``x_j``, one
    table row per feature (:meth:`per_feature`). In training their sum over the
    features is the 0/1 encoding times the weights, one product forward and
    backward instead of the table's cumulative sums; without gradients (fewer
    operations for many rows), the table's. At a tree ensemble's own thresholds
    (a row goes left when ``x_j <= c``) its Shapley values, constant between them,
    are exactly representable.

    Parameters
    ----------
    edges : list of 1-D arrays
        Increasing bin edges per feature (:func:`quantile_bin_edges`), or split
        thresholds with ``steps=True`` (``FastSHAPExplainer`` reads a tree
        ensemble's).
    n_outputs : int
    fan_in : int, default=None
        Inputs of one output for the weights' initialisation,
        ``U(±1/sqrt(fan_in))`` like ``nn.Linear``; ``None``: all the bins.
    steps : bool, default=False
        Step encoding at thresholds instead of the piecewise-linear one.
    """

    def __init__(self, edges, n_outputs, fan_in=None, steps=False):
        super().__init__(edges, steps)
        lengths = self.count(edges, steps)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        bound = 1.0 / math.sqrt(fan_in or int(lengths.sum()))
        # one row per bin that exists, feature after feature (no padding: the
        # optimizer's work grows with the bins, not features x most bins)
        weight = torch.empty(int(lengths.sum()), int(n_outputs))
        self.weight = nn.Parameter(weight.uniform_(-bound, bound))
        self.register_buffer("offsets", torch.as_tensor(starts, dtype=torch.int64))
        self.register_buffer(
            "row_start", torch.as_tensor(np.repeat(starts, lengths), dtype=torch.int64)
        )
        if self.steps:  # per weight row: its feature, and the threshold x_j passes
            # (+inf for a feature's last row, in no sum)
            self.register_buffer(
                "step_feature",
                torch.as_tensor(np.repeat(np.arange(len(edges)), lengths)),
            )
            thresholds = [np.r_[np.asarray(e, dtype=np.float32), np.inf] for e in edges]
            self.register_buffer(
                "step_threshold",
                torch.as_tensor(
                    np.concatenate(thresholds or [[]]), dtype=torch.float32
                ),
            )

    def locate(self, x):
        """Every feature's table row ``(n, d)`` (its bin) and position ``e`` in it.

        ``e`` is None with ``steps``. The same for every layer on the same edges:
        compute once, pass to several.
        """
        xt = x.t().contiguous()
        if self.steps:  # thresholds < x_j: x_j <= c goes left, as in trees
            k = torch.searchsorted(self.inner, xt)
            return (k + self.offsets[:, None]).t(), None
        k = torch.searchsorted(self.inner, xt, right=True).clamp_(max=self.n_bins - 1)
        e = (xt - self.lo.gather(1, k)) / self.width.gather(1, k)
        return (k + self.offsets[:, None]).t(), e.t()

    def _table(self):
        """Rows ``Σ_{t<k} W_{j,t}``, then (piecewise-linear only) the rows ``W_{j,k}``."""
        before = torch.cumsum(self.weight, dim=0) - self.weight
        before = before - before[self.row_start]  # each feature's sums start at 0
        if self.steps:
            return before
        return torch.cat([before, self.weight])

    def forward(self, x, located=None):
        """``(n, n_outputs)`` for rows ``x (n, n_features)``."""
        if self.steps and torch.is_grad_enabled() and self.weight.requires_grad:
            above = x[:, self.step_feature] > self.step_threshold
            return above.to(self.weight.dtype) @ self.weight
        index, e = self.locate(x) if located is None else located
        table = self._table()
        if e is None:
            return F.embedding_bag(index, table, mode="sum")
        return F.embedding_bag(
            torch.cat([index, index + table.shape[0] // 2], dim=1),
            table,
            per_sample_weights=torch.cat([torch.ones_like(e), e], dim=1),
            mode="sum",
        )

    def per_feature(self, x, located=None):
        """The terms ``c_j``: ``(n, n_features, n_outputs)``."""
        index, e = self.locate(x) if located is None else located
        table = self._table()
        start = F.embedding(index, table)
        if e is None:
            return start
        return start.addcmul_(
            e.unsqueeze(2), F.embedding(index + len(table) // 2, table)
        )


class PlayerwiseMLP(nn.Module):
    """One small MLP per player on that player's own features: ``h_p(x_p) ∈ R^K``.

    Parameters
    ----------
    membership : array-like of bool, shape (n_players, n_features)
    n_outputs : int
    hidden_layer_sizes : tuple of int
        Hidden widths of every player's network.
    bin_edges : list of 1-D arrays or None, default=None
        When given, a player's first layer is a :class:`PiecewiseLinearLayer` on its
        features' bins instead of a linear layer on their values.
    bin_steps : bool, default=False
        ``bin_edges`` are split thresholds, encoded as steps.
    n_player_inputs : int, default=0
        Inputs of every player besides its features (``forward``'s ``extra``,
        ``(n, n_players, n_player_inputs)``), added to its first layer.
    """

    def __init__(
        self,
        membership,
        n_outputs,
        hidden_layer_sizes=(32,),
        bin_edges=None,
        bin_steps=False,
        n_player_inputs=0,
    ):
        super().__init__()
        membership = np.asarray(membership, dtype=bool)
        n_players = membership.shape[0]
        width = int(membership.sum(axis=1).max())
        index = np.zeros((n_players, width), dtype=np.int64)
        valid = np.zeros((n_players, width), dtype=np.float32)
        for p, row in enumerate(membership):
            cols = np.flatnonzero(row)
            index[p, : len(cols)] = cols
            valid[p, : len(cols)] = 1.0
        self.register_buffer("index", torch.as_tensor(index))
        self.register_buffer("valid", torch.as_tensor(valid))
        sizes = [width, *(int(h) for h in hidden_layer_sizes), int(n_outputs)]
        self.binned = None
        if bin_edges is not None:
            # the first layer of every player: its features' terms, summed
            bins = _Bins.count(bin_edges, bin_steps)
            fan_in = int((membership * bins).sum(axis=1).max())
            self.binned = PiecewiseLinearLayer(
                bin_edges, sizes[1], fan_in=fan_in, steps=bin_steps
            )
            # None: player p is feature p, nothing to sum
            identity = membership.shape[0] == membership.shape[1] and np.array_equal(
                membership, np.eye(len(membership), dtype=bool)
            )
            self.register_buffer(
                "membership",
                None if identity else torch.as_tensor(membership, dtype=torch.float32),
            )
        self.extra_weight = None
        if n_player_inputs:
            bound = 1.0 / math.sqrt(int(n_player_inputs))
            self.extra_weight = nn.Parameter(
                torch.empty(n_players, int(n_player_inputs), sizes[1]).uniform_(
                    -bound, bound
                )
            )
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(n_in)
            if i or self.binned is None:
                self.weights.append(
                    nn.Parameter(
                        torch.empty(n_players, n_in, n_out).uniform_(-bound, bound)
                    )
                )
            self.biases.append(
                nn.Parameter(torch.empty(n_players, n_out).uniform_(-bound, bound))
            )

    def forward(self, x, located=None, extra=None):
        """``(n, n_players, n_outputs)`` for rows ``x (n, n_features)``.

        ``located``: ``PiecewiseLinearLayer.locate(x)`` on the same edges, if known;
        ``extra``: the players' other inputs (``n_player_inputs``).
        """
        bias = self.biases[0].unsqueeze(1)
        if self.binned is None:
            # (players, n, width), contiguous: bmm copies strided operands.
            h = self.valid.unsqueeze(2) * x.t()[self.index]
            h = self._linear(h.transpose(1, 2).contiguous(), self.weights[0], bias)
        else:
            terms = self.binned.per_feature(x, located)  # (n, features, width)
            n, n_features, width = terms.shape
            terms = terms.transpose(0, 1)
            if self.membership is None:
                h = terms + bias
            else:  # summed per player
                h = self.membership @ terms.reshape(n_features, n * width)
                h = h.view(-1, n, width).add_(bias)
        if self.extra_weight is not None:
            h = h.baddbmm_(extra.transpose(0, 1), self.extra_weight)
        # the binned layer, when there is one, has no entry in weights
        rest = list(self.weights)[1:] if self.binned is None else self.weights
        for weight, bias in zip(rest, self.biases[1:]):
            h = self._linear(h.relu_(), weight, bias.unsqueeze(1))
        return h.transpose(0, 1)

    @staticmethod
    def _linear(h, weight, bias):
        """``h (players, n, a) @ weight (players, a, b) + bias (players, 1, b)``."""
        if h.shape[2] == 1:  # one input per player: a broadcast product
            return torch.addcmul(bias, h, weight)
        # bmm, then the bias in place: faster than a broadcast baddbmm
        return torch.bmm(h, weight).add_(bias)


class MaskedModule(nn.Module):
    """``g(x ⊙ S, S)``: an MLP on the masked (standardised) features and the mask.

    Parameters
    ----------
    membership : array-like of bool, shape (n_players, n_features)
        Which feature columns belong to each player.
    n_outputs : int
        Outputs of the network (logits of the classes, or regression targets).
    hidden_layer_sizes : tuple of int
        Widths of the hidden ReLU layers.
    """

    def __init__(self, membership, n_outputs, hidden_layer_sizes=(128, 128)):
        super().__init__()
        membership = torch.as_tensor(np.asarray(membership), dtype=torch.float32)
        self.register_buffer("membership", membership)
        n_players, n_features = membership.shape
        self.mlp = make_mlp(n_features + n_players, n_outputs, hidden_layer_sizes)

    def forward(self, x, mask):
        """Outputs ``(n, n_outputs)`` for rows ``x (n, n_features)`` and ``mask (n, d)``."""
        mask = mask.to(x.dtype)
        feature_mask = mask @ self.membership
        return self.mlp(torch.cat([x * feature_mask, mask], dim=1))

    def forward_rows(self, x, mask):
        """Outputs ``(n, m, n_outputs)`` for rows ``x (n, n_features)``, each under its
        own coalitions ``mask (n, m, d)``.

        Every product is batched by row (``torch.bmm``): a row's outputs come from
        products of one fixed shape wherever the row lies among the others. One
        product over all ``n * m`` pairs, as in :meth:`forward`, can round a row by
        its place in the batch (seen: 8e-8 on a value of order 1 when the rows were
        permuted, on some CPUs). Masks of 0/1 make ``mask @ membership`` exact.
        """
        mask = mask.to(x.dtype)
        h = torch.cat([x[:, None, :] * (mask @ self.membership), mask], dim=2)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                weight = layer.weight.T.expand(len(h), -1, -1)
                h = torch.bmm(h, weight).add_(layer.bias)
            else:
                h = layer(h)
        return h


class ShapleyModule(nn.Module):
    """``φ(x) ∈ R^{n_players × n_outputs}`` with an efficiency normalization layer.

    Parameters
    ----------
    n_features, n_players, n_outputs : int
    hidden_layer_sizes : tuple of int
    normalization : {"additive", "multiplicative", "none"}
        Applied when ``total = v(full) − v(∅)`` is given to ``forward``: additive
        ``φ + (total − 1ᵀφ)/d``, multiplicative ``φ · total / 1ᵀφ``, or none.
    output_scale : float, default=1.0
        The MLP's outputs are multiplied by it, so that a network initialised with
        outputs of order 1 starts at the scale of the game's values.
    membership : array-like of bool, shape (n_players, n_features), default=None
        Players' columns, for the playerwise branch.
    playerwise_layer_sizes : tuple of int or None, default=None
        Hidden widths of a :class:`PlayerwiseMLP` added to the joint MLP's output.
    bin_edges : list of 1-D arrays or None, default=None
        Quantile bin edges per feature: a :class:`PiecewiseLinearLayer` is added to
        the joint MLP's first layer, and replaces the first layer of every player's
        MLP.
    bin_steps : bool, default=False
        ``bin_edges`` are split thresholds, encoded as steps.
    first_last : bool, default=False
        ``forward`` takes every player's first and last marginal contributions
        ``v({i}) − v(∅)`` and ``v(N) − v(N∖{i})`` (:func:`first_last_contributions`,
        divided by ``output_scale``), inputs of the player's own first layer, and of
        the joint MLP's where they at most double its cost (``2 d K`` at most its
        first hidden width: not for many players and outputs, where they gain
        little); the networks' output is a correction to their average (the Shapley
        value of a game whose interactions involve two players at most), from which
        the networks start (their last layers are initialised to zero).
    pairs : bool, default=False
        With ``first_last``, the contributions have a third part per output: the
        pairs' correction (:func:`pair_correction`), added to the average, which
        is then the Shapley value of a game whose interactions involve at most
        four players.
    """

    def __init__(
        self,
        n_features,
        n_players,
        n_outputs,
        hidden_layer_sizes=(128, 128),
        normalization="additive",
        output_scale=1.0,
        membership=None,
        playerwise_layer_sizes=None,
        bin_edges=None,
        bin_steps=False,
        first_last=False,
        pairs=False,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
            )
        self.n_players = int(n_players)
        self.n_outputs = int(n_outputs)
        self.normalization = normalization
        self.first_last = bool(first_last)
        self.n_parts = (3 if pairs else 2) if first_last else 0
        # the contributions (first, last[, pairs]) of every player and output join
        # the rows while they at most double the joint MLP's first layer
        n_contributions = self.n_parts * self.n_players * self.n_outputs
        width = (tuple(hidden_layer_sizes) or (self.n_players * self.n_outputs,))[0]
        self.joint = self.first_last and n_contributions <= width
        n_inputs = n_features + (n_contributions if self.joint else 0)
        self.mlp = make_mlp(n_inputs, n_players * n_outputs, hidden_layer_sizes)
        self.register_buffer("output_scale", torch.tensor(float(output_scale)))
        self.binned = None
        if bin_edges is not None:
            self.binned = PiecewiseLinearLayer(
                bin_edges, self.mlp[0].out_features, steps=bin_steps
            )
        self.playerwise = None
        if playerwise_layer_sizes is not None:
            self.playerwise = PlayerwiseMLP(
                membership,
                n_outputs,
                playerwise_layer_sizes,
                bin_edges,
                bin_steps,
                n_player_inputs=self.n_parts * self.n_outputs,
            )
        if first_last:  # starts at the average of the contributions exactly
            last = list(self.mlp[-1].parameters())
            if len(self.mlp) == 1 and self.binned is not None:  # no hidden layer
                last.append(self.binned.weight)
            player = self.playerwise
            if player is not None:
                last += (
                    [player.biases[-1], player.weights[-1]]
                    if len(player.weights)
                    else [player.biases[-1], player.binned.weight]
                )
                if len(player.biases) == 1 and player.extra_weight is not None:
                    last.append(player.extra_weight)  # no hidden layer either
            with torch.no_grad():
                for parameter in last:
                    parameter.zero_()

    def forward(self, x, total=None, contributions=None):
        """``φ (n, n_players, n_outputs)``, normalised when ``total (n, K)`` is given.

        ``contributions (n, n_players, n_parts * n_outputs)``: the first then the
        last marginal contributions (then the pairs' correction), divided by
        ``output_scale`` (``first_last`` only).
        """
        if self.joint:
            # in float64: a float32 product rounds a row by its place in the batch,
            # and the contributions, this layer's largest inputs, would make a row's
            # explanation depend on the rows explained with it
            first_layer = self.mlp[0]
            h = F.linear(
                torch.cat([x, contributions.flatten(1)], dim=1).double(),
                first_layer.weight.double(),
                first_layer.bias.double(),
            ).to(x.dtype)
        else:
            h = self.mlp[0](x)
        located = None
        if self.binned is not None:
            located = self.binned.locate(x)
            h = h + self.binned(x, located)
        phi = self.mlp[1:](h).view(-1, self.n_players, self.n_outputs)
        if self.playerwise is not None:
            phi = phi + self.playerwise(x, located, contributions)
        if self.first_last:
            first, last, *pairs = contributions.split(self.n_outputs, dim=2)
            phi = phi + 0.5 * (first + last) + sum(pairs)
        phi = phi * self.output_scale
        return normalize(phi, total, self.normalization)


def first_last_contributions(values):
    """``(first, last, full, empty)`` from ``values (n, 2d + 2, K)`` of a game on
    :func:`first_last_masks`: ``first (n, d, K) = v({i}) − v(∅)``,
    ``last = v(N) − v(N∖{i})``, ``full = v(N)``, ``empty = v(∅)`` ``(n, K)``."""
    d = (values.shape[1] - 2) // 2
    full, empty = values[:, 2 * d], values[:, 2 * d + 1]
    first = values[:, :d] - empty[:, None]
    last = full[:, None] - values[:, d : 2 * d]
    return first, last, full, empty


def contribution_inputs(game, X, pairs=False):
    """``(contributions (n, d, n_parts K), full (n, K), empty (n, K))`` of rows ``X``
    from ``game``: the first and last contributions, then with ``pairs`` the
    pairs' correction (:func:`pair_correction`), as :class:`ShapleyModule` takes
    them (before the division by its ``output_scale``)."""
    values, pair_sums = game.contribution_values(X, pairs)
    first, last, full, empty = first_last_contributions(values)
    parts = [first, last]
    if pairs:
        parts.append(pair_correction(*pair_sums))
    return np.concatenate(parts, axis=2), full, empty


def pair_correction(s, t):
    """``(s − t) / 12 (n, d, K)``: what makes ``(first + last) / 2`` the Shapley value
    of a game whose interactions involve at most four players.

    ``s`` and ``t`` sum each player ``i``'s pairwise interactions at the empty and
    at the full coalition (:func:`~sklearn_shapley.games.pair_interaction_sums`).
    In Möbius terms, a pair's term is in both once; a term of ``k ≥ 3`` players
    with ``i`` is in ``t`` ``k − 1`` times and not in ``s``, so the average's
    ``1/2`` of it becomes ``1/2 − (k − 1)/12``: the Shapley value's ``1/k`` for
    ``k ≤ 4``.
    """
    return (s - t) / 12


def kernel_gram(masks, weights):
    """``A = Σ_S p_S 1_S 1_Sᵀ (d, d)`` over coalitions ``masks (m, d)`` with
    probabilities ``weights (m,)``: the quadratic term of the expected loss."""
    masks = np.asarray(masks, dtype=np.float64)
    return (masks.T * np.asarray(weights, dtype=np.float64)) @ masks


def coalition_moments(masks, values):
    """``(gram (n, d, d), cross (n, d, K))`` in float64: ``mean_S 1_S 1_Sᵀ`` and
    ``mean_S 1_S t_Sᵀ`` over each row's coalitions ``masks (n, m, d)`` with
    values ``values (n, m, K)``, the terms of its sampled loss in ``φ``."""
    m = masks.shape[1]
    members = np.asarray(masks, dtype=np.float64).transpose(0, 2, 1)  # (n, d, m)
    gram = members @ members.transpose(0, 2, 1) / m
    return gram, members @ np.asarray(values, dtype=np.float64) / m


def sample_statistics(masks, values):
    """``(gram (n, d, d), target (n, d, K))`` of each row's sampled loss: over its
    coalitions ``masks (n, m, d)`` with values ``values (n, m, K)``,
    ``mean_S Σ_k (t_Sk − 1_Sᵀφ_k)² = Σ_k (φ_k − φ*_k)ᵀ gram (φ_k − φ*_k)`` plus a
    constant, with ``gram = mean_S 1_S 1_Sᵀ`` and ``φ*`` its least-squares
    solution; a training step then costs the same for any ``m``."""
    gram, cross = coalition_moments(masks, values)
    return gram.astype(np.float32), _psd_solve(gram, cross).astype(np.float32)


def _psd_solve(gram, cross):
    """``φ*`` with ``gram φ* = cross`` for positive semi-definite ``gram (n, d, d)``
    and ``cross (n, d, K)`` in its range, by Cholesky factors of ``gram`` plus a
    ridge of ``1e-12`` of its mean diagonal.

    A gram is singular where its coalitions do not tell some players apart (often,
    with Shapley-kernel samples of many players); the ridge moves ``φ*`` by about
    ``1e-12`` of its size within the range and picks a small solution in the null
    space, where the loss does not depend on it. A pseudo-inverse costs an
    eigendecomposition per row and keeps rounding noise along near-null
    directions; it is the fallback for rows whose factorisation fails all the same.
    """
    d = gram.shape[-1]
    ridge = 1e-12 * np.trace(gram, axis1=-2, axis2=-1) / d
    G = torch.from_numpy(gram + ridge[..., None, None] * np.eye(d))
    factor, info = torch.linalg.cholesky_ex(G)
    best = torch.cholesky_solve(torch.from_numpy(np.asarray(cross)), factor).numpy()
    failed = info.numpy() > 0
    if failed.any():
        best[failed] = np.linalg.pinv(gram[failed], hermitian=True) @ cross[failed]
    return best


def pooled_bytes(n_players, n_outputs, n_coalitions):
    """``(bytes, statistics)``: what a row copy's ``n_coalitions`` evaluated
    coalitions take in memory, as :func:`sample_statistics` where a training step
    on them costs no more than on the coalitions (``d <= m``), else as boolean
    masks and float32 values."""
    d, K, m = n_players, n_outputs, n_coalitions
    if d <= m:
        return 4 * d * (d + K), True
    return m * (d + 4 * K), False


def shapley_kernel_gram(n_players):
    """:func:`kernel_gram` of every coalition but the empty and full ones under the
    Shapley kernel, in closed form: ``A_ii = E[k] / d`` and
    ``A_ij = E[k (k − 1)] / (d (d − 1))`` over the kernel's sizes ``k``."""
    d = int(n_players)
    sizes = np.arange(1, d, dtype=np.float64)
    p = shapley_kernel_size_weights(d)
    off = float(p @ (sizes * (sizes - 1))) / (d * (d - 1))
    return np.full((d, d), off) + np.eye(d) * (float(p @ sizes) / d - off)


def augment_rows(
    rows,
    rng,
    *,
    donors,
    membership,
    swap_probability,
    input_noise,
    feature_scale,
):
    """Moves of ``rows`` to rows near them, in standard deviations
    (``feature_scale``): the explainer is trained there too, to generalise from a
    few hundred rows.

    Each player (columns: ``membership``, ``(n_players, n_features)``) of each row
    takes, with probability ``swap_probability``, its features' values in a random
    row of ``donors`` (all of a group's features from the same row); then Gaussian
    noise of ``input_noise`` standard deviations (``feature_scale``) is added.
    """
    n = len(rows)
    shift = np.zeros(rows.shape)
    if swap_probability:
        n_players, n_features = membership.shape
        swap = rng.random((n, n_players)) < swap_probability
        picks = rng.integers(len(donors), size=(n, n_players))
        owner = membership.argmax(axis=0)  # each feature's player
        in_player = membership.any(axis=0)
        swap = swap[:, owner] & in_player
        swapped = donors[picks[:, owner], np.arange(n_features)]
        shift += np.where(swap, swapped - rows, 0.0) / feature_scale
    if input_noise:
        shift += input_noise * rng.standard_normal(rows.shape)
    return shift


def normalize(phi, total, normalization):
    """Project ``phi (n, d, K)`` onto ``1ᵀφ = total (n, K)`` (see ShapleyModule)."""
    if total is None or normalization == "none":
        return phi
    gap = total - phi.sum(dim=1)
    if normalization == "additive":
        return phi + gap.unsqueeze(1) / phi.shape[1]
    current = phi.sum(dim=1)
    safe = torch.where(current.abs() < 1e-12, torch.full_like(current, 1e-12), current)
    return phi * (total / safe).unsqueeze(1)


class _CoalitionNet(NeuralNet):
    """A ``NeuralNet`` whose training batches get fresh random coalitions.

    ``sampler`` is a :class:`~sklearn_shapley.sampling.CoalitionSampler`-like object
    with ``sample(n, rng)``; ``mask_seed`` seeds the generator of the training
    coalitions (re-created at the start of every ``fit``).
    """

    def __init__(self, *args, sampler=None, mask_seed=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler = sampler
        self.mask_seed = mask_seed

    def initialize(self):
        super().initialize()
        self.mask_rng_ = np.random.default_rng(self.mask_seed)
        return self

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        Xi = self.add_coalitions(dict(Xi), yi)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def add_coalitions(self, Xi, yi):  # pragma: no cover - interface
        raise NotImplementedError


class SurrogateNet(_CoalitionNet):
    """Trains a :class:`MaskedModule` to imitate a model with features held out.

    The batch is ``{"x": standardised rows}`` with targets ``y`` the model's
    probabilities (``task="classification"``: loss ``KL(f(x) ‖ softmax(g(x_S)))``) or
    its standardised predictions (``task="regression"``: MSE). A fresh coalition is
    drawn for every training row; validation batches carry fixed coalitions in
    ``"mask"``. Extra parameters: ``task``, ``sampler``, ``mask_seed``, and
    ``p_full`` / ``p_empty``, the shares of training rows given the full and the empty
    coalition (which the Shapley kernel never draws, though the surrogate's game uses
    both).
    """

    def __init__(self, *args, task="regression", p_full=0.1, p_empty=0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        self.p_full = p_full
        self.p_empty = p_empty

    def add_coalitions(self, Xi, yi):
        n = len(Xi["x"])
        masks = surrogate_masks(
            self.sampler, n, self.mask_rng_, self.p_full, self.p_empty
        )
        Xi["mask"] = torch.as_tensor(masks, device=Xi["x"].device)
        return Xi

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = y_true.to(y_pred.device, y_pred.dtype)
        if self.task == "classification":
            log_q = F.log_softmax(y_pred, dim=1)
            return F.kl_div(log_q, y_true, reduction="sum") / len(y_pred)
        return F.mse_loss(y_pred, y_true, reduction="sum") / len(y_pred)


def surrogate_masks(sampler, n, rng, p_full, p_empty):
    """``n`` coalitions from ``sampler``, a share of them replaced by full / empty."""
    masks = sampler.sample(n, rng)[:n]
    u = rng.random(n)
    masks[u < p_full] = True
    masks[(u >= p_full) & (u < p_full + p_empty)] = False
    return masks


class ShapleyNet(_CoalitionNet):
    """Trains a :class:`ShapleyModule` on the FastSHAP loss.

    Batches are dicts with ``"x"`` (standardised rows), ``"empty"`` and ``"total"``
    (``v(∅)`` and ``v(full) − v(∅)`` per row and output), and ``"contributions"``
    when the module takes the first and last contributions. Their targets come from
    one of three sources:

    - ``"target"`` ``(n, d, K)``: ``φ*``, the minimiser of the expected loss over
      every coalition with its Shapley-kernel probability (the game's exact
      Shapley values, or from
      :meth:`~sklearn_shapley.games.Game.kernel_statistics`), which is
      ``Σ_k (φ_k − φ*_k)ᵀ A (φ_k − φ*_k)`` up to a constant with ``A = gram``
      (:func:`kernel_gram`); with a ``"gram"`` ``(n, d, d)`` of each row's own, the
      same loss over sampled coalitions evaluated before training
      (:func:`sample_statistics`). A difference from the optimum, it is accurate
      in float32;
    - ``"masks"`` ``(n, m, d)`` and ``"values"`` ``(n, m, K)``, coalitions evaluated
      before training (fewer than the players, :func:`pooled_bytes`): the mean
      squared error over them;
    - neither: ``n_coalitions`` coalitions per row are drawn (paired when the
      sampler is) and ``game`` is evaluated on them for the batch's rows
      (``"rows"``, the raw rows). With ``swap_probability`` / ``input_noise`` the
      rows are first moved (:func:`augment_rows`, players' columns:
      ``membership``) and ``v(full)``, ``v(∅)`` (and the contributions, from
      ``first_last_game``) evaluated at the new rows, so the targets stay exact.

    ``epoch_data``, an iterator of training data dicts, gives every epoch after
    the first its own (new copies of the rows with their targets) until it ends.

    The loss is ``mean_{x,S} Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀφ_k(x))²`` plus
    ``efficiency_lambda · mean_x Σ_k (1ᵀφ_k(x) − v_xk(full) + v_xk(∅))²``, less
    the batch's mean ``"floor"`` (per row) when given: the least loss an efficient
    ``φ`` reaches on those targets, so that the loss reads as the excess over it.
    """

    def __init__(
        self,
        *args,
        game=None,
        n_coalitions=32,
        efficiency_lambda=0.0,
        input_noise=0.0,
        swap_probability=0.0,
        feature_scale=None,
        donor_rows=None,
        membership=None,
        gram=None,
        first_last_game=None,
        epoch_data=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.epoch_data = epoch_data
        self.game = game
        self.first_last_game = first_last_game
        self.n_coalitions = n_coalitions
        self.efficiency_lambda = efficiency_lambda
        self.input_noise = input_noise
        self.swap_probability = swap_probability
        self.feature_scale = feature_scale
        self.donor_rows = donor_rows
        self.membership = membership
        self.gram = gram

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if training and len(self.history) > 1 and self.epoch_data is not None:
            data = next(self.epoch_data, None)
            if data is not None:
                iterator.dataset = Dataset(data, None)
        return super().run_single_epoch(
            iterator, training, prefix, step_fn, **fit_params
        )

    def add_coalitions(self, Xi, yi):
        if "target" in Xi or "masks" in Xi:  # evaluated before training
            return Xi
        device = Xi["x"].device
        masks, values = self._fresh_coalitions(Xi)
        Xi["masks"] = torch.as_tensor(masks, device=device)
        Xi["values"] = torch.as_tensor(values, dtype=torch.float32, device=device)
        return Xi

    def _fresh_coalitions(self, Xi):
        rows = Xi["rows"].cpu().numpy()
        n, m = len(rows), self.n_coalitions
        masks = self.sampler.sample(n * m, self.mask_rng_)[: n * m]
        masks = masks.reshape(n, m, -1)
        if not (self.input_noise or self.swap_probability):
            return masks, self.game(rows, masks)
        device = Xi["x"].device
        shift = augment_rows(
            rows,
            self.mask_rng_,
            donors=self.donor_rows,
            membership=self.membership,
            swap_probability=self.swap_probability,
            input_noise=self.input_noise,
            feature_scale=self.feature_scale,
        )
        rows = rows + shift * self.feature_scale
        Xi["x"] = Xi["x"] + torch.as_tensor(shift, dtype=Xi["x"].dtype, device=device)
        d = masks.shape[2]
        ends = first_last_masks(d)[-2:]  # v(N), v(∅)
        values = self.game(
            rows, np.concatenate([masks, np.broadcast_to(ends, (n, 2, d))], axis=1)
        )
        full, empty = values[:, -2], values[:, -1]
        if self.first_last_game is not None:
            contributions, _, _ = contribution_inputs(
                self.first_last_game, rows, self.module_.n_parts == 3
            )
            scale = float(self.module_.output_scale)
            Xi["contributions"] = torch.as_tensor(
                contributions / scale,
                dtype=torch.float32,
                device=device,
            )
        Xi["empty"] = torch.as_tensor(empty, dtype=torch.float32, device=device)
        Xi["total"] = torch.as_tensor(full - empty, dtype=torch.float32, device=device)
        return masks, values[:, :m]

    def infer(self, x, **fit_params):
        x = {key: x[key] for key in ("x", "total", "contributions") if key in x}
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if "target" in X:
            loss = self._expected_loss(y_pred, X)
        else:
            loss = self._sampled_loss(y_pred, X)
        if "floor" in X:  # the loss of the best efficient φ: the excess remains
            loss = loss - X["floor"].to(loss.dtype).mean()
        if self.efficiency_lambda:
            gap = y_pred.sum(dim=1) - X["total"].to(y_pred.dtype)
            loss = loss + self.efficiency_lambda * (gap**2).sum(dim=1).mean()
        return loss

    def _expected_loss(self, y_pred, X):
        # Σ_k diff_kᵀ A diff_k as rows diff_kᵀ A: a product whose last dimension
        # is d, which batched products handle better than A diff's, whose last is
        # K (few outputs)
        diff = (y_pred - X["target"].to(y_pred.dtype)).transpose(1, 2)  # (n, K, d)
        if "gram" in X:  # each row's own (sampled coalitions)
            weighted = torch.bmm(diff, X["gram"].to(y_pred.dtype))
        else:
            gram = torch.as_tensor(self.gram, dtype=y_pred.dtype, device=y_pred.device)
            weighted = torch.matmul(diff, gram)
        return (diff * weighted).sum(dim=(1, 2)).mean()

    def _sampled_loss(self, y_pred, X):
        masks = X["masks"].to(y_pred.dtype)
        target = X["values"].to(y_pred.dtype) - X["empty"].to(y_pred.dtype)[:, None]
        pred = torch.einsum("nmd,ndk->nmk", masks, y_pred)
        return ((target - pred) ** 2).sum(dim=2).mean()
