"""Images as games: patches are the players.

- :class:`PatchGrid`: the patch layout of an image shape (patch size, grid, padding) and
  the maps between patches and pixels: coalition masks upsampled to pixel masks,
  per-patch attributions mapped to ``(H, W)`` heatmaps, pixel attributions summed into
  patches.
- :func:`patches_to_heatmap`: the same heatmap map as a function.
- :func:`check_images`: accept images ``(n, C, H, W)``, ``(n, H, W)`` or flattened rows
  ``(n, C·H·W)`` (numpy or torch) and return ``(n, C, H, W)`` float arrays.
- :class:`MaskedImageModel`: a torch image model (a CNN) that takes a patch mask, held-out
  patches filled with fixed pixel values.
- :class:`ImageSurrogateGame`: any torch module ``g(images, mask) -> logits`` as a
  :class:`~sklearn_shapley.games.Game` over patches: ``v_x(S)`` are its class
  probabilities with only the patches in ``S`` known.

Patches that do not tile the image evenly are completed by padding the right and bottom
edges; padded pixels belong to the last patch of their row / column.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..amortized._training import torch_threads
from ..games import Game, apply_link

__all__ = [
    "ImageSurrogateGame",
    "MaskedImageModel",
    "PatchGrid",
    "check_images",
    "patches_to_heatmap",
]

#: Patch grid used when no patch size is given: at most 4 x 4 patches (16 players).
AUTO_GRID = 4


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(
            f"{name} must be a positive int or a pair of them, got {value}."
        )
    return value


def _image_shape(image_shape):
    shape = tuple(int(s) for s in np.atleast_1d(image_shape))
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"image_shape must be (channels, height, width) or (height, width), got "
            f"{image_shape}."
        )
    return shape


class PatchGrid:
    """The patch layout of images of one shape.

    Parameters
    ----------
    image_shape : tuple of int
        ``(channels, height, width)`` (or ``(height, width)`` for one channel).
    patch_size : int, pair of int or None, default=None
        Patch height and width. ``None`` picks the smallest patches that give a grid
        of at most 4 x 4 (16 players, few enough for exact Shapley values).

    Attributes
    ----------
    image_shape : tuple of int
        ``(C, H, W)``.
    patch_size : tuple of int
        ``(ph, pw)``.
    grid : tuple of int
        ``(gh, gw)`` patches per column and per row, ``ceil(H / ph)``, ``ceil(W / pw)``.
    n_patches : int
        ``gh * gw``, the players; patch ``r * gw + c`` is in grid row ``r``, column ``c``.
    padded_shape : tuple of int
        ``(gh * ph, gw * pw)``, the image size after padding.
    """

    def __init__(self, image_shape, patch_size=None):
        self.image_shape = _image_shape(image_shape)
        _, H, W = self.image_shape
        if patch_size is None:
            patch_size = (math.ceil(H / AUTO_GRID), math.ceil(W / AUTO_GRID))
        self.patch_size = _pair(patch_size, "patch_size")
        ph, pw = self.patch_size
        self.grid = (math.ceil(H / ph), math.ceil(W / pw))
        self.n_patches = self.grid[0] * self.grid[1]
        self.padded_shape = (self.grid[0] * ph, self.grid[1] * pw)

    def __repr__(self):
        return (
            f"PatchGrid(image_shape={self.image_shape}, patch_size={self.patch_size}, "
            f"grid={self.grid})"
        )

    @property
    def n_pixels(self):
        """``C * H * W``, the length of a flattened image."""
        C, H, W = self.image_shape
        return C * H * W

    def patch_names(self):
        """``["patch_0_0", "patch_0_1", ...]``: grid row and column of each player."""
        gh, gw = self.grid
        return np.array(
            [f"patch_{r}_{c}" for r in range(gh) for c in range(gw)], dtype=object
        )

    def patch_index(self):
        """Patch of every pixel: an int array ``(H, W)``."""
        _, H, W = self.image_shape
        ph, pw = self.patch_size
        rows = np.arange(H) // ph
        cols = np.arange(W) // pw
        return rows[:, None] * self.grid[1] + cols[None, :]

    def pixel_groups(self):
        """Flattened-row column indices of each patch (all channels): the players."""
        C, H, W = self.image_shape
        index = np.broadcast_to(self.patch_index(), (C, H, W)).reshape(-1)
        return [np.flatnonzero(index == p) for p in range(self.n_patches)]

    def images(self, X, dtype=np.float32):
        """Rows ``(n, C·H·W)`` or images ``(n, C, H, W)`` as an ``(n, C, H, W)`` array."""
        X = np.asarray(X, dtype=dtype)
        return X.reshape((len(X),) + self.image_shape)

    def pixel_masks(self, masks):
        """Coalitions ``(..., n_patches)`` upsampled to pixel masks ``(..., H, W)``.

        Works on numpy arrays and torch tensors (nearest-neighbour upsampling: every
        pixel takes its patch's entry).
        """
        index = self.patch_index()
        if isinstance(masks, torch.Tensor):
            index = torch.as_tensor(index, device=masks.device)
        return masks[..., index]

    def padded_pixel_masks(self, masks):
        """Like :meth:`pixel_masks` on the padded image ``(..., gh·ph, gw·pw)``."""
        ph, pw = self.patch_size
        gh, gw = self.grid
        index = (np.arange(gh * ph) // ph)[:, None] * gw + (np.arange(gw * pw) // pw)[
            None
        ]
        if isinstance(masks, torch.Tensor):
            index = torch.as_tensor(index, device=masks.device)
        return masks[..., index]

    def heatmap(self, values):
        """Per-patch values ``(..., n_patches[, K])`` as pixel maps ``(..., H, W[, K])``.

        The player axis is the last one, or the one before it when ``values`` has an
        output axis (``values.shape[-2] == n_patches`` and the last axis does not
        match); every pixel gets its patch's value.
        """
        values = np.asarray(values)
        d = self.n_patches
        if values.shape[-1] == d:
            return values[..., self.patch_index()]
        if values.ndim >= 2 and values.shape[-2] == d:
            moved = np.moveaxis(values, -1, 0)[..., self.patch_index()]
            return np.moveaxis(moved, 0, -1)
        raise ValueError(
            f"values of shape {values.shape} have no axis of {d} patches "
            f"(grid {self.grid})."
        )

    def pool(self, pixel_values):
        """Pixel attributions ``(n, C, H, W)`` (or flat) summed into patches ``(n, d)``."""
        pixel_values = np.asarray(pixel_values, dtype=np.float64)
        pixel_values = pixel_values.reshape((len(pixel_values), -1))
        C, H, W = self.image_shape
        index = np.broadcast_to(self.patch_index(), (C, H, W)).reshape(-1)
        out = np.zeros((len(pixel_values), self.n_patches))
        np.add.at(out.T, index, pixel_values.T)
        return out

    def pad(self, x):
        """Zero-pad a tensor ``(n, C, H, W)`` to the padded size (right and bottom)."""
        H, W = x.shape[-2:]
        Hp, Wp = self.padded_shape
        if (Hp, Wp) == (H, W):
            return x
        return nn.functional.pad(x, (0, Wp - W, 0, Hp - H))


def patches_to_heatmap(values, image_shape, patch_size=None):
    """Map per-patch attributions back to the pixels of the image.

    Parameters
    ----------
    values : array-like of shape (..., n_patches) or (..., n_patches, n_outputs)
        Attributions of the patches (players), e.g. ``transform``'s output.
    image_shape : tuple of int
        ``(C, H, W)`` or ``(H, W)``.
    patch_size : int, pair of int or None, default=None
        As for :class:`PatchGrid`.

    Returns
    -------
    ndarray of shape (..., H, W) or (..., H, W, n_outputs)
        Every pixel carries its patch's value (nearest upsampling).
    """
    return PatchGrid(image_shape, patch_size).heatmap(values)


def check_images(X, image_shape=None):
    """Images as a float ``(n, C, H, W)`` numpy array.

    Parameters
    ----------
    X : array-like or torch.Tensor
        ``(n, C, H, W)``, ``(n, H, W)`` (one channel) or rows ``(n, C·H·W)`` (then
        ``image_shape`` is needed).
    image_shape : tuple of int, default=None
        ``(C, H, W)`` or ``(H, W)``; checked against 3-/4-D input.

    Returns
    -------
    ndarray of shape (n, C, H, W)
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"Images must be numeric, got dtype {X.dtype}.")
    X = X.astype(np.float64 if X.dtype == np.float64 else np.float32, copy=False)
    shape = None if image_shape is None else _image_shape(image_shape)
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim == 4:
        if shape is not None and X.shape[1:] != shape:
            raise ValueError(
                f"Images have shape {X.shape[1:]}, expected image_shape {shape}."
            )
        return X
    if X.ndim == 2:
        if shape is None:
            raise ValueError(
                "Flattened images (n, C*H*W) need image_shape=(C, H, W); pass it or "
                "pass images of shape (n, C, H, W)."
            )
        if X.shape[1] != int(np.prod(shape)):
            raise ValueError(
                f"Rows have {X.shape[1]} values; image_shape {shape} has "
                f"{int(np.prod(shape))} pixels."
            )
        return X.reshape((len(X),) + shape)
    raise ValueError(
        f"Images must be (n, C, H, W), (n, H, W) or (n, C*H*W), got shape {X.shape}."
    )


