"""The torch and skorch parts of InstaSHAP: a grouped GAM network, its loss, its net.

:class:`GroupedGAM` evaluates every component ``g_T(x_T)`` of the additive model
``F(x, S) = b + Σ_T 1[T ⊆ S] g_T(x_T)`` in one batched pass: the input columns of each
component are gathered into a ``(batch, n_components, width)`` tensor (padded to the
widest component and masked), and every layer is a stack of per-component weight
matrices applied with one batched matrix product (``torch.baddbmm``) over the
components axis. There is no Python loop over components.

:class:`GameLoss` compares ``F(x, S)`` with the masked teacher ``v_x(S)``: a scaled
squared error, or a Kullback-Leibler divergence between the probabilities the two
values stand for under the game's link. :class:`MaskedGAMNet` is the skorch
``NeuralNet`` that trains the module on that loss.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn
from torch.nn import functional as F_nn

__all__ = ["GroupedGAM", "GameLoss", "MaskedGAMNet", "TensorBatches"]

#: Links under which the values are log-probabilities or log-odds (for ``"kl"``).
KL_LINKS = ("logit", "log", "log_softmax")


def _as_tensor(values, dtype=torch.float32):
    return torch.as_tensor(np.asarray(values), dtype=dtype)


class GroupedGAM(nn.Module):
    """All components of an additive game model, evaluated as one grouped MLP.

    Parameters
    ----------
    component_columns : ndarray of int, shape (n_components, width)
        Input columns of each component, padded (with any valid index) to ``width``.
    column_mask : ndarray of bool, shape (n_components, width)
        True for the real (not padding) entries of ``component_columns``.
    membership : ndarray of bool, shape (n_components, n_players)
        ``membership[c, p]``: player ``p`` belongs to component ``c``.
    hidden_layer_sizes : tuple of int
        Hidden units of every component's MLP.
    n_outputs : int
        Outputs ``K`` of the game.
    base_value : ndarray of shape (n_outputs,)
        ``b``, the value of the empty coalition (a fixed buffer).
    output_scale : ndarray of shape (n_outputs,)
        Scale the last layer's outputs are multiplied by (the spread of the teacher).
    feature_mean, feature_scale : ndarray of shape (n_features,)
        Standardisation applied to the inputs.
    """

    def __init__(
        self,
        component_columns,
        column_mask,
        membership,
        hidden_layer_sizes,
        n_outputs,
        base_value,
        output_scale,
        feature_mean,
        feature_scale,
    ):
        super().__init__()
        membership = np.asarray(membership, dtype=bool)
        n_components, width = np.shape(component_columns)
        self.register_buffer("columns", _as_tensor(component_columns, torch.long))
        self.register_buffer("column_mask", _as_tensor(column_mask))
        self.register_buffer("membership", _as_tensor(membership))
        sizes = membership.sum(axis=1)
        self.register_buffer("sizes", _as_tensor(sizes))
        self.register_buffer("base_value", _as_tensor(base_value).reshape(-1))
        self.register_buffer("output_scale", _as_tensor(output_scale).reshape(-1))
        self.register_buffer("feature_mean", _as_tensor(feature_mean).reshape(-1))
        self.register_buffer("feature_scale", _as_tensor(feature_scale).reshape(-1))
        units = [width, *hidden_layer_sizes, n_outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.empty(n_components, fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(n_components, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        # Start from F(x, S) = b: the last layer's outputs begin at zero.
        with torch.no_grad():
            self.weights[-1].zero_()
            self.biases[-1].zero_()

    def components(self, x, index=None):
        """``g_T(x_T)`` for every component: a tensor ``(batch, n_components, K)``.

        ``index`` (a long tensor of component numbers) evaluates only those.
        """
        columns, column_mask = self.columns, self.column_mask
        weights, biases = list(self.weights), list(self.biases)
        if index is not None:
            columns, column_mask = columns[index], column_mask[index]
            weights = [w[index] for w in weights]
            biases = [b[index] for b in biases]
        z = (x - self.feature_mean) / self.feature_scale
        h = z[:, columns] * column_mask  # (batch, C, width)
        h = h.transpose(0, 1)  # (C, batch, width): one matrix product per component
        last = len(weights) - 1
        for layer, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if layer < last:
                h = F_nn.silu(h)
        return h.transpose(0, 1) * self.output_scale

    def active(self, mask):
        """``1[T ⊆ S]`` for every component: ``(batch, n_components)``."""
        present = mask.to(self.membership.dtype) @ self.membership.T
        return (present > self.sizes - 0.5).to(self.membership.dtype)

    def forward(self, x, mask):
        """``F(x, S) = b + Σ_T 1[T ⊆ S] g_T(x_T)``: a tensor ``(batch, K)``."""
        g = self.components(x)
        return self.base_value + torch.einsum("bc,bck->bk", self.active(mask), g)


class GameLoss(nn.Module):
    """Distance between the model's game values and the teacher's.

    Parameters
    ----------
    kind : {"mse", "kl"}, default="mse"
        ``"mse"``: squared error divided by ``scale²`` (per output). ``"kl"``: the
        divergence of the probabilities the values stand for under ``link`` —
        Bernoulli KL of ``sigmoid(·)`` per output for ``"logit"``, generalised KL
        ``p log(p/q) − p + q`` of ``exp(·)`` for ``"log"`` / ``"log_softmax"``. Both
        are minimised exactly at equal values, so a GAM that can represent the
        teacher recovers it.
    link : str, default="identity"
        The game's link (``"kl"`` needs ``"logit"``, ``"log"`` or ``"log_softmax"``).
    scale : array-like of shape (n_outputs,), default=None
        Per-output scale of the squared error; default 1.
    """

    def __init__(self, kind="mse", link="identity", scale=None):
        super().__init__()
        if kind not in ("mse", "kl"):
            raise ValueError(f"kind must be 'mse' or 'kl', got {kind!r}.")
        if kind == "kl" and link not in KL_LINKS:
            raise ValueError(
                f"The KL loss compares probabilities in log space: it needs link in "
                f"{KL_LINKS}, got {link!r}; use loss='mse'."
            )
        self.kind, self.link = kind, link
        scale = torch.ones(1) if scale is None else _as_tensor(scale).reshape(-1)
        self.register_buffer("scale", scale)

    def forward(self, y_pred, y_true):
        """Mean loss over the batch and the outputs."""
        if self.kind == "mse":
            return (((y_pred - y_true) / self.scale) ** 2).mean()
        if self.link == "logit":
            p = torch.sigmoid(y_true)
            entropy = torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)
            cross = F_nn.binary_cross_entropy_with_logits(y_pred, p, reduction="none")
            return (cross + entropy).mean()
        p = torch.exp(y_true)
        return (p * (y_true - y_pred) - p + torch.exp(y_pred)).mean()


class TensorBatches:
    """Mini-batches sliced from in-memory tensors, a whole batch at a time.

    A drop-in for a ``DataLoader`` over a dict of tensors: indexing every tensor
    with a batch of indices at once avoids the per-sample fetch and collate that
    dominate the cost of a small network. Shuffling draws from torch's global
    generator (so ``torch.manual_seed`` makes it reproducible).
    """

    def __init__(self, X, y, batch_size, shuffle):
        self.X, self.y = X, y
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self.n_samples = len(y)

    def __len__(self):
        return -(-self.n_samples // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n_samples) if self.shuffle else None
        for start in range(0, self.n_samples, self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
            else:
                index = order[start : start + self.batch_size]
            yield {k: v[index] for k, v in self.X.items()}, self.y[index]


class MaskedGAMNet(NeuralNet):
    """skorch net that fits a :class:`GroupedGAM` to a masked teacher.

    ``X`` is a dict ``{"x": rows (N, n_features), "mask": coalitions (N, n_players)}``
    of tensors and ``y`` the teacher's values ``v_x(S)`` ``(N, K)``; the criterion
    defaults to :class:`GameLoss`. Batches come from :class:`TensorBatches`
    (shuffled for training); everything else (optimizer, callbacks, validation
    split, history) is skorch's.
    """

    def __init__(self, module, *args, criterion=GameLoss, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)

    def get_iterator(self, dataset, training=False):
        """Batches of ``dataset``; whole-batch slicing for tensors held in memory."""
        X, y = getattr(dataset, "X", None), getattr(dataset, "y", None)
        if (
            isinstance(X, dict)
            and all(isinstance(v, torch.Tensor) for v in X.values())
            and isinstance(y, torch.Tensor)
        ):
            return TensorBatches(X, y, self.batch_size, shuffle=training)
        return super().get_iterator(dataset, training=training)

    def evaluate(self, method, *arrays, batch_size=4096, **kwargs):
        """Apply ``module_.<method>(*arrays, **kwargs)`` in batches of rows.

        Returns a float64 numpy array (the batches concatenated).
        """
        module = self.module_
        module.eval()
        fn = getattr(module, method)
        outs = []
        with torch.no_grad():
            for start in range(0, max(len(arrays[0]), 1), batch_size):
                chunks = [
                    torch.as_tensor(
                        np.asarray(a[start : start + batch_size], dtype=np.float32),
                        device=self.device,
                    )
                    for a in arrays
                ]
                outs.append(
                    fn(*chunks, **kwargs).detach().cpu().numpy().astype(np.float64)
                )
        return np.concatenate(outs)
