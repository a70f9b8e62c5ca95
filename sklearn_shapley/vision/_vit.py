"""A vision transformer that evaluates images with patches held out, and its classifier.

- :class:`VisionTransformer`: a ViT (patch embedding, class token, learned positional
  embeddings initialised with unit variance, pre-norm blocks) whose
  ``forward(x, mask)`` takes a boolean patch mask.
  Held-out patches are removed by **attention masking** (ViT Shapley's choice: in every
  self-attention layer the logits of the held-out keys are set to −∞ before the
  softmax, the class token is always kept, so the class token's output is exactly that
  of the model run on the kept patches alone), by **zeroed patches** (their normalised
  pixels set to 0) or by a learned **mask token** replacing their embeddings.
- :class:`ViTClassifier`: a scikit-learn classifier training a
  :class:`VisionTransformer` through skorch (AdamW, cosine schedule, early stopping),
  optionally with **random masking** (ViT Shapley's "classifier trained with held-out
  patches", whose masked predictions estimate ``p(y | x_S)`` directly).

No weights are downloaded: every network here is trained from scratch.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from ..amortized._nets import _CoalitionNet
from ..amortized._training import fit_net, split_rows, training_callbacks
from ..sampling import CoalitionSampler
from ._image import PatchGrid, check_images

__all__ = ["VisionTransformer", "ViTClassifier", "REMOVALS"]

#: How a :class:`VisionTransformer` removes held-out patches.
REMOVALS = ("attention", "zeros", "mask_token")


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention whose held-out keys get logit −∞.

    Parameters
    ----------
    dim : int
        Token width.
    n_heads : int
        Attention heads (must divide ``dim``).
    """

    def __init__(self, dim, n_heads):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide embed_dim={dim}.")
        self.n_heads = int(n_heads)
        self.scale = (dim // n_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, key_mask=None, need_weights=False):
        """Outputs ``(n, t, dim)`` and attention ``(n, heads, t, t)`` (or None).

        ``key_mask (n, t)`` is True for the tokens that may be attended to; the
        attention weights are computed only when ``need_weights`` (otherwise a fused
        kernel is used).
        """
        n, t, dim = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.n_heads, dim // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        keys = None if key_mask is None else key_mask[:, None, None, :]
        if need_weights:
            logits = (q @ k.transpose(-2, -1)) * self.scale
            if keys is not None:
                logits = logits.masked_fill(~keys, float("-inf"))
            attention = logits.softmax(dim=-1)
            out = attention @ v
        else:
            attention = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        out = out.transpose(1, 2).reshape(n, t, dim)
        return self.proj(out), attention


class Block(nn.Module):
    """A pre-norm transformer block: masked self-attention, then a GELU MLP."""

    def __init__(self, dim, n_heads, mlp_ratio=4.0):
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MaskedSelfAttention(dim, n_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, x, key_mask=None, need_weights=False):
        """Tokens ``(n, t, dim)`` and the attention weights (see ``need_weights``)."""
        out, attention = self.attn(self.norm1(x), key_mask, need_weights)
        x = x + out
        return x + self.mlp(self.norm2(x)), attention


class VisionTransformer(nn.Module):
    """A small vision transformer that can hold out image patches.

    ``forward(x, mask=None)`` returns class logits ``(n, n_classes)`` read from the
    class token. ``x`` is ``(n, C, H, W)`` (or flattened rows ``(n, C·H·W)``), pixels
    standardised inside with ``pixel_mean`` / ``pixel_std``; ``mask`` is a boolean
    ``(n, n_patches)`` array of the patches kept (``None``: all).

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)``.
    patch_size : int or pair of int, default=None
        See :class:`~sklearn_shapley.vision.PatchGrid` (``None``: a 4 x 4 grid).
    n_classes : int, default=10
    embed_dim : int, default=64
    depth : int, default=4
        Transformer blocks.
    n_heads : int, default=4
    mlp_ratio : float, default=4.0
        Hidden width of the blocks' MLPs relative to ``embed_dim``.
    removal : {"attention", "zeros", "mask_token"}, default="attention"
        How held-out patches are removed: attention logits of their keys set to −∞ in
        every layer (class token always kept), their standardised pixels set to 0, or
        their patch embeddings replaced by a learned mask token. Can be changed after
        training (the mask token is always part of the parameters).
    pixel_mean, pixel_std : float or array-like of shape (C,), default=0.0, 1.0
        Input standardisation (buffers, so copies of the network keep it).

    Attributes
    ----------
    grid : PatchGrid
    n_patches : int
    """

    def __init__(
        self,
        image_shape,
        patch_size=None,
        n_classes=10,
        embed_dim=64,
        depth=4,
        n_heads=4,
        mlp_ratio=4.0,
        removal="attention",
        pixel_mean=0.0,
        pixel_std=1.0,
    ):
        super().__init__()
        if removal not in REMOVALS:
            raise ValueError(f"removal must be one of {REMOVALS}, got {removal!r}.")
        self.grid = PatchGrid(image_shape, patch_size)
        self.image_shape = self.grid.image_shape
        self.patch_size = self.grid.patch_size
        self.n_patches = self.grid.n_patches
        self.n_classes = int(n_classes)
        self.embed_dim = int(embed_dim)
        self.n_heads = int(n_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.removal = removal
        channels = self.image_shape[0]
        self.patch_embed = nn.Conv2d(
            channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.n_patches, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, n_heads, mlp_ratio) for _ in range(int(depth))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, self.n_classes)
        mean = np.broadcast_to(np.asarray(pixel_mean, np.float32), (channels,))
        std = np.broadcast_to(np.asarray(pixel_std, np.float32), (channels,))
        self.register_buffer("pixel_mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std).reshape(1, -1, 1, 1))
        # Unit-variance positions: with the usual 0.02 a small ViT trained from
        # scratch on a few hundred images barely learns where things are.
        nn.init.normal_(self.pos_embed, std=1.0)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def embed(self, x, mask=None):
        """Tokens ``(n, 1 + n_patches, embed_dim)``: class token, then the patches."""
        x = x.reshape((len(x),) + self.image_shape)
        x = (x - self.pixel_mean) / self.pixel_std
        x = self.grid.pad(x)
        if mask is not None and self.removal == "zeros":
            x = x * self.grid.padded_pixel_masks(mask)[:, None].to(x.dtype)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        if mask is not None and self.removal == "mask_token":
            tokens = torch.where(mask[..., None], tokens, self.mask_token.to(x.dtype))
        cls = self.cls_token.expand(len(x), -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed

    def _key_mask(self, mask):
        if mask is None or self.removal != "attention":
            return None
        keep_cls = torch.ones(len(mask), 1, dtype=torch.bool, device=mask.device)
        return torch.cat([keep_cls, mask], dim=1)

    def forward_features(self, x, mask=None, return_attention=False):
        """Normalised tokens ``(n, 1 + n_patches, embed_dim)`` after the last block.

        With ``return_attention`` also the list of every block's attention weights
        ``(n, n_heads, 1 + n_patches, 1 + n_patches)``.
        """
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device).bool()
        tokens = self.embed(x, mask)
        key_mask = self._key_mask(mask)
        attentions = []
        for block in self.blocks:
            tokens, attention = block(tokens, key_mask, return_attention)
            attentions.append(attention)
        tokens = self.norm(tokens)
        return (tokens, attentions) if return_attention else tokens

    def forward(self, x, mask=None):
        """Class logits ``(n, n_classes)`` with only the patches in ``mask`` known.

        Under attention masking, a batch whose rows all keep the same number of
        patches is run on the kept tokens alone (the same result, fewer tokens).
        """
        if mask is not None and self.removal == "attention" and len(mask):
            mask = torch.as_tensor(mask, device=x.device).bool()
            counts = mask.sum(dim=1)
            if bool((counts == counts[0]).all()):
                return self.head(self._forward_kept(x, mask, int(counts[0])))
        return self.head(self.forward_features(x, mask)[:, 0])

    def _forward_kept(self, x, mask, n_kept):
        """The class token's output computed from the kept tokens only."""
        tokens = self.embed(x)
        positions = torch.argsort(~mask, dim=1, stable=True)[:, :n_kept] + 1
        cls = torch.zeros(len(x), 1, dtype=positions.dtype, device=x.device)
        index = torch.cat([cls, positions], dim=1)
        tokens = torch.gather(
            tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1])
        )
        for block in self.blocks:
            tokens, _ = block(tokens)
        return self.norm(tokens[:, 0])

    def attention_maps(self, x, mask=None):
        """Every block's attention weights, a list of ``(n, heads, t, t)`` tensors."""
        return self.forward_features(x, mask, return_attention=True)[1]