class MaskedImageModel(nn.Module):
    """A torch image model made to take a patch mask: held-out patches are filled.

    ``forward(x, mask)`` replaces the pixels of the patches with ``mask == False`` by
    ``fill`` and calls ``model``; it returns logits (log-probabilities when the model
    outputs probabilities), so that a softmax gives the class probabilities.

    Parameters
    ----------
    model : torch.nn.Module
        Takes images ``(n, C, H, W)`` and returns logits or probabilities ``(n, K)``.
    grid : PatchGrid
    fill : array-like of shape (C, H, W) or float, default=0.0
        Pixel values of held-out patches (e.g. the mean training image).
    outputs : {"logits", "probabilities"}, default="logits"
        What ``model`` returns.
    """

    def __init__(self, model, grid, fill=0.0, outputs="logits"):
        super().__init__()
        if outputs not in ("logits", "probabilities"):
            raise ValueError(
                f"outputs must be 'logits' or 'probabilities', got {outputs!r}."
            )
        self.model = model
        self.grid = grid
        self.outputs = outputs
        fill = torch.as_tensor(np.asarray(fill, dtype=np.float32))
        self.register_buffer("fill", torch.broadcast_to(fill, grid.image_shape).clone())

    def forward(self, x, mask=None):
        """Logits ``(n, K)`` of images ``x (n, C, H, W)`` with patches ``mask (n, d)``."""
        x = x.reshape((len(x),) + self.grid.image_shape)
        if mask is not None:
            pixels = self.grid.pixel_masks(mask.bool())[:, None]
            x = torch.where(pixels, x, self.fill.to(x.dtype))
        out = self.model(x)
        if self.outputs == "probabilities":
            out = torch.log(out.clamp_min(1e-12))
        return out


