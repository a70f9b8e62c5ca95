"""Evaluating patch attributions of image classifiers, and the baselines to compare.

Metrics (held-out patches are removed through a game over patches, typically the
fine-tuned surrogate ``explainer.surrogate_``, "the closest approximation to truly
removing information"):

- :func:`insertion_deletion_auc`: the explained class's probability as the most
  important patches are added to an empty image / removed from the full one, area
  under the curve (insertion: higher is better, deletion: lower is better).
- :func:`faithfulness` and :func:`sensitivity_n`: correlation between the attributions
  summed over a random set of patches and the drop in probability when removing it.
- :func:`shapley_error_bound` / :func:`shapley_loss_certificate`: ViT Shapley's
  guarantee ``E‖φ̂ − φ‖₂ ≤ sqrt(2 H_{d−1} (L(θ) − L*))``, a held-out loss turned into
  an accuracy certificate.

Baselines, each returning ``(n_images, n_patches)`` attributions for a class:
:func:`attention_rollout` and :func:`attention_last` (vision transformers, not class
specific), :func:`vanilla_gradients`, :func:`integrated_gradients`, :func:`smoothgrad`
(torch models, pixel gradients summed into patches), :func:`leave_one_out` (any game)
and :func:`random_attributions`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from ..sampling import CoalitionSampler, as_generator
from ._image import PatchGrid, check_images
from ._vit import ViTClassifier
from ._vit_shapley import find_vision_transformer

__all__ = [
    "attention_last",
    "attention_rollout",
    "faithfulness",
    "harmonic_number",
    "insertion_deletion_auc",
    "integrated_gradients",
    "leave_one_out",
    "random_attributions",
    "sensitivity_n",
    "shapley_error_bound",
    "shapley_loss_certificate",
    "smoothgrad",
    "vanilla_gradients",
]


# -- helpers ---------------------------------------------------------------------------
def _rows(X):
    """Images or rows as float64 rows ``(n, C·H·W)`` (what games take)."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(len(X), -1)


def _full_values(game, rows):
    return game(rows, np.ones((1, game.n_players), dtype=bool))[:, 0]


def _targets(game, rows, target):
    """Class index of every row: given, or the argmax of ``v(full)``."""
    n = len(rows)
    if target is None:
        return np.argmax(_full_values(game, rows), axis=1)
    target = np.asarray(target)
    if target.ndim == 0:
        return np.full(n, int(target))
    if target.shape != (n,):
        raise ValueError(
            f"target must be an int or have shape ({n},), got {target.shape}."
        )
    return target.astype(np.int64)


def _select(attributions, target):
    """``(n, d)`` attributions for ``target`` from ``(n, d)`` or ``(n, d, K)``."""
    attributions = np.asarray(getattr(attributions, "values", attributions), float)
    if attributions.ndim == 3:
        return attributions[np.arange(len(attributions)), :, target]
    if attributions.ndim != 2:
        raise ValueError(
            f"attributions must be (n, n_patches) or (n, n_patches, n_classes), got "
            f"shape {attributions.shape}."
        )
    return attributions


def _check_players(game, attributions):
    if attributions.shape[1] != game.n_players:
        raise ValueError(
            f"attributions have {attributions.shape[1]} patches; the game has "
            f"{game.n_players} players."
        )


def _pick(values, target):
    """``values (n, m, K)`` at each row's class: ``(n, m)``."""
    return values[np.arange(len(values)), :, target]


# -- insertion / deletion ----------------------------------------------------------------
def insertion_deletion_auc(game, X, attributions, target=None, *, return_curves=False):
    """Insertion and deletion AUC of patch attributions, per image.

    Patches are ranked by attribution (largest first, ties in index order). The
    insertion curve is ``v_y(top-k patches)`` for ``k = 0..d``, the deletion curve
    ``v_y(all but the top-k)``; each AUC is the trapezoidal area over the fraction of
    patches ``k / d`` in ``[0, 1]``. With ``game`` the surrogate and the identity link,
    ``v_y`` is the probability of class ``y``.

    Parameters
    ----------
    game : Game
        Value function over the patches (e.g. ``explainer.surrogate_``).
    X : array-like of shape (n, C, H, W) or (n, C·H·W)
    attributions : array-like of shape (n, d) or (n, d, K), or Explanation
        Attributions for ``target`` (2-D) or for every class (3-D).
    target : int, array-like of shape (n,) or None, default=None
        Class explained for each image; None: the class with the largest
        ``v(full)`` (the predicted class).
    return_curves : bool, default=False
        Also return the curves ``(n, d + 1)``.

    Returns
    -------
    insertion, deletion : ndarray of shape (n,)
    insertion_curves, deletion_curves : ndarray of shape (n, d + 1)
        Only with ``return_curves``.
    """
    rows = _rows(X)
    target = _targets(game, rows, target)
    scores = _select(attributions, target)
    _check_players(game, scores)
    n, d = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(d)
    inserted = rank[:, None, :] < np.arange(d + 1)[None, :, None]
    values = _pick(game(rows, np.concatenate([inserted, ~inserted], axis=1)), target)
    insertion, deletion = values[:, : d + 1], values[:, d + 1 :]
    result = (_auc(insertion), _auc(deletion))
    return result + (insertion, deletion) if return_curves else result


