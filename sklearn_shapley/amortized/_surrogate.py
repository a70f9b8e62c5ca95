"""A learned value function: a surrogate network ``g(x ⊙ S, S)`` wrapped as a game.

:func:`fit_surrogate` trains a masked network to imitate a model when only the players in
a coalition ``S`` are known (held-out features set to 0 after standardisation, the mask
appended to the input). Its optimum is ``E[f(x) | x_S]``, the conditional
("in-distribution") value function of FastSHAP. The result is a :class:`SurrogateGame`,
usable wherever a :class:`~sklearn_shapley.games.Game` is.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..games import Game, apply_link, model_function, player_membership
from ..sampling import CoalitionSampler, as_generator
from ._nets import MaskedModule, SurrogateNet, surrogate_masks
from ._training import (
    fit_net,
    inference_threads,
    split_rows,
    standardizer,
    training_callbacks,
)

__all__ = ["SurrogateGame", "fit_surrogate"]

#: Fixed coalitions per validation row (the early-stopping loss).
N_VALIDATION_MASKS = 16


class SurrogateGame(Game):
    """A trained masked network ``g(x ⊙ S, S)`` as a game ``v_x(S)``.

    Made by :func:`fit_surrogate`. ``game(X, masks)`` returns ``(n, m, n_outputs)``: the
    surrogate's predicted class probabilities with ``link`` applied (classifiers), or
    its predictions (regressors, ``link`` applied as well).

    Parameters
    ----------
    module : MaskedModule
        The trained network (outputs logits for classifiers).
    membership : ndarray of bool, shape (n_players, n_features)
        Feature columns of each player.
    mean, scale : ndarray of shape (n_features,)
        Standardisation of the rows (held-out features become 0 = the mean).
    task : {"classification", "regression"}
    link : str or callable, default="identity"
        Applied to each prediction (see :func:`~sklearn_shapley.games.apply_link`).
    target_mean, target_scale : ndarray of shape (n_outputs,), default=None
        Regression targets were standardised with these.
    output_names : list of str or None
    players : list of lists of int or None
        The player groups (kept for reference; ``membership`` encodes them).
    batch_size : int, default=65536
        Most (row, coalition) pairs sent through the network at once.
    rowwise : bool, default=False
        Evaluate each row by its own products (:meth:`MaskedModule.forward_rows`), so
        that its values do not depend on where it lies among the rows evaluated with
        it; see :meth:`rowwise_copy`.

    Attributes
    ----------
    n_players, n_features, n_outputs : int
    history : list of dict
        skorch's training history of the surrogate (losses per epoch).
    """

    def __init__(
        self,
        module,
        membership,
        mean,
        scale,
        *,
        task="regression",
        link="identity",
        target_mean=None,
        target_scale=None,
        output_names=None,
        players=None,
        batch_size=65536,
        rowwise=False,
    ):
        self.module = module.eval()
        self.membership = np.asarray(membership, dtype=bool)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.task = task
        self.link = link
        self.target_mean = target_mean
        self.target_scale = target_scale
        self.output_names = output_names
        self.players = players
        self.batch_size = int(batch_size)
        self.rowwise = bool(rowwise)
        self.n_players, self.n_features = self.membership.shape
        last = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
        self.n_outputs = last.out_features
        self.history = []

    def _replace(self, link=None, rowwise=None):
        game = SurrogateGame(
            self.module,
            self.membership,
            self.mean,
            self.scale,
            task=self.task,
            link=self.link if link is None else link,
            target_mean=self.target_mean,
            target_scale=self.target_scale,
            output_names=self.output_names,
            players=self.players,
            batch_size=self.batch_size,
            rowwise=self.rowwise if rowwise is None else rowwise,
        )
        game.history = self.history
        return game

    def with_link(self, link):
        """A copy of this game (sharing the network) that applies ``link`` instead."""
        return self._replace(link=link)

    def rowwise_copy(self):
        """A copy of this game (sharing the network) that evaluates each row by its own
        products, for the values an explanation needs: a row's explanation then does
        not depend on the rows explained with it, as scikit-learn's estimator checks
        require (a permutation of the rows gives the same values, bit for bit). As fast
        as one product over all pairs for the few coalitions of an explanation;
        training, with many coalitions per row, keeps the single product.
        """
        return self._replace(rowwise=True)

    def standardize(self, X):
        """Rows ``(n, n_features)`` standardised as the network saw them (float64; the
        network takes them in its own dtype)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X must have shape (n_rows, {self.n_features}), got {X.shape}."
            )
        return (X - self.mean) / self.scale

    def predict(self, X, masks):
        """Network outputs before the link: probabilities or predictions.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
        masks : array-like of bool, shape (m, n_players) or (n_rows, m, n_players)

        Returns
        -------
        ndarray of shape (n_rows, m, n_outputs)
        """
        param = next(self.module.parameters())
        Z = self.standardize(X)
        masks = np.asarray(masks, dtype=bool)
        if masks.shape[-1] != self.n_players:
            raise ValueError(
                f"masks have {masks.shape[-1]} players; this game has {self.n_players}."
            )
        n = len(Z)
        if masks.ndim == 2:
            masks = np.broadcast_to(masks, (n,) + masks.shape)
        elif masks.shape[0] != n:
            raise ValueError(f"Per-row masks have {masks.shape[0]} rows, X has {n}.")
        m = masks.shape[1]
        out = np.empty((n, m, self.n_outputs))
        rows_per_chunk = max(1, self.batch_size // max(m, 1))
        with torch.no_grad(), inference_threads(n * m):
            for start in range(0, n, rows_per_chunk):
                stop = min(n, start + rows_per_chunk)
                x = torch.as_tensor(
                    Z[start:stop], dtype=param.dtype, device=param.device
                )
                mask = torch.as_tensor(  # (rows, m, n_players)
                    np.array(masks[start:stop]), device=param.device
                )
                if self.rowwise:
                    pred = self.module.forward_rows(x, mask).flatten(0, 1)
                else:
                    pred = self.module(
                        x.repeat_interleave(m, dim=0), mask.flatten(0, 1)
                    )
                if self.task == "classification":
                    pred = torch.softmax(pred, dim=1)
                out[start:stop] = (
                    pred.detach().cpu().numpy().reshape(stop - start, m, -1)
                )
        if self.task == "regression" and self.target_scale is not None:
            out = out * self.target_scale + self.target_mean
        return out

    def grand_and_empty(self, X):
        """``(v(full), v(∅))``: one coalition per row; ``v(∅)``, the network on
        an all-zero input whatever the row, computed once."""
        d = self.n_players
        full = self(X, np.ones((1, d), dtype=bool))[:, 0]
        if getattr(self, "_empty", None) is None:
            self._empty = self(self.mean[None], np.zeros((1, d), dtype=bool))[0, 0]
        return full, np.broadcast_to(self._empty, full.shape).copy()

    def __call__(self, X, masks):
        out = self.predict(X, masks)
        n, m, K = out.shape
        return apply_link(out.reshape(n * m, K), self.link).reshape(n, m, -1)


def _default_epochs(n_rows, batch_size, n_updates, min_epochs):
    batches_per_epoch = max(1, math.ceil(n_rows / batch_size))
    return max(min_epochs, math.ceil(n_updates / batches_per_epoch))


def fit_surrogate(
    model,
    X,
    *,
    link="identity",
    players=None,
    hidden_layer_sizes=(128, 128),
    max_epochs=None,
    batch_size=64,
    learning_rate=1e-3,
    distribution="shapley",
    validation_fraction=0.1,
    n_iter_no_change=20,
    random_state=None,
    device="cpu",
    verbose=0,
    frame=None,
):
    """Train a surrogate ``g(x ⊙ S, S)`` of ``model`` and return it as a game.

    The network sees the standardised row with the held-out players' features set to 0
    and the coalition's mask appended. It is trained through skorch
    (:class:`~sklearn_shapley.amortized._nets.SurrogateNet`) on
    ``KL(f(x) ‖ g(x_S))`` with ``f(x)`` the model's ``predict_proba`` (classifiers) or
    the MSE to its standardised ``predict`` (regressors), with a fresh coalition per
    row and epoch: Shapley-kernel or uniform-cardinality coalitions, plus a share of
    full (10 %) and empty (5 %) ones so that ``v(full)`` imitates the model and
    ``v(∅)`` its mean. Adam, the learning rate halved after ``n_iter_no_change // 4``
    epochs without improvement of the held-out loss, early stopping after
    ``n_iter_no_change``, best weights restored; the held-out loss uses fixed seeded
    coalitions (16 per validation row).

    Parameters
    ----------
    model : estimator or callable
        The model to imitate: anything :class:`~sklearn_shapley.games.ModelFunction`
        accepts (a fitted classifier is imitated through ``predict_proba``).
    X : array-like of shape (n_samples, n_features)
        Rows to train on (the model's own training rows, typically).
    link : {"identity", "logit", "log", "log_softmax"} or callable, default="identity"
        Applied to the surrogate's probabilities (predictions) when the game is
        evaluated; training does not depend on it.
    players : list of lists of int, default=None
        Column groups held out together (one player each).
    hidden_layer_sizes : tuple of int, default=(128, 128)
    max_epochs : int, default=None
        ``None``: enough epochs for about 3,000 optimizer updates, at least 10
        (early stopping usually ends training sooner).
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    distribution : {"shapley", "uniform"}, default="shapley"
        Coalition distribution (:class:`~sklearn_shapley.sampling.CoalitionSampler`).
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping; ``0`` trains for ``max_epochs``
        with no early stopping.
    n_iter_no_change : int, default=20
        Epochs without improvement of the held-out loss before stopping.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the split, the coalitions and torch (in a forked RNG).
    device : str, default="cpu"
    verbose : int, default=0
        Print skorch's per-epoch log.
    frame : FrameCodec, default=None
        With rows from a DataFrame: ``X`` holds its category codes, and the model
        gets the DataFrame it decodes (see :class:`~sklearn_shapley.games.ModelFunction`).

    Returns
    -------
    SurrogateGame
    """
    f, output_names = model_function(model, frame)
    task = "classification" if f.method == "predict_proba" else "regression"
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got shape {X.shape}.")
    if len(X) < 2:
        raise ValueError(
            f"fit_surrogate needs 2 rows or more, got n_samples = {len(X)}."
        )
    n, n_features = X.shape
    membership = player_membership(players, n_features)
    n_players = membership.shape[0]
    rng = as_generator(random_state)
    seed = int(rng.integers(2**31 - 1))

    targets = f(X)
    target_mean = target_scale = None
    if task == "classification":
        targets = np.clip(targets, 0.0, None)
        targets = targets / np.maximum(targets.sum(axis=1, keepdims=True), 1e-12)
    else:
        target_mean = targets.mean(axis=0)
        target_scale = targets.std(axis=0)
        target_scale[target_scale < 1e-12] = 1.0
        targets = (targets - target_mean) / target_scale
    mean, scale = standardizer(X)
    Z = ((X - mean) / scale).astype(np.float32)
    targets = targets.astype(np.float32)

    if n_players < 2:  # the Shapley kernel needs 2 players
        distribution = "uniform"
    sampler = CoalitionSampler(n_players, distribution, paired=False)
    train, valid = split_rows(n, validation_fraction, rng)
    valid_data = None
    if len(valid):
        valid_rows = np.repeat(valid, N_VALIDATION_MASKS)
        valid_masks = surrogate_masks(sampler, len(valid_rows), rng, 0.1, 0.05)
        valid_data = ({"x": Z[valid_rows], "mask": valid_masks}, targets[valid_rows])
    if max_epochs is None:
        max_epochs = _default_epochs(len(train), batch_size, 3000, 10)
    net = fit_net(
        SurrogateNet,
        lambda: MaskedModule(membership, targets.shape[1], tuple(hidden_layer_sizes)),
        ({"x": Z[train]}, targets[train]),
        valid=valid_data,
        seed=seed,
        device=device,
        criterion=nn.MSELoss,  # unused: get_loss computes KL / MSE
        lr=learning_rate,
        batch_size=batch_size,
        max_epochs=max_epochs,
        callbacks=training_callbacks(
            early_stopping=valid_data is not None,
            n_iter_no_change=n_iter_no_change,
            lr_patience=max(1, n_iter_no_change // 4),
        ),
        task=task,
        sampler=sampler,
        mask_seed=seed,
        verbose=verbose,
    )
    game = SurrogateGame(
        net.module_,
        membership,
        mean,
        scale,
        task=task,
        link=link,
        target_mean=target_mean,
        target_scale=target_scale,
        output_names=output_names,
        players=players,
    )
    game.history = list(net.history)
    return game