class ImageSurrogateGame(Game):
    """A masked image network ``g(x_S)`` as a game over patches.

    ``game(X, masks)`` returns ``(n, m, K)``: ``softmax(g(x, S))`` (with ``link``
    applied) for every image and coalition of patches. ``g`` is any module whose
    ``forward(x, mask)`` takes images ``(n, C, H, W)`` and boolean patch masks
    ``(n, n_patches)`` and returns logits: a
    :class:`~sklearn_shapley.vision.VisionTransformer` (attention masking, zeroed
    patches or a mask token), a :class:`MaskedImageModel`, a fine-tuned surrogate.

    Parameters
    ----------
    module : torch.nn.Module
        ``module(x, mask) -> logits``.
    grid : PatchGrid
        The patches (players).
    link : str or callable, default="identity"
        Applied to the probabilities (see :func:`~sklearn_shapley.games.apply_link`).
    output_names : list of str, default=None
    batch_size : int, default=2048
        Most masked images sent through the network at once. The network runs on one
        torch thread (as the package's training loops do: small networks are as fast
        on one thread and much faster on a busy machine).

    Attributes
    ----------
    n_players, n_outputs : int
    history : list of dict
        The training history of a fitted surrogate (empty otherwise).
    """

    def __init__(
        self, module, grid, *, link="identity", output_names=None, batch_size=2048
    ):
        self.module = module.eval()
        self.grid = grid
        self.link = link
        self.output_names = output_names
        self.batch_size = int(batch_size)
        self.n_players = grid.n_patches
        self.n_features = grid.n_pixels
        self.n_outputs = None
        self.history = []

    def with_link(self, link):
        """A copy of this game (sharing the network) that applies ``link`` instead."""
        game = ImageSurrogateGame(
            self.module,
            self.grid,
            link=link,
            output_names=self.output_names,
            batch_size=self.batch_size,
        )
        game.n_outputs, game.history = self.n_outputs, self.history
        return game

    def predict(self, X, masks):
        """Class probabilities ``(n, m, K)`` before the link.

        Parameters
        ----------
        X : array-like of shape (n, C·H·W) or (n, C, H, W)
        masks : array-like of bool, shape (m, n_patches) or (n, m, n_patches)
        """
        images = self.grid.images(X)
        masks = np.asarray(masks, dtype=bool)
        if masks.shape[-1] != self.n_players:
            raise ValueError(
                f"masks have {masks.shape[-1]} players; this game has {self.n_players}."
            )
        n = len(images)
        shared = masks.ndim == 2
        if not shared and masks.shape[0] != n:
            raise ValueError(f"Per-row masks have {masks.shape[0]} rows, X has {n}.")
        m = masks.shape[-2]
        param = next(self.module.parameters(), None)
        device = "cpu" if param is None else param.device
        dtype = torch.float32 if param is None else param.dtype
        pairs = np.arange(n * m)
        if getattr(self.module, "removal", None) == "attention":
            # Equal-size coalitions together: the network then drops held-out tokens.
            sizes = (masks if not shared else masks[None]).sum(axis=-1)
            sizes = np.broadcast_to(sizes, (n, m)).reshape(-1)
            pairs = pairs[np.argsort(sizes, kind="stable")]
            bounds = np.flatnonzero(np.diff(sizes[pairs])) + 1
        else:
            bounds = np.zeros(0, dtype=np.int64)
        out = np.empty((n * m, 0))
        with torch.no_grad(), torch_threads():
            for group in np.split(pairs, bounds):
                for start in range(0, len(group), self.batch_size):
                    sl = group[start : start + self.batch_size]
                    rows, cols = sl // m, sl % m
                    x = torch.as_tensor(images[rows], dtype=dtype, device=device)
                    mask = masks[cols] if shared else masks[rows, cols]
                    mask = torch.as_tensor(mask, device=device)
                    probs = torch.softmax(self.module(x, mask).double(), dim=1)
                    if out.shape[1] == 0:
                        out = np.empty((n * m, probs.shape[1]))
                    out[sl] = probs.cpu().numpy()
        if n * m == 0:
            out = np.zeros((0, self.n_outputs or 0))
        self.n_outputs = out.shape[1]
        return out.reshape(n, m, -1)

    def __call__(self, X, masks):
        out = self.predict(X, masks)
        n, m, K = out.shape
        return apply_link(out.reshape(n * m, K), self.link).reshape(n, m, K)
