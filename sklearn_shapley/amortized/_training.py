"""The one skorch recipe every amortized network trains with.

FastSHAP, its surrogate, InstaSHAP and ViT Shapley differ in their modules, losses
and data; how they train is the same, and lives here:

- :func:`subsample`: at most so many training rows, so that epochs stay short;
- :func:`split_rows`: the seeded train / validation split (the validation rows get
  fixed coalitions from their caller, so their loss is comparable across epochs);
- :func:`standardizer`: the per-column mean and scale a network's inputs are
  standardised with;
- :func:`torch_threads`, :func:`inference_threads`: thread control;
- :class:`BatchIterator`: mini-batches of in-memory dict data by fancy indexing;
- :func:`training_callbacks`: the learning-rate schedule, an average of the weights
  (:class:`WeightAverage`) and early stopping on the held-out loss with the best
  weights restored;
- :func:`fit_net`: builds the skorch net around a module made inside a seeded,
  forked torch RNG and fits it.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from skorch.utils import to_tensor

__all__ = [
    "MAX_ROWS",
    "BatchIterator",
    "WeightAverage",
    "fit_net",
    "inference_threads",
    "split_rows",
    "standardizer",
    "subsample",
    "torch_threads",
    "training_callbacks",
]


def split_rows(n, validation_fraction, rng):
    """``(train, valid)`` row indices of a seeded shuffle; no validation rows when
    too few for both sides."""
    order = rng.permutation(n)
    n_valid = int(round(validation_fraction * n)) if validation_fraction else 0
    if n_valid < 1 or n - n_valid < 1:
        return order, order[:0]
    return order[n_valid:], order[:n_valid]


#: Most rows an amortized explainer trains on (a random subsample beyond; FastSHAP's
#: augmented copies of them count), so that an epoch, hence the fit, stays short.
MAX_ROWS = 10_000


def subsample(X, max_rows, random_state):
    """At most ``max_rows`` rows of ``X``: all of them, or a random subsample in
    their order, seeded by ``random_state`` (scikit-learn's kinds)."""
    if len(X) <= max_rows:
        return X
    seed = check_random_state(random_state).randint(2**31 - 1)
    keep = np.random.default_rng(seed).choice(len(X), max_rows, replace=False)
    return X[np.sort(keep)]


def standardizer(X):
    """``(mean, scale)`` of the columns of ``X``; a constant column's scale is 1."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


@contextlib.contextmanager
def torch_threads(n_threads=1):
    """Run the block with ``n_threads`` torch CPU threads (restored after).

    The default of one: the networks here are small, and one thread is as fast as
    several on an idle machine and several times faster on a busy one, where
    intra-op threads wait for each other. ``None`` is one, as scikit-learn's
    ``n_jobs``; a negative number leaves torch's own.
    """
    before = torch.get_num_threads()
    if n_threads is not None and n_threads < 0:
        yield
        return
    torch.set_num_threads(1 if n_threads is None else int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Most values (rows x coalitions) evaluated on one torch thread at inference.
SMALL_BATCH = 4096


def inference_threads(n_values):
    """One torch thread for an inference batch of at most ``SMALL_BATCH`` values
    (faster than waiting on a thread pool), torch's own threads for larger ones."""
    return torch_threads(1 if n_values <= SMALL_BATCH else -1)


class BatchIterator:
    """Mini-batches of a skorch ``Dataset`` by fancy indexing, without per-row collation.

    A drop-in ``iterator_train`` / ``iterator_valid`` for nets whose data are dicts
    of in-memory arrays: one indexing per batch instead of one ``__getitem__`` per
    row. Shuffling draws from torch's global generator, so a seeded (forked) torch
    RNG makes the batch order reproducible.
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, **kwargs):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle

    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = torch.randperm(n).numpy() if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            Xi, yi = self.dataset[order[start : start + self.batch_size]]
            yield to_tensor(Xi, "cpu"), to_tensor(yi, "cpu")


class WeightAverage(Callback):
    """Validate, keep and return an exponential moving average of the weights.

    Averaging the last steps' weights (Polyak averaging) cancels much of the noise
    of the optimizer's last steps at no cost to inference. The average's horizon is
    ``epochs`` epochs of steps; validation passes (hence early stopping's best
    weights) use the average, training steps the raw weights, and the net ends with
    the average.
    """

    def __init__(self, epochs=1.0):
        self.epochs = epochs

    def on_train_begin(self, net, X=None, **kwargs):
        self.params_ = list(net.module_.parameters())
        self.average_ = [p.detach().clone() for p in self.params_]
        self.raw_ = None
        steps = max(1.0, len(net.get_dataset(X)) / net.batch_size)
        self.decay_ = 1.0 - 1.0 / max(1.0, self.epochs * steps)

    def _swap(self, weights):
        with torch.no_grad():
            for p, w in zip(self.params_, weights):
                p.copy_(w)

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and self.raw_ is not None:  # back to the raw weights
            self._swap(self.raw_)
            self.raw_ = None
        elif not training and self.raw_ is None:  # validate the average
            self.raw_ = [p.detach().clone() for p in self.params_]
            self._swap(self.average_)

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            with torch.no_grad():
                torch._foreach_lerp_(
                    self.average_, [p.detach() for p in self.params_], 1 - self.decay_
                )

    def on_train_end(self, net, **kwargs):
        if self.raw_ is None:  # else the average is in place (or the best one)
            self._swap(self.average_)
        self.params_ = self.average_ = self.raw_ = None


def training_callbacks(
    *,
    early_stopping,
    n_iter_no_change,
    tol=1e-4,
    schedule="plateau",
    lr_patience=None,
    max_epochs=None,
    average_epochs=None,
):
    """skorch callbacks: a learning-rate schedule, a weight average, early stopping.

    ``schedule="plateau"`` halves the learning rate after ``lr_patience`` epochs
    (default ``n_iter_no_change // 2``) without improvement; ``"cosine"`` decays it
    to 0 over ``max_epochs``. With ``early_stopping`` both watch ``valid_loss`` (the
    caller gives a validation set with fixed coalitions), training stops after
    ``n_iter_no_change`` epochs without a relative improvement of ``tol`` and the
    best weights are restored; else the plateau watches ``train_loss``. With
    ``average_epochs``, validation and the final net use a :class:`WeightAverage`
    over about that many epochs' steps.
    """
    monitor = "valid_loss" if early_stopping else "train_loss"
    if schedule == "cosine":
        scheduler = LRScheduler(
            policy=torch.optim.lr_scheduler.CosineAnnealingLR,
            T_max=max(int(max_epochs), 1),
        )
    else:
        if lr_patience is None:
            lr_patience = max(1, int(n_iter_no_change) // 2)
        scheduler = LRScheduler(
            policy=torch.optim.lr_scheduler.ReduceLROnPlateau,
            monitor=monitor,
            mode="min",
            factor=0.5,
            patience=lr_patience,
        )
    callbacks = [("lr_scheduler", scheduler)]
    if average_epochs:  # before early stopping, which must see the average
        callbacks.insert(0, ("weight_average", WeightAverage(average_epochs)))
    if early_stopping:
        stopper = EarlyStopping(
            monitor=monitor,
            patience=int(n_iter_no_change),
            threshold=tol,
            load_best=True,
        )
        callbacks.append(("early_stopping", stopper))
    return callbacks


def fit_net(
    net_class,
    make_module,
    train,
    *,
    valid=None,
    seed,
    n_threads=1,
    optimizer=torch.optim.Adam,
    device="cpu",
    **params,
):
    """Build ``net_class`` around ``make_module()`` and fit it on ``train``.

    The module is made, and the net fitted, in a forked torch RNG seeded with
    ``seed`` on ``n_threads`` threads, so that equal seeds give equal networks
    and the caller's torch state is left as it was. Batches come from
    :class:`BatchIterator` (one indexing per batch, not a collation of rows).

    Parameters
    ----------
    net_class : subclass of skorch.NeuralNet
    make_module : callable
        Returns the ``torch.nn.Module`` to train.
    train, valid : tuple (X, y)
        Training data and the held-out data early stopping watches (``y`` may be
        None); ``valid=None`` holds nothing out.
    seed : int
    n_threads : int or None, default=1
        Torch threads (:func:`torch_threads`).
    optimizer : torch optimizer class, default=torch.optim.Adam
        Run with its fused (one vectorised kernel) update.
    device : str, default="cpu"
    **params
        The net's other parameters (``lr``, ``batch_size``, ``max_epochs``,
        ``callbacks``, its own loss parameters, ...).

    Returns
    -------
    net : fitted ``net_class``
    """
    split = None if valid is None else predefined_split(Dataset(*valid))
    devices = [] if str(device).startswith("cpu") else None
    with torch.random.fork_rng(devices=devices), torch_threads(n_threads):
        torch.manual_seed(seed)
        net = net_class(
            make_module(),
            optimizer=optimizer,
            optimizer__fused=True,
            train_split=split,
            iterator_train=BatchIterator,
            iterator_valid=BatchIterator,
            iterator_train__shuffle=True,
            device=device,
            **params,
        )
        net.fit(*train)
    return net
