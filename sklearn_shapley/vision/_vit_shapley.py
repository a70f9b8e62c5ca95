"""ViT Shapley: amortized Shapley values of image patches (Covert, Kim et al., 2023).

- :func:`fit_image_surrogate`: fine-tune a copy of an image classifier so that it
  predicts well with patches held out, ``min E_x E_S KL(f(x) ‖ g(x_S))`` with the
  cardinality of ``S`` uniform in ``0..d`` (its optimum is ``E[f(x) | x_S]``). A
  :class:`~sklearn_shapley.vision.VisionTransformer` (or a
  :class:`~sklearn_shapley.vision.ViTClassifier`) is copied and holds patches out by
  attention masking, zeroed patches or a mask token; another torch model is copied and
  gets held-out patches filled with the mean image; a black box (a scikit-learn
  classifier, a callable) is distilled into a new vision transformer.
- :class:`ViTShapleyExplainer`: an explainer vision transformer initialised from the
  surrogate, its classification head replaced by one extra attention block and three
  fully connected layers (width 4 x the embedding) with a tanh, one value per patch and
  class, trained on the Shapley weighted-least-squares loss of FastSHAP (paired
  Shapley-kernel masks, additive efficient normalization) through skorch with AdamW
  and a cosine learning-rate schedule.
- :class:`UNetShapleyExplainer`: the same training with a small convolutional U-Net
  whose output is at the patch grid (FastSHAP's image explainer), for models that are
  not transformers.

Both accept images ``(n, C, H, W)`` / ``(n, H, W)`` (numpy or torch) or flattened rows
``(n, C·H·W)`` with ``image_shape``; the players are the patches.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.nn import functional as F

from .._explanation import ShapleyValues
from .._game_explainer import GameExplainer
from ..amortized._nets import NORMALIZATIONS, ShapleyNet, SurrogateNet, normalize
from ..amortized._training import fit_net, split_rows, torch_threads, training_callbacks
from ..games import BaselineGame, Game, ModelFunction, _is_classifier
from ..sampling import CoalitionSampler, as_generator
from ._image import ImageSurrogateGame, MaskedImageModel, PatchGrid
from ._vit import (
    REMOVALS,
    Block,
    VisionTransformer,
    ViTClassifier,
    _init_weights,
    pixel_statistics,
)

__all__ = [
    "ImageModelFunction",
    "UNetShapleyExplainer",
    "UNetShapleyModule",
    "ViTShapleyExplainer",
    "ViTShapleyModule",
    "find_vision_transformer",
    "fit_image_surrogate",
]

VALUE_FUNCTIONS = ("surrogate", "model")
#: Architecture of the vision transformers built from scratch (``vit_params``).
DEFAULT_VIT_PARAMS = {"embed_dim": 64, "depth": 4, "n_heads": 4, "mlp_ratio": 4.0}
#: Fixed coalitions per validation image for the surrogate's early stopping.
N_VALIDATION_MASKS = 8


def find_vision_transformer(model):
    """The :class:`VisionTransformer` inside ``model``, or None.

    Looks through :class:`~sklearn.frozen.FrozenEstimator` and a fitted
    :class:`~sklearn_shapley.vision.ViTClassifier`.
    """
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    if isinstance(model, ViTClassifier):
        model = getattr(model, "module_", None)
    return model if isinstance(model, VisionTransformer) else None


def _on_simplex(out):
    """True when every row of ``out`` is a probability vector."""
    out = np.asarray(out, dtype=np.float64)
    return bool(
        out.size
        and out.min() >= -1e-6
        and out.max() <= 1 + 1e-6
        and np.allclose(out.sum(axis=1), 1.0, atol=1e-4)
    )


def _softmax_if_logits(out):
    """Probabilities from model outputs: rows already on the simplex are kept."""
    out = np.asarray(out, dtype=np.float64)
    if _on_simplex(out):
        return out
    shifted = out - out.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class ImageModelFunction:
    """An image model as ``f(rows) -> outputs (n, K)``; picklable.

    scikit-learn estimators (a :class:`~sklearn_shapley.vision.ViTClassifier`
    included) get flattened rows ``(n, C·H·W)``: classifiers are explained through
    ``predict_proba``, regressors through ``predict``. Torch modules and other
    callables get images ``(n, C, H, W)`` and may return logits (a softmax is applied
    unless the outputs are already probabilities).

    Parameters
    ----------
    model : estimator, torch.nn.Module or callable
    grid : PatchGrid
    batch_size : int, default=1024
        Images per call to a torch module.

    Attributes
    ----------
    is_classifier : bool
        Whether the outputs are class probabilities.
    output_names : list of str or None
    """

    def __init__(self, model, grid, batch_size=1024):
        self.model = model
        self.grid = grid
        self.batch_size = int(batch_size)
        self.output_names = None
        self.is_classifier = True
        if isinstance(model, BaseEstimator) and hasattr(model, "predict"):
            self._f = ModelFunction(model)
            self.output_names = self._f.output_names
            self.is_classifier = self._f.method == "predict_proba"
        elif isinstance(model, nn.Module) or callable(model):
            self._f = None
        else:
            raise TypeError(
                f"Cannot explain an image model of type {type(model).__name__}: pass a "
                "fitted scikit-learn estimator, a torch module or a callable "
                "returning class probabilities or logits."
            )

    def __call__(self, X):
        X = np.asarray(X)
        if self._f is not None:
            return self._f(X.reshape(len(X), -1))
        images = self.grid.images(X)
        if not isinstance(self.model, nn.Module):
            out = np.asarray(self.model(images), dtype=np.float64)
            return _softmax_if_logits(out.reshape(len(images), -1))
        param = next(self.model.parameters(), None)
        device = "cpu" if param is None else param.device
        dtype = torch.float32 if param is None else param.dtype
        outs = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                x = torch.as_tensor(
                    images[start : start + self.batch_size], dtype=dtype, device=device
                )
                outs.append(self.model(x).double().cpu().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, 0))
        return _softmax_if_logits(out.reshape(len(images), -1))


def _new_vit(grid, n_classes, vit_params, removal, images):
    params = dict(DEFAULT_VIT_PARAMS)
    params.update(vit_params or {})
    mean, std = pixel_statistics(images)
    return VisionTransformer(
        grid.image_shape,
        grid.patch_size,
        n_classes=n_classes,
        removal=removal,
        pixel_mean=mean,
        pixel_std=std,
        **params,
    )


def _check_vit_grid(vit, grid):
    if vit.image_shape != grid.image_shape or vit.patch_size != grid.patch_size:
        raise ValueError(
            f"The vision transformer works on images {vit.image_shape} with patches "
            f"{vit.patch_size}; the explainer's images are {grid.image_shape} with "
            f"patches {grid.patch_size}. Use the model's patch size."
        )


def fit_image_surrogate(
    model,
    X,
    grid,
    *,
    removal="attention",
    link="identity",
    vit_params=None,
    max_epochs=20,
    batch_size=64,
    learning_rate=1e-3,
    weight_decay=0.01,
    validation_fraction=0.1,
    n_iter_no_change=5,
    random_state=None,
    device="cpu",
    verbose=0,
):
    """Fine-tune a masked copy of an image classifier and return it as a game.

    Trains ``g`` on ``E_x E_S KL(f(x) ‖ g(x_S))`` through skorch
    (:class:`~sklearn_shapley.amortized._nets.SurrogateNet`): for every image and epoch
    a coalition of patches with cardinality uniform in ``0..d`` (ViT Shapley's
    distribution, which includes the empty and the full image), AdamW with a cosine
    learning-rate schedule, early stopping on held-out images with fixed coalitions
    (best weights restored). The optimum is ``g(x_S) = E[f(x) | x_S]``.

    ``g`` starts as a copy of the model when the model is a
    :class:`~sklearn_shapley.vision.VisionTransformer` / ``ViTClassifier``
    (held-out patches removed by ``removal``) or another torch module (held-out patches
    filled with the mean training image, :class:`MaskedImageModel`); any other model
    (a scikit-learn classifier, a callable) is distilled into a new vision transformer
    of architecture ``vit_params``.

    Parameters
    ----------
    model : classifier, torch.nn.Module or callable
        The image classifier (see :class:`ImageModelFunction`).
    X : array-like of shape (n, C·H·W) or (n, C, H, W)
        Training images.
    grid : PatchGrid
        The patches.
    removal : {"attention", "zeros", "mask_token"}, default="attention"
        How a vision transformer surrogate holds patches out.
    link : str or callable, default="identity"
        Applied to the surrogate's probabilities when the game is evaluated.
    vit_params : dict, default=None
        ``embed_dim``, ``depth``, ``n_heads``, ``mlp_ratio`` of a new vision
        transformer (default 64, 4, 4, 4.0).
    max_epochs : int, default=20
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    weight_decay : float, default=0.01
    validation_fraction : float, default=0.1
        Share of images held out for early stopping (``0``: none).
    n_iter_no_change : int, default=5
    random_state : int, Generator or None, default=None
        Seeds the split, the coalitions and torch (in a forked RNG).
    device : str, default="cpu"
    verbose : int, default=0

    Returns
    -------
    ImageSurrogateGame
        Its ``history`` holds the training losses.
    """
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {REMOVALS}, got {removal!r}.")
    f = ImageModelFunction(model, grid)
    if not f.is_classifier:
        raise ValueError(
            "The image surrogate imitates a classifier's probabilities; "
            f"{type(model).__name__} is not a classifier. Use value_function='model'."
        )
    images = grid.images(X)
    if len(images) < 1:
        raise ValueError("fit_image_surrogate needs at least one image.")
    targets = f(images).astype(np.float32)
    targets = np.clip(targets, 0.0, None)
    targets /= np.maximum(targets.sum(axis=1, keepdims=True), 1e-12)
    rng = as_generator(random_state)
    seed = int(rng.integers(2**31 - 1))
    sampler = CoalitionSampler(grid.n_patches, "uniform", paired=False)
    train, valid = split_rows(len(images), validation_fraction, rng)
    valid_data = None
    if len(valid):
        rows = np.repeat(valid, N_VALIDATION_MASKS)
        masks = sampler.sample(len(rows), rng)[: len(rows)]
        valid_data = ({"x": images[rows], "mask": masks}, targets[rows])

    def make_module():
        vit = find_vision_transformer(model)
        if vit is not None:
            _check_vit_grid(vit, grid)
            module = copy.deepcopy(vit)
            module.removal = removal
        elif isinstance(model, nn.Module):
            raw = _raw_torch_outputs(model, images[:8])
            outputs = "probabilities" if _on_simplex(raw) else "logits"
            module = MaskedImageModel(
                copy.deepcopy(model), grid, fill=images.mean(axis=0), outputs=outputs
            )
        else:
            module = _new_vit(grid, targets.shape[1], vit_params, removal, images)
        return module.train()

    net = fit_net(
        SurrogateNet,
        make_module,
        ({"x": images[train]}, targets[train]),
        valid=valid_data,
        seed=seed,
        optimizer=torch.optim.AdamW,
        device=device,
        criterion=nn.KLDivLoss,  # unused: get_loss computes KL(f ‖ g)
        optimizer__weight_decay=weight_decay,
        lr=learning_rate,
        batch_size=batch_size,
        max_epochs=max_epochs,
        callbacks=training_callbacks(
            early_stopping=valid_data is not None,
            n_iter_no_change=n_iter_no_change,
            schedule="cosine",
            max_epochs=max_epochs,
        ),
        task="classification",
        p_full=0.0,
        p_empty=0.0,
        sampler=sampler,
        mask_seed=seed + 1,
        verbose=verbose,
    )
    game = ImageSurrogateGame(
        net.module_.eval(), grid, link=link, output_names=f.output_names
    )
    game.n_outputs = targets.shape[1]
    game.history = list(net.history)
    return game


def _raw_torch_outputs(model, images):
    param = next(model.parameters(), None)
    device = "cpu" if param is None else param.device
    with torch.no_grad():
        out = model(torch.as_tensor(images, dtype=torch.float32, device=device))
    return out.double().cpu().numpy()


class ViTShapleyModule(nn.Module):
    """The ViT Shapley explainer network ``φ(x) ∈ R^{n_patches × n_outputs}``.

    A vision transformer backbone (all its blocks and its final norm; the
    classification head is dropped), one extra attention block, then three fully
    connected layers of width ``4 · embed_dim`` applied to every patch token, a tanh
    (times ``output_scale``), and the efficiency normalization when ``total`` is
    given. The class token's output is discarded.

    Parameters
    ----------
    backbone : VisionTransformer
        Used as is (pass a copy); its ``head`` is replaced by an identity.
    n_outputs : int
    normalization : {"additive", "multiplicative", "none"}, default="additive"
    output_scale : float, default=1.0
        Bound of the attributions before the normalization (1 for probabilities).
    """

    def __init__(self, backbone, n_outputs, normalization="additive", output_scale=1.0):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
            )
        backbone.head = nn.Identity()
        self.backbone = backbone
        self.normalization = normalization
        dim = backbone.embed_dim
        self.block = Block(dim, backbone.n_heads, backbone.mlp_ratio)
        self.head = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, int(n_outputs)),
        )
        self.block.apply(_init_weights)
        self.head.apply(_init_weights)
        self.register_buffer("output_scale", torch.tensor(float(output_scale)))

    def forward(self, x, total=None):
        """``φ (n, n_patches, n_outputs)``, normalised when ``total (n, K)`` is given."""
        tokens = self.backbone.forward_features(x)
        tokens, _ = self.block(tokens)
        phi = torch.tanh(self.head(tokens[:, 1:])) * self.output_scale
        return normalize(phi, total, self.normalization)


def _conv_block(n_in, n_out):
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(n_out, n_out, 3, padding=1),
        nn.GELU(),
    )


class UNetShapleyModule(nn.Module):
    """A small U-Net ``φ(x) ∈ R^{n_patches × n_outputs}`` with output at the patch grid.

    Two convolutions at full resolution, average pooling down to the patch grid, an
    encoder stage there, a bottleneck at half the grid, an upsampling stage joined to
    the encoder by a skip connection, and a 1 x 1 convolution to ``n_outputs``
    channels: one value per patch and class (FastSHAP's superpixel explainer), then a
    tanh (times ``output_scale``) and the efficiency normalization when ``total`` is
    given.

    Parameters
    ----------
    grid : PatchGrid
    n_outputs : int
    channels : int, default=32
        Width of the first stage (doubled at each level down).
    normalization : {"additive", "multiplicative", "none"}, default="additive"
    output_scale : float, default=1.0
    pixel_mean, pixel_std : array-like of shape (C,), default=0.0, 1.0
        Input standardisation.
    """

    def __init__(
        self,
        grid,
        n_outputs,
        channels=32,
        normalization="additive",
        output_scale=1.0,
        pixel_mean=0.0,
        pixel_std=1.0,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
            )
        self.grid = grid
        self.normalization = normalization
        c = int(channels)
        n_channels = grid.image_shape[0]
        self.stem = _conv_block(n_channels, c)
        self.encoder = _conv_block(c, 2 * c)
        self.bottleneck = _conv_block(2 * c, 4 * c)
        self.decoder = _conv_block(6 * c, 2 * c)
        self.out = nn.Conv2d(2 * c, int(n_outputs), 1)
        mean = np.broadcast_to(np.asarray(pixel_mean, np.float32), (n_channels,))
        std = np.broadcast_to(np.asarray(pixel_std, np.float32), (n_channels,))
        self.register_buffer("pixel_mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std).reshape(1, -1, 1, 1))
        self.register_buffer("output_scale", torch.tensor(float(output_scale)))
        nn.init.zeros_(self.out.bias)
        nn.init.normal_(self.out.weight, std=0.01)

    def forward(self, x, total=None):
        """``φ (n, n_patches, n_outputs)``, normalised when ``total (n, K)`` is given."""
        x = x.reshape((len(x),) + self.grid.image_shape)
        x = self.grid.pad((x - self.pixel_mean) / self.pixel_std)
        h = F.avg_pool2d(self.stem(x), self.grid.patch_size)
        skip = self.encoder(h)
        gh, gw = skip.shape[-2:]
        low = F.adaptive_max_pool2d(skip, (math.ceil(gh / 2), math.ceil(gw / 2)))
        up = F.interpolate(self.bottleneck(low), size=(gh, gw), mode="nearest")
        out = self.out(self.decoder(torch.cat([up, skip], dim=1)))
        phi = torch.tanh(out.flatten(2).transpose(1, 2)) * self.output_scale
        return normalize(phi, total, self.normalization)


class _ImageShapleyExplainer(GameExplainer):
    """Shared machinery of the image explainers (parameters: see subclasses)."""

    _parameter_constraints: dict = {
        "image_shape": ["array-like", None],
        "patch_size": [Interval(Integral, 1, None, closed="left"), "array-like", None],
        "removal": [StrOptions(set(REMOVALS))],
        "vit_params": [dict, None],
        "normalization": [StrOptions(set(NORMALIZATIONS))],
        "paired_sampling": ["boolean"],
        "n_coalitions": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "surrogate_params": [dict, None],
        "device": [str],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        image_shape=None,
        patch_size=None,
        value_function="surrogate",
        removal="attention",
        link="identity",
        vit_params=None,
        normalization="additive",
        paired_sampling=True,
        n_coalitions=32,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.01,
        max_epochs=50,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        surrogate_params=None,
        output=None,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.image_shape = image_shape
        self.patch_size = patch_size
        self.value_function = value_function
        self.removal = removal
        self.link = link
        self.vit_params = vit_params
        self.normalization = normalization
        self.paired_sampling = paired_sampling
        self.n_coalitions = n_coalitions
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.surrogate_params = surrogate_params
        self.output = output
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- input: images, flattened ----------------------------------------------------
    def _validate(self, X, reset):
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        shape = None
        if isinstance(X, np.ndarray) and X.ndim in (3, 4):
            shape = X.shape[1:] if X.ndim == 4 else (1, *X.shape[1:])
            X = X.reshape(len(X), -1)
        X = validate_data(
            self, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=True
        )
        if reset:
            self._input_image_shape = shape
        elif shape is not None and tuple(shape) != tuple(self.image_shape_):
            raise ValueError(
                f"Images have shape {tuple(shape)}; the explainer was fitted on images "
                f"of shape {tuple(self.image_shape_)}."
            )
        return X

    def _resolve_image_shape(self, n_features):
        vit = find_vision_transformer(self.estimator)
        if self.image_shape is not None:
            shape = PatchGrid(self.image_shape, 1).image_shape
        elif self._input_image_shape is not None:
            shape = PatchGrid(self._input_image_shape, 1).image_shape
        elif vit is not None:
            shape = vit.image_shape
        elif getattr(self.estimator, "image_shape", None) is not None:
            shape = PatchGrid(self.estimator.image_shape, 1).image_shape
        else:
            shape = (1, 1, n_features)
        self._tabular = shape == (1, 1, n_features)
        if int(np.prod(shape)) != n_features:
            raise ValueError(
                f"image_shape {shape} has {int(np.prod(shape))} pixels; the images "
                f"have {n_features} values."
            )
        return tuple(int(s) for s in shape)

    def _prepare_fit(self, X):
        self.image_shape_ = self._resolve_image_shape(X.shape[1])

    def _resolve_estimator(self, X, y):
        est = self.estimator
        if isinstance(est, ViTClassifier) and y is not None and est.image_shape is None:
            est = clone(est).set_params(image_shape=self.image_shape_)
            if est.patch_size is None and self.patch_size is not None:
                est.set_params(patch_size=self.patch_size)
            return est.fit(X, y)
        return super()._resolve_estimator(X, y)

    def _player_names(self):
        if self.grid_.patch_size == (1, 1) and self.image_shape_[0] == 1:
            return super()._player_names()  # one player per input column
        return self.grid_.patch_names()

    # -- the game --------------------------------------------------------------------
    def _make_grid(self):
        vit = find_vision_transformer(self.estimator_)
        patch_size = self.patch_size
        if patch_size is None and vit is not None:
            patch_size = vit.patch_size
        if patch_size is None and self._tabular:
            patch_size = 1  # rows of unknown image shape: one player per column
        return PatchGrid(self.image_shape_, patch_size)

    def _make_game(self, X):
        vf = self.value_function
        grid = self.grid_
        if isinstance(vf, Game):
            if vf.n_players != grid.n_patches:
                raise ValueError(
                    f"The game has {vf.n_players} players; the images have "
                    f"{grid.n_patches} patches {grid.grid}."
                )
            return vf
        if vf == "surrogate":
            params = {"device": self.device, "verbose": self.verbose}
            params.update(self.surrogate_params or {})
            params.setdefault("vit_params", self.vit_params)
            self.surrogate_ = fit_image_surrogate(
                self.estimator_,
                X,
                grid,
                removal=self.removal,
                link=self.link,
                random_state=self._rng_seed(4),
                **params,
            )
            return self.surrogate_
        if vf != "model":
            raise ValueError(
                f"value_function must be one of {VALUE_FUNCTIONS} or a Game instance, "
                f"got {vf!r}."
            )
        vit = find_vision_transformer(self.estimator_)
        f = ImageModelFunction(self.estimator_, grid)
        if vit is not None:
            _check_vit_grid(vit, grid)
            module = copy.deepcopy(vit)
            module.removal = self.removal
            return ImageSurrogateGame(
                module, grid, link=self.link, output_names=f.output_names
            )
        game = BaselineGame(
            f, X.mean(axis=0), link=self.link, players=grid.pixel_groups()
        )
        game.output_names = f.output_names
        return game

    def _grand_and_empty(self, X):
        """``(v(full), v(∅), evaluations per row)`` with ``v(∅)`` cached when constant."""
        game = self.game_
        if self._empty_value is None:
            return super()._grand_and_empty(X)
        full = game(X, np.ones((1, game.n_players), dtype=bool))[:, 0]
        return full, np.broadcast_to(self._empty_value, full.shape), 1

    # -- training --------------------------------------------------------------------
    def _fit_explainer(self, X, y):
        self._seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.grid_ = self._make_grid()
        self.n_patches_ = self.grid_.n_patches
        self.game_ = self._make_game(X)
        full, empty = self.game_.grand_and_empty(X[:1])
        K = full.shape[1]
        names = self.game_.output_names
        self.output_names_ = (
            [str(n) for n in names]
            if names is not None and len(names) == K
            else [f"output_{k}" for k in range(K)]
        )
        self._is_binary_classifier = K == 2 and _is_classifier(self.estimator_)
        constant_empty = self.value_function in VALUE_FUNCTIONS
        self._empty_value = empty[0] if constant_empty else None
        self._fit_network(X)

    def _fit_network(self, X):
        game, grid = self.game_, self.grid_
        d = grid.n_patches
        full, empty, _ = self._grand_and_empty(X)
        total = full - empty
        K = total.shape[1]
        probabilities = self.link == "identity" and _on_simplex(full)
        self._output_scale = 1.0 if probabilities else _value_bound(total)
        seed = self._rng_seed(7)
        images = grid.images(X)
        self.history_ = []
        if d < 2:  # one player: φ = v(full) − v(∅), nothing to learn
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.module_ = self._make_module(K, images).eval()
            return
        data = {
            "x": images,
            "rows": X.astype(np.float32),
            "empty": empty.astype(np.float32),
            "total": total.astype(np.float32),
        }
        m = int(self.n_coalitions)
        m += m % 2 if self.paired_sampling else 0
        sampler = CoalitionSampler(d, "shapley", paired=self.paired_sampling)
        rng = np.random.default_rng(self._rng_seed(5))
        fraction = self.validation_fraction if self.early_stopping else 0
        train, valid = split_rows(len(X), fraction, rng)
        valid_data = None
        if len(valid):
            masks = sampler.sample(len(valid) * m, rng)[: len(valid) * m]
            masks = masks.reshape(len(valid), m, d)
            valid_data = {key: value[valid] for key, value in data.items()}
            valid_data["masks"] = masks
            valid_data["values"] = game(X[valid], masks).astype(np.float32)
        net = fit_net(
            ShapleyNet,
            lambda: self._make_module(K, images[train]),
            ({key: value[train] for key, value in data.items()}, None),
            valid=None if valid_data is None else (valid_data, None),
            seed=seed,
            optimizer=torch.optim.AdamW,
            device=self.device,
            criterion=nn.MSELoss,  # unused: get_loss computes the Shapley loss
            optimizer__weight_decay=self.weight_decay,
            lr=self.learning_rate,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            callbacks=training_callbacks(
                early_stopping=valid_data is not None,
                n_iter_no_change=self.n_iter_no_change,
                schedule="cosine",
                max_epochs=self.max_epochs,
            ),
            game=game,
            n_coalitions=m,
            sampler=sampler,
            mask_seed=self._rng_seed(6),
            verbose=self.verbose,
        )
        self.module_ = net.module_.eval()
        self.history_ = net.history

    def _make_module(self, n_outputs, images):  # pragma: no cover - interface
        raise NotImplementedError

    # -- inference -------------------------------------------------------------------
    def _estimate(self, X, batch_size=256):
        full, empty, evaluations = self._grand_and_empty(X)
        total = full - empty
        d = self.grid_.n_patches
        if d < 2 or len(X) == 0:
            values = np.repeat(total[:, None, :] / max(d, 1), d, axis=1)
        else:
            images = self.grid_.images(X)
            param = next(self.module_.parameters())
            chunks = []
            with torch.no_grad(), torch_threads():
                for start in range(0, len(X), batch_size):
                    stop = start + batch_size
                    x = torch.as_tensor(images[start:stop], device=param.device)
                    t = torch.as_tensor(
                        total[start:stop], dtype=torch.float32, device=param.device
                    )
                    chunks.append(self.module_(x, t).double().cpu().numpy())
            values = np.concatenate(chunks)
            values += (total - values.sum(axis=1))[:, None, :] / d
        return ShapleyValues(values, np.array(empty), np.full(len(X), evaluations))

    def heatmap(self, values):
        """Map per-patch attributions to pixel heatmaps.

        Parameters
        ----------
        values : array-like of shape (..., n_patches) or (..., n_patches, n_outputs), or Explanation
            E.g. ``transform(X)`` or ``explain(X)``.

        Returns
        -------
        ndarray of shape (..., H, W) or (..., H, W, n_outputs)
            Every pixel carries its patch's attribution.
        """
        check_is_fitted(self)
        values = getattr(values, "values", values)
        return self.grid_.heatmap(values)


def _value_bound(total):
    """Attribution scale of games other than probabilities: 2 max ``|v(1) − v(0)|``."""
    bound = float(np.abs(total).max()) if np.size(total) else 0.0
    return max(2.0 * bound, 1.0)


_SHARED_PARAMETERS = """
    estimator : classifier, FrozenEstimator, torch.nn.Module or callable, default=None
        The image classifier to explain: a
        :class:`~sklearn_shapley.vision.ViTClassifier` (fitted, frozen, or unfitted
        and then fitted on ``(X, y)``), a
        :class:`~sklearn_shapley.vision.VisionTransformer`, another torch module
        (``(n, C, H, W) -> logits``), any fitted scikit-learn classifier on flattened
        images, or a callable on images returning probabilities or logits.
    image_shape : tuple of int, default=None
        ``(C, H, W)``; taken from 3-/4-D input or from a vision transformer when not
        given. Needed to explain flattened rows as images: without it, rows are
        1-pixel-high images with one-pixel patches (every column a player).
    patch_size : int, pair of int or None, default=None
        The players are the patches of this size (right / bottom edges padded). None:
        the vision transformer's patch size, else a grid of at most 4 x 4 patches.
    value_function : {"surrogate", "model"} or Game, default="surrogate"
        ``"surrogate"``: fine-tune a masked copy of the classifier
        (:func:`~sklearn_shapley.vision.fit_image_surrogate`, KL to the model's
        predictions, uniform cardinality); ``"model"``: the classifier's own masked
        predictions (a vision transformer trained with random masking, removal by
        ``removal``; any other model gets held-out patches filled with the mean
        training image); or a :class:`~sklearn_shapley.games.Game` over the patches.
    removal : {"attention", "zeros", "mask_token"}, default="attention"
        How a vision transformer holds patches out (see
        :class:`~sklearn_shapley.vision.VisionTransformer`).
    link : {"identity", "logit", "log", "log_softmax"} or callable, default="identity"
        Applied to the class probabilities before the game is formed (identity:
        explain probabilities, as ViT Shapley does).
    vit_params : dict, default=None
        ``embed_dim``, ``depth``, ``n_heads``, ``mlp_ratio`` of a vision transformer
        built from scratch (the surrogate of a model that is not a torch network, or
        the explainer when there is no vision transformer to start from); defaults
        64, 4, 4, 4.0.
    normalization : {"additive", "multiplicative", "none"}, default="additive"
        Efficiency layer of the explainer (applied in float64 again at inference).
    paired_sampling : bool, default=True
        Draw every training coalition together with its complement.
    n_coalitions : int, default=32
        Shapley-kernel coalitions per image and batch (ViT Shapley: 32).
    batch_size : int, default=32
        Images per optimizer step.
    learning_rate : float, default=1e-3
        AdamW's initial learning rate, decayed to 0 by a cosine over ``max_epochs``
        (ViT Shapley fine-tunes ViT-Base with 1e-4; small networks trained on the CPU
        want more).
    weight_decay : float, default=0.01
        AdamW's weight decay.
    max_epochs : int, default=50
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the images, compute the Shapley loss on
        them with fixed seeded coalitions after every epoch, stop after ``n_iter_no_change``
        epochs without improvement and restore the best weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    surrogate_params : dict, default=None
        Keyword arguments of :func:`~sklearn_shapley.vision.fit_image_surrogate`
        (``max_epochs``, ``learning_rate``, ``batch_size``, ``vit_params``, ...).
    output : int, str or None, default=None
        Class ``transform`` returns (see :class:`~sklearn_shapley.BaseExplainer`):
        by default the predicted class of each image (the positive class for binary
        classifiers).
    device : str, default="cpu"
    random_state : int, RandomState or None, default=None
        Seeds the splits, the coalitions and torch (in forked RNGs): equal seeds give
        equal explainers.
    verbose : int, default=0
        Print skorch's per-epoch logs."""

_SHARED_ATTRIBUTES = """
    estimator_ : the explained classifier
    grid_ : PatchGrid
        The patches (players): ``grid_.grid`` rows and columns of patches.
    n_patches_ : int
    image_shape_ : tuple of int
        ``(C, H, W)``.
    game_ : Game
        The value function the explainer was trained on.
    surrogate_ : ImageSurrogateGame
        The fine-tuned surrogate (``value_function="surrogate"``), a game over patches.
    module_ : torch.nn.Module
        The trained explainer network.
    history_ : skorch History
        Training and validation Shapley losses (summed over classes) per epoch.
    n_features_in_ : int
        ``C·H·W``.
    output_names_ : list of str"""


class ViTShapleyExplainer(_ImageShapleyExplainer):
    """ViT Shapley: a vision transformer trained to output patch Shapley values.

    ``fit`` builds the game over image patches (by default a surrogate: a copy of the
    classifier fine-tuned to predict with patches held out, kept as ``surrogate_``),
    then trains the explainer: a vision transformer initialised from the surrogate
    (``init``) whose head is one extra attention block, three fully connected layers
    (width 4 x the embedding) and a tanh, giving one value per patch and class, with
    the additive efficient normalization as its output layer. Training minimises
    ``Σ_k (v_xk(S) − v_xk(∅) − 1_Sᵀ φ_k(x))²`` over images and ``n_coalitions``
    paired Shapley-kernel coalitions each (fresh every batch) through skorch with
    AdamW and a cosine schedule, early stopping on held-out images. The loss is a
    certificate: ``E‖φ̂ − φ‖₂ ≤ sqrt(2 H_{d−1} (L(θ) − L*))``
    (:func:`sklearn_shapley.vision.metrics.shapley_error_bound`).

    ``transform(X)`` returns ``(n, n_patches)`` for the selected class, ``explain(X)``
    an :class:`~sklearn_shapley.Explanation` with values ``(n, n_patches, n_classes)``
    (``base_values + values.sum(axis=1)`` = the surrogate's prediction on the full
    image); :meth:`heatmap` maps attributions to ``(H, W)`` pixel maps. Explaining an
    image costs one explainer pass and one surrogate pass.

    scikit-learn's estimator checks feed 2-D tabular ``X``: rows are then taken as
    images ``(1, 1, n_features)`` (or ``image_shape`` when given), so the explainer
    is a regular transformer on flattened images.

    Parameters
    ----------%s
    init : {"surrogate", "model", "scratch"}, default="surrogate"
        The explainer's backbone: a copy of the surrogate's vision transformer (ViT
        Shapley's best choice), of the explained one, or a new one (``vit_params``).
        When the chosen network is not a vision transformer a new one is built.

    Attributes
    ----------%s

    See Also
    --------
    UNetShapleyExplainer : the same training with a convolutional explainer.
    sklearn_shapley.vision.ViTClassifier : a vision transformer classifier.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn_shapley import ViTClassifier, ViTShapleyExplainer
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X.reshape(-1, 1, 8, 8)
    >>> small = {"embed_dim": 16, "depth": 1, "n_heads": 2}
    >>> clf = ViTClassifier(patch_size=2, max_epochs=2, random_state=0, **small)
    >>> clf = clf.fit(X[:300], y[:300])
    >>> explainer = ViTShapleyExplainer(
    ...     FrozenEstimator(clf), max_epochs=2, surrogate_params={"max_epochs": 2},
    ...     random_state=0,
    ... ).fit(X[:300])
    >>> explainer.transform(X[:2]).shape
    (2, 16)
    >>> explainer.heatmap(explainer.transform(X[:2])).shape
    (2, 8, 8)
    """

    _parameter_constraints: dict = {
        "init": [StrOptions({"surrogate", "model", "scratch"})],
    }

    def __init__(
        self,
        estimator=None,
        *,
        image_shape=None,
        patch_size=None,
        value_function="surrogate",
        removal="attention",
        link="identity",
        init="surrogate",
        vit_params=None,
        normalization="additive",
        paired_sampling=True,
        n_coalitions=32,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.01,
        max_epochs=50,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        surrogate_params=None,
        output=None,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            estimator,
            image_shape=image_shape,
            patch_size=patch_size,
            value_function=value_function,
            removal=removal,
            link=link,
            vit_params=vit_params,
            normalization=normalization,
            paired_sampling=paired_sampling,
            n_coalitions=n_coalitions,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            max_epochs=max_epochs,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            surrogate_params=surrogate_params,
            output=output,
            device=device,
            random_state=random_state,
            verbose=verbose,
        )
        self.init = init

    def _make_module(self, n_outputs, images):
        backbone = None
        if self.init == "surrogate":
            backbone = find_vision_transformer(getattr(self.game_, "module", None))
        elif self.init == "model":
            backbone = find_vision_transformer(self.estimator_)
        if backbone is None:
            backbone = _new_vit(
                self.grid_, n_outputs, self.vit_params, self.removal, images
            )
        else:
            _check_vit_grid(backbone, self.grid_)
            backbone = copy.deepcopy(backbone)
        return ViTShapleyModule(
            backbone, n_outputs, self.normalization, self._output_scale
        )


ViTShapleyExplainer.__doc__ = ViTShapleyExplainer.__doc__ % (
    _SHARED_PARAMETERS,
    _SHARED_ATTRIBUTES,
)


class UNetShapleyExplainer(_ImageShapleyExplainer):
    """FastSHAP for images with a convolutional U-Net explainer.

    The game and the training are those of :class:`ViTShapleyExplainer` (a masked
    surrogate of the classifier, paired Shapley-kernel coalitions, additive efficient
    normalization, AdamW with a cosine schedule through skorch); the explainer is a
    small U-Net (:class:`UNetShapleyModule`) whose output is at the patch grid, one
    value per patch and class. Meant for classifiers that are not transformers (a CNN,
    a scikit-learn model on pixels), where there is no vision transformer to start
    from; the surrogate of a torch CNN is a copy of it with held-out patches filled
    with the mean image, that of a black box a vision transformer (``vit_params``).

    Parameters
    ----------%s
    channels : int, default=32
        Width of the U-Net's first stage (doubled at each level).

    Attributes
    ----------%s

    See Also
    --------
    ViTShapleyExplainer : the vision transformer explainer.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_shapley import UNetShapleyExplainer
    >>> X, y = load_digits(return_X_y=True)
    >>> model = FrozenEstimator(LogisticRegression(max_iter=500).fit(X, y))
    >>> explainer = UNetShapleyExplainer(
    ...     model, image_shape=(1, 8, 8), patch_size=2, value_function="model",
    ...     max_epochs=2, channels=8, random_state=0,
    ... ).fit(X[:200])
    >>> explainer.explain(X[:2]).values.shape
    (2, 16, 10)
    """

    _parameter_constraints: dict = {
        "channels": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        estimator=None,
        *,
        image_shape=None,
        patch_size=None,
        value_function="surrogate",
        removal="attention",
        link="identity",
        channels=32,
        vit_params=None,
        normalization="additive",
        paired_sampling=True,
        n_coalitions=32,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.01,
        max_epochs=50,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        surrogate_params=None,
        output=None,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            estimator,
            image_shape=image_shape,
            patch_size=patch_size,
            value_function=value_function,
            removal=removal,
            link=link,
            vit_params=vit_params,
            normalization=normalization,
            paired_sampling=paired_sampling,
            n_coalitions=n_coalitions,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            max_epochs=max_epochs,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            surrogate_params=surrogate_params,
            output=output,
            device=device,
            random_state=random_state,
            verbose=verbose,
        )
        self.channels = channels

    def _make_module(self, n_outputs, images):
        mean, std = pixel_statistics(images)
        return UNetShapleyModule(
            self.grid_,
            n_outputs,
            channels=self.channels,
            normalization=self.normalization,
            output_scale=self._output_scale,
            pixel_mean=mean,
            pixel_std=std,
        )


UNetShapleyExplainer.__doc__ = UNetShapleyExplainer.__doc__ % (
    _SHARED_PARAMETERS,
    _SHARED_ATTRIBUTES,
)