def _init_weights(module):
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MaskedTrainingNet(_CoalitionNet):
    """skorch net training a classifier on cross-entropy, some images masked.

    A share ``random_masking`` of the training images gets a random patch coalition
    (uniform cardinality in ``0..d``, then uniform patches, from ``sampler``); the
    others are seen whole. Validation images are seen whole.
    """

    def __init__(self, *args, random_masking=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.random_masking = random_masking

    def add_coalitions(self, Xi, yi):
        if self.random_masking <= 0:
            return Xi
        n = len(Xi["x"])
        masks = self.sampler.sample(n, self.mask_rng_)[:n]
        masks[self.mask_rng_.random(n) >= self.random_masking] = True
        Xi["mask"] = torch.as_tensor(masks, device=Xi["x"].device)
        return Xi

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return F.cross_entropy(y_pred, y_true.to(y_pred.device).long())


class ViTClassifier(ClassifierMixin, BaseEstimator):
    """Image classifier: a :class:`VisionTransformer` trained from scratch.

    Trained through skorch on cross-entropy with AdamW and a cosine learning-rate
    schedule; early stopping on held-out images restores the best weights. With
    ``random_masking > 0`` that share of training images is shown with a random subset
    of patches held out (uniform cardinality), which makes the classifier's own masked
    predictions usable as a value function (ViT Shapley's masked-training option,
    ``ViTShapleyExplainer(value_function="model")``).

    Parameters
    ----------
    image_shape : tuple of int, default=None
        ``(C, H, W)``; needed for flattened rows ``(n, C·H·W)``, inferred from images
        ``(n, C, H, W)`` / ``(n, H, W)``.
    patch_size : int, pair of int or None, default=None
        Patch size (``None``: a grid of at most 4 x 4 patches).
    embed_dim : int, default=64
    depth : int, default=4
    n_heads : int, default=4
    mlp_ratio : float, default=4.0
    removal : {"attention", "zeros", "mask_token"}, default="attention"
        How the network holds out patches (see :class:`VisionTransformer`).
    random_masking : float, default=0.0
        Share of training images given a random patch coalition.
    max_epochs : int, default=50
    batch_size : int, default=64
    learning_rate : float, default=1e-3
        AdamW's initial learning rate (cosine decay to 0 over ``max_epochs``).
    weight_decay : float, default=0.05
    early_stopping : bool, default=True
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
        Epochs without improvement of the held-out loss before stopping.
    device : str, default="cpu"
    random_state : int, RandomState or None, default=None
        Seeds the split, the masks and torch (in a forked RNG).
    verbose : int, default=0

    Attributes
    ----------
    module_ : VisionTransformer
        The trained network (eval mode).
    classes_ : ndarray
    image_shape_ : tuple of int
    n_features_in_ : int
        ``C·H·W``.
    history_ : skorch History

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_shapley import ViTClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = ViTClassifier(image_shape=(1, 8, 8), patch_size=2, embed_dim=16,
    ...                     depth=1, n_heads=2, max_epochs=2, random_state=0)
    >>> clf.fit(X[:200], y[:200]).predict_proba(X[:3]).shape
    (3, 10)
    """

    def __init__(
        self,
        image_shape=None,
        patch_size=None,
        *,
        embed_dim=64,
        depth=4,
        n_heads=4,
        mlp_ratio=4.0,
        removal="attention",
        random_masking=0.0,
        max_epochs=50,
        batch_size=64,
        learning_rate=1e-3,
        weight_decay=0.05,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.image_shape = image_shape
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.n_heads = n_heads
        self.mlp_ratio = mlp_ratio
        self.removal = removal
        self.random_masking = random_masking
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train the network on images ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like or torch.Tensor
            ``(n, C, H, W)``, ``(n, H, W)`` or ``(n, C·H·W)`` with ``image_shape``.
        y : array-like of shape (n,)

        Returns
        -------
        self
        """
        images = check_images(X, self.image_shape)
        y = np.asarray(y)
        check_classification_targets(y)
        if len(y) != len(images):
            raise ValueError(f"X has {len(images)} images but y has {len(y)} labels.")
        if not 0 <= self.random_masking <= 1:
            raise ValueError(
                f"random_masking must be in [0, 1], got {self.random_masking}."
            )
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        targets = self._encoder.transform(y).astype(np.int64)
        self.image_shape_ = images.shape[1:]
        self.n_features_in_ = int(np.prod(self.image_shape_))
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        pixel_mean, pixel_std = pixel_statistics(images)
        images = images.astype(np.float32)
        gen = np.random.default_rng(seed)
        train, valid = split_rows(
            len(images), self.validation_fraction if self.early_stopping else 0, gen
        )

        def make_module():
            return VisionTransformer(
                self.image_shape_,
                self.patch_size,
                n_classes=len(self.classes_),
                embed_dim=self.embed_dim,
                depth=self.depth,
                n_heads=self.n_heads,
                mlp_ratio=self.mlp_ratio,
                removal=self.removal,
                pixel_mean=pixel_mean,
                pixel_std=pixel_std,
            )

        n_patches = PatchGrid(self.image_shape_, self.patch_size).n_patches
        net = fit_net(
            MaskedTrainingNet,
            make_module,
            ({"x": images[train]}, targets[train]),
            valid=({"x": images[valid]}, targets[valid]) if len(valid) else None,
            seed=seed,
            optimizer=torch.optim.AdamW,
            device=self.device,
            criterion=nn.CrossEntropyLoss,  # unused: get_loss computes it
            optimizer__weight_decay=self.weight_decay,
            lr=self.learning_rate,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            callbacks=training_callbacks(
                early_stopping=len(valid) > 0,
                n_iter_no_change=self.n_iter_no_change,
                schedule="cosine",
                max_epochs=self.max_epochs,
            ),
            random_masking=self.random_masking,
            sampler=CoalitionSampler(n_patches, "uniform", paired=False),
            mask_seed=seed + 1,
            verbose=self.verbose,
        )
        self.module_ = net.module_.eval()
        self.history_ = net.history
        return self

    def _logits(self, X, mask=None, batch_size=1024):
        check_is_fitted(self)
        images = check_images(X, self.image_shape_).astype(np.float32)
        param = next(self.module_.parameters())
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.as_tensor(
                    images[start : start + batch_size], device=param.device
                )
                m = None
                if mask is not None:
                    m = torch.as_tensor(
                        np.asarray(mask, dtype=bool)[start : start + batch_size],
                        device=param.device,
                    )
                out.append(self.module_(x, m).double().cpu())
        if not out:
            return torch.zeros((0, len(self.classes_)), dtype=torch.float64)
        return torch.cat(out)

    def predict_proba(self, X, mask=None):
        """Class probabilities ``(n, n_classes)``.

        Parameters
        ----------
        X : array-like or torch.Tensor
            Images (see :meth:`fit`).
        mask : array-like of bool, shape (n, n_patches), default=None
            Patches kept for each image (removed with the network's ``removal``).
        """
        return torch.softmax(self._logits(X, mask), dim=1).numpy()

    def predict(self, X, mask=None):
        """Predicted labels ``(n,)`` (see :meth:`predict_proba`)."""
        return self.classes_[np.argmax(self.predict_proba(X, mask), axis=1)]


def pixel_statistics(images):
    """Per-channel mean and standard deviation ``(C,)`` of images ``(n, C, H, W)``."""
    images = np.asarray(images, dtype=np.float64)
    if len(images) == 0:
        return np.zeros(images.shape[1]), np.ones(images.shape[1])
    std = images.std(axis=(0, 2, 3))
    return images.mean(axis=(0, 2, 3)), np.where(std > 1e-6, std, 1.0)