def _auc(curves):
    d = curves.shape[1] - 1
    return (curves[:, 1:] + curves[:, :-1]).sum(axis=1) / (2 * max(d, 1))


# -- faithfulness / sensitivity-n --------------------------------------------------------
def _removal_correlation(game, rows, scores, target, masks):
    """Per-row correlation of ``sᵀφ`` with ``v(1) − v(1 − s)`` over masks ``(n, m, d)``."""
    n, m, d = masks.shape
    full = np.ones((n, 1, d), dtype=bool)
    values = _pick(game(rows, np.concatenate([full, ~masks], axis=1)), target)
    drop = values[:, :1] - values[:, 1:]
    summed = np.einsum("nmd,nd->nm", masks.astype(np.float64), scores)
    drop = drop - drop.mean(axis=1, keepdims=True)
    summed = summed - summed.mean(axis=1, keepdims=True)
    denominator = np.sqrt((drop**2).sum(axis=1) * (summed**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, (drop * summed).sum(axis=1) / denominator, np.nan
        )


def faithfulness(
    game, X, attributions, target=None, *, n_coalitions=200, random_state=0
):
    """Faithfulness (Bhatt et al., 2021): correlation of attributions with removal.

    For each image, ``corr_s(sᵀφ_y, v_y(1) − v_y(1 − s))`` over ``n_coalitions``
    random sets of patches ``s`` of uniform cardinality ``0..d`` (``p(s) =
    1 / (C(d, |s|) (d + 1))``). Higher is better; the exact Shapley values of an
    additive game score 1.

    Parameters
    ----------
    game : Game
    X : array-like of shape (n, C, H, W) or (n, C·H·W)
    attributions : array-like of shape (n, d) or (n, d, K), or Explanation
    target : int, array-like of shape (n,) or None, default=None
    n_coalitions : int, default=200
    random_state : int, Generator or None, default=0

    Returns
    -------
    ndarray of shape (n,)
        NaN where the correlation is undefined (constant attributions or drops).
    """
    rows = _rows(X)
    target = _targets(game, rows, target)
    scores = _select(attributions, target)
    _check_players(game, scores)
    n, d = scores.shape
    rng = as_generator(random_state)
    sampler = CoalitionSampler(d, "uniform", paired=False)
    masks = sampler.sample(n * n_coalitions, rng)[: n * n_coalitions]
    return _removal_correlation(
        game, rows, scores, target, masks.reshape(n, n_coalitions, d)
    )


def sensitivity_n(
    game, X, attributions, sizes, target=None, *, n_coalitions=100, random_state=0
):
    """Sensitivity-n (Ancona et al., 2018) for each removal size ``n`` in ``sizes``.

    Like :func:`faithfulness` with every ``s`` of a fixed size.

    Parameters
    ----------
    game : Game
    X : array-like of shape (n, C, H, W) or (n, C·H·W)
    attributions : array-like of shape (n, d) or (n, d, K), or Explanation
    sizes : sequence of int
        Numbers of removed patches, each in ``1..d-1``.
    target : int, array-like of shape (n,) or None, default=None
    n_coalitions : int, default=100
    random_state : int, Generator or None, default=0

    Returns
    -------
    ndarray of shape (n, len(sizes))
    """
    rows = _rows(X)
    target = _targets(game, rows, target)
    scores = _select(attributions, target)
    _check_players(game, scores)
    n, d = scores.shape
    rng = as_generator(random_state)
    out = np.empty((n, len(sizes)))
    for j, size in enumerate(sizes):
        if not 0 < int(size) < d:
            raise ValueError(f"sizes must be in 1..{d - 1}, got {size}.")
        ranks = np.argsort(rng.random((n, n_coalitions, d)), axis=2).argsort(axis=2)
        out[:, j] = _removal_correlation(game, rows, scores, target, ranks < int(size))
    return out


# -- the loss certificate ----------------------------------------------------------------
def harmonic_number(n):
    """The harmonic number ``H_n = Σ_{k=1}^n 1/k`` (0 for ``n < 1``)."""
    return float(np.sum(1.0 / np.arange(1, int(n) + 1))) if n >= 1 else 0.0


def shapley_error_bound(loss, n_players, optimal_loss=0.0):
    """ViT Shapley's bound ``sqrt(2 H_{d−1} (L(θ) − L*))`` on ``E‖φ̂ − φ‖₂``.

    For attributions that satisfy efficiency, the Shapley loss
    ``L = E_x E_{S ~ Shapley kernel} (v(S) − v(∅) − 1_Sᵀφ)²`` is ``1 / H_{d−1}``
    strongly convex, so its excess over the loss ``L*`` of the exact Shapley values
    bounds the expected L2 distance to them (Covert, Kim et al., 2023, theorem 1).
    With ``L`` the loss per class (as :func:`sklearn_shapley.metrics.shapley_loss` and
    ``explainer.score`` compute it, averaged over classes) the bound is on the mean
    over images and classes of ``‖φ̂_y − φ_y‖₂``. ``L*`` is unknown without ground
    truth: ``optimal_loss=0`` gives a valid but loose certificate.

    Parameters
    ----------
    loss : float
        ``L(θ)``, e.g. a held-out Shapley loss.
    n_players : int
        ``d``, the number of patches.
    optimal_loss : float, default=0.0
        ``L*`` (or a lower bound of it).

    Returns
    -------
    float
    """
    excess = max(float(loss) - float(optimal_loss), 0.0)
    return float(np.sqrt(2.0 * harmonic_number(int(n_players) - 1) * excess))


def shapley_loss_certificate(
    game, X, values, *, exact_values=None, n_coalitions=256, random_state=0
):
    """Held-out Shapley loss of attributions and the error bound it certifies.

    The loss ``L`` is the mean over images, classes and ``n_coalitions`` paired
    Shapley-kernel coalitions of ``(v(S) − v(∅) − 1_Sᵀφ)²``. With ``exact_values``
    the same coalitions give ``L*`` and the bound is
    ``sqrt(2 H_{d−1} (L − L*))``; without, ``L* = 0`` is used.

    Parameters
    ----------
    game : Game
    X : array-like of shape (n, C, H, W) or (n, C·H·W)
    values : array-like of shape (n, d, K) or (n, d), or Explanation
        Efficient attributions (``Σφ = v(full) − v(∅)``).
    exact_values : array-like of the same shape, default=None
        The exact Shapley values of ``game``, when known.
    n_coalitions : int, default=256
    random_state : int, Generator or None, default=0

    Returns
    -------
    dict
        ``loss``, ``optimal_loss`` (None without ``exact_values``), ``bound``,
        ``n_players``.
    """
    rows = _rows(X)
    d = game.n_players
    values = np.asarray(getattr(values, "values", values), dtype=np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    masks = CoalitionSampler(d, "shapley", paired=True).sample(
        n_coalitions, as_generator(random_state)
    )
    table = game(rows, np.vstack([masks, np.zeros((1, d), dtype=bool)]))
    if values.shape != (len(rows), d, table.shape[2]):
        raise ValueError(
            f"values have shape {values.shape}; expected {(len(rows), d, table.shape[2])}."
        )
    target = table[:, :-1] - table[:, -1:]
    mask_matrix = masks.astype(np.float64)

    def loss_of(phi):
        return float(
            np.mean((target - np.einsum("md,ndk->nmk", mask_matrix, phi)) ** 2)
        )

    loss = loss_of(values)
    optimal = None
    if exact_values is not None:
        exact = np.asarray(getattr(exact_values, "values", exact_values), np.float64)
        optimal = loss_of(exact.reshape(values.shape))
    return {
        "loss": loss,
        "optimal_loss": optimal,
        "bound": shapley_error_bound(loss, d, 0.0 if optimal is None else optimal),
        "n_players": d,
    }


# -- baselines -------------------------------------------------------------------------
def _torch_model(model):
    """A torch module ``images -> logits`` from a model or its sklearn wrapper."""
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    if isinstance(model, ViTClassifier):
        model = model.module_
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            "Gradient baselines need a torch image model (a VisionTransformer, a "
            f"fitted ViTClassifier or another torch module), got {type(model).__name__}."
        )
    return model


def _grid(model, images, patch_size):
    vit = find_vision_transformer(model)
    if patch_size is None and vit is not None:
        return vit.grid
    if patch_size is None:
        raise ValueError("patch_size is needed for a model that is not a ViT.")
    return PatchGrid(images.shape[1:], patch_size)


def _images(X, image_shape):
    return check_images(X, image_shape).astype(np.float32)


def _probability_gradients(module, images, target, batch_size):
    """Gradients ``(n, C, H, W)`` of the softmax probability of ``target``."""
    param = next(module.parameters())
    grads = []
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(images[start : start + batch_size], device=param.device)
        x = x.to(param.dtype).requires_grad_(True)
        probs = torch.softmax(module(x), dim=1)
        rows = torch.arange(len(x), device=param.device)
        index = torch.as_tensor(target[start : start + batch_size], device=param.device)
        (grad,) = torch.autograd.grad(probs[rows, index].sum(), x)
        grads.append(grad.detach().double().cpu().numpy())
    return np.concatenate(grads) if grads else np.zeros(images.shape)


def _class_targets(module, images, target, batch_size):
    if target is not None:
        target = np.asarray(target)
        return np.full(len(images), int(target)) if target.ndim == 0 else target
    param = next(module.parameters())
    preds = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(images[start : start + batch_size], device=param.device)
            preds.append(module(x.to(param.dtype)).argmax(dim=1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def vanilla_gradients(
    model, X, target=None, *, patch_size=None, image_shape=None, batch_size=256
):
    """Vanilla gradients (Simonyan et al., 2013) summed into patches.

    ``|∂ p_y(x) / ∂x|`` per pixel (absolute value, as ViT Shapley's comparison does),
    summed over the channels and pixels of each patch.

    Parameters
    ----------
    model : torch.nn.Module, ViTClassifier or FrozenEstimator of one
        Returns logits of images ``(n, C, H, W)``.
    X : array-like of shape (n, C, H, W), (n, H, W) or (n, C·H·W)
    target : int, array-like of shape (n,) or None, default=None
        Class explained (None: the predicted class).
    patch_size : int or pair of int, default=None
        The patches (default: the vision transformer's).
    image_shape : tuple of int, default=None
        Needed for flattened rows.
    batch_size : int, default=256

    Returns
    -------
    ndarray of shape (n, n_patches)
    """
    module = _torch_model(model)
    images = _images(X, image_shape)
    grid = _grid(model, images, patch_size)
    target = _class_targets(module, images, target, batch_size)
    return grid.pool(np.abs(_probability_gradients(module, images, target, batch_size)))


def integrated_gradients(
    model,
    X,
    target=None,
    *,
    baseline=0.0,
    n_steps=10,
    patch_size=None,
    image_shape=None,
    batch_size=256,
):
    """Integrated Gradients (Sundararajan et al., 2017) summed into patches (signed).

    ``(x − x₀) · mean_α ∂p_y(x₀ + α (x − x₀)) / ∂x`` with ``n_steps`` midpoints
    ``α = (j + ½) / n_steps``; the pixel attributions sum to about
    ``p_y(x) − p_y(x₀)``.

    Parameters
    ----------
    model : torch.nn.Module, ViTClassifier or FrozenEstimator of one
    X : array-like of shape (n, C, H, W), (n, H, W) or (n, C·H·W)
    target : int, array-like of shape (n,) or None, default=None
    baseline : float or array-like broadcastable to (C, H, W), default=0.0
        The reference image ``x₀``.
    n_steps : int, default=10
    patch_size, image_shape, batch_size : see :func:`vanilla_gradients`.

    Returns
    -------
    ndarray of shape (n, n_patches)
    """
    module = _torch_model(model)
    images = _images(X, image_shape)
    grid = _grid(model, images, patch_size)
    target = _class_targets(module, images, target, batch_size)
    reference = np.broadcast_to(np.asarray(baseline, np.float32), images.shape[1:])
    delta = images - reference
    total = np.zeros(images.shape)
    for j in range(int(n_steps)):
        alpha = (j + 0.5) / n_steps
        path = (reference + alpha * delta).astype(np.float32)
        total += _probability_gradients(module, path, target, batch_size)
    return grid.pool(delta * total / n_steps)


def smoothgrad(
    model,
    X,
    target=None,
    *,
    n_samples=10,
    noise_level=0.15,
    patch_size=None,
    image_shape=None,
    batch_size=256,
    random_state=None,
):
    """SmoothGrad (Smilkov et al., 2017) summed into patches.

    The gradient of ``p_y`` averaged over ``n_samples`` copies of the image with
    Gaussian noise of standard deviation ``noise_level · (max(x) − min(x))``, then its
    absolute value summed over each patch.

    Parameters
    ----------
    model : torch.nn.Module, ViTClassifier or FrozenEstimator of one
    X : array-like of shape (n, C, H, W), (n, H, W) or (n, C·H·W)
    target : int, array-like of shape (n,) or None, default=None
    n_samples : int, default=10
    noise_level : float, default=0.15
    patch_size, image_shape, batch_size : see :func:`vanilla_gradients`.
    random_state : int, Generator or None, default=None

    Returns
    -------
    ndarray of shape (n, n_patches)
    """
    module = _torch_model(model)
    images = _images(X, image_shape)
    grid = _grid(model, images, patch_size)
    target = _class_targets(module, images, target, batch_size)
    rng = as_generator(random_state)
    spread = images.reshape(len(images), -1)
    spread = (spread.max(axis=1) - spread.min(axis=1)).reshape(-1, 1, 1, 1)
    total = np.zeros(images.shape)
    for _ in range(int(n_samples)):
        noise = rng.standard_normal(images.shape) * noise_level * spread
        noisy = (images + noise).astype(np.float32)
        total += _probability_gradients(module, noisy, target, batch_size)
    return grid.pool(np.abs(total / n_samples))


def _attention_maps(model, X, image_shape, batch_size):
    vit = find_vision_transformer(model)
    if vit is None:
        raise TypeError(
            "Attention baselines need a VisionTransformer (or a fitted ViTClassifier), "
            f"got {type(model).__name__}."
        )
    images = _images(X, image_shape or vit.image_shape)
    param = next(vit.parameters())
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(images[start : start + batch_size], device=param.device)
            yield [
                a.double().mean(dim=1) for a in vit.attention_maps(x.to(param.dtype))
            ]


def attention_rollout(model, X, *, image_shape=None, batch_size=256):
    """Attention rollout (Abnar & Zuidema, 2020): attention flow to the class token.

    Every layer's attention is averaged over heads, the identity added (residual
    connections) and rows renormalised; the product over layers gives the class
    token's row, whose entries for the patches are the attributions. Not class
    specific.

    Parameters
    ----------
    model : VisionTransformer, ViTClassifier or FrozenEstimator of one
    X : array-like of shape (n, C, H, W), (n, H, W) or (n, C·H·W)
    image_shape : tuple of int, default=None
    batch_size : int, default=256

    Returns
    -------
    ndarray of shape (n, n_patches)
    """
    out = []
    for maps in _attention_maps(model, X, image_shape, batch_size):
        eye = torch.eye(maps[0].shape[-1], dtype=maps[0].dtype)
        rollout = eye.expand_as(maps[0])
        for attention in maps:
            layer = attention + eye
            layer = layer / layer.sum(dim=-1, keepdim=True)
            rollout = layer @ rollout
        out.append(rollout[:, 0, 1:].numpy())
    return np.concatenate(out)


def attention_last(model, X, *, image_shape=None, batch_size=256):
    """The last layer's attention from the class token to each patch (head mean).

    Parameters and return value as :func:`attention_rollout`.
    """
    out = [
        maps[-1][:, 0, 1:].numpy()
        for maps in _attention_maps(model, X, image_shape, batch_size)
    ]
    return np.concatenate(out)


def leave_one_out(game, X, target=None):
    """Leave-one-out: ``v_y(full) − v_y(full without patch i)`` for every patch.

    Parameters
    ----------
    game : Game
        Value function over the patches (the surrogate, or a game filling patches).
    X : array-like of shape (n, C, H, W) or (n, C·H·W)
    target : int, array-like of shape (n,) or None, default=None
        None: every class, returning ``(n, d, K)``.

    Returns
    -------
    ndarray of shape (n, n_patches) or (n, n_patches, n_classes)
    """
    rows = _rows(X)
    d = game.n_players
    masks = np.vstack([np.ones((1, d), dtype=bool), ~np.eye(d, dtype=bool)])
    values = game(rows, masks)
    drops = values[:, :1] - values[:, 1:]
    if target is None:
        return drops
    target = _targets(game, rows, target)
    return drops[np.arange(len(rows)), :, target]


def random_attributions(n_images, n_patches, random_state=None):
    """Uniform random attributions ``(n_images, n_patches)``: a random patch order."""
    return as_generator(random_state).random((int(n_images), int(n_patches)))
