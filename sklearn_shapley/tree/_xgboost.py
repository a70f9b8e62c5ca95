"""Reader of XGBoost models (``Booster`` and the scikit-learn API) from their JSON."""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from collections import OrderedDict

import numpy as np

from ._ensemble import _Assembler, _model_type, _unsupported
from ._flat import FlatEnsemble

__all__ = ["probe_rows", "read_xgboost", "xgboost_margin"]

#: The last models read, by their saved bytes (see ``read_xgboost``).
_READ_CACHE: OrderedDict = OrderedDict()
_READ_CACHE_SIZE = 4
#: The same models by the booster object they were read from: ``(id(booster),
#: missing, iteration_end, model_type) -> _Kept``; used with a ``probe`` (see
#: ``read_xgboost``).
_BY_BOOSTER: OrderedDict = OrderedDict()


class _Kept:
    """A model read from a booster: the booster (weakref), its number of boosted
    rounds then, the flat ensemble, and the probe ``(rows, margins)`` the booster
    gave just before it was read (``None`` without one)."""

    __slots__ = ("booster", "n_rounds", "flat", "probe")

    def __init__(self, booster, flat, probe):
        self.booster = weakref.ref(booster)
        self.n_rounds = booster.num_boosted_rounds()
        self.flat = flat
        self.probe = probe

    def matches(self, booster, probe):
        """Whether ``booster`` is the one read, with as many rounds, and gives
        the kept margins, bit for bit, on the kept rows."""
        return (
            self.probe is not None
            and self.booster() is booster
            and self.n_rounds == booster.num_boosted_rounds()
            and np.array_equal(probe[0], self.probe[0])
            and np.array_equal(probe[1], self.probe[1])
        )


_XGB_LOGIT = {"binary:logistic", "reg:logistic"}
_XGB_LOG = {"count:poisson", "reg:gamma", "reg:tweedie", "survival:cox", "survival:aft"}


def _parse_xgb_base_score(text):
    """Parse ``base_score``: ``"0.5"``, ``"5E-1"`` or ``"[5E-1,2E-1]"`` (xgb >= 3.1)."""
    text = str(text).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)


def _xgb_base_margin(base_score, objective):
    """Convert xgboost's output-space ``base_score`` to the margin (in float32)."""
    bs = np.asarray(base_score, dtype=np.float32)
    if objective in _XGB_LOGIT:
        return -np.log(np.float32(1.0) / bs - np.float32(1.0)).astype(np.float64)
    if objective in _XGB_LOG:
        return np.log(bs).astype(np.float64)
    return bs.astype(np.float64)


def read_xgboost(model, missing=None, *, probe=None) -> FlatEnsemble:
    """Read an XGBoost ``Booster`` or sklearn-API model from its JSON dump.

    Parameters
    ----------
    model : xgboost.Booster or xgboost.XGBModel
        A fitted gbtree or dart model (XGBRegressor, XGBClassifier, XGBRanker,
        XGBRF*).
    missing : float or None, default=None
        The value that marks a missing entry in the rows the model is given
        (``xgboost.DMatrix(..., missing=missing)``), besides NaN. A ``Booster``
        does not record it: ``None`` means NaN. A scikit-learn-API model uses its
        own ``missing`` attribute; a different value here is refused.
    probe : tuple of (ndarray, ndarray) or None, default=None
        ``(rows, margins)``: the model's margin (:func:`xgboost_margin`), just
        computed, on ``probe_rows(model, missing)`` when that gives rows (else on
        any rows). A model read before from this very booster object, with as
        many boosted rounds, is then reused when these margins are the ones the
        booster gave on these rows just before it was read, bit for bit, without
        saving the booster to hash its bytes. Otherwise, or without a probe, the
        model is looked up by the sha256 of its saved bytes (and read from its
        JSON when not found), and the probe kept with it.

    Returns
    -------
    flat : FlatEnsemble
        The margin (``predict(output_margin=True)``); ``decision_dtype`` float32
        with thresholds the largest float32 below xgboost's ``x < c`` split value.
        ``base_score`` (plain or array string, scalar or vector) is turned into a
        margin with the objective's link (logit for logistic objectives, log for
        poisson/gamma/tweedie/cox/aft, identity otherwise). DART trees are scaled by
        ``weight_drop``. The sklearn wrappers use ``best_iteration`` when it is set,
        as their ``predict`` does; a bare ``Booster`` uses all trees. Multi-target
        trees with vector leaves add their leaf vector to every output.
        ``missing_value`` is the model's ``missing`` and ``sparse_fill`` NaN: an
        absent entry of a sparse matrix is missing, as in XGBoost's ``DMatrix``.
    """
    booster, missing, iteration_end, model_type = _resolve(model, missing)
    by_booster = (id(booster), repr(missing), iteration_end, model_type)
    kept = _BY_BOOSTER.get(by_booster)
    if probe is not None and kept is not None and kept.matches(booster, probe):
        _BY_BOOSTER.move_to_end(by_booster)
        return kept.flat
    key = (
        hashlib.sha256(booster.save_raw(raw_format="ubj")).digest(),
        repr(missing),
        iteration_end,
        model_type,
    )
    flat = _READ_CACHE.get(key)
    if flat is None:
        flat = _read_booster(booster, missing, iteration_end, model_type)
        _READ_CACHE[key] = flat
        while len(_READ_CACHE) > _READ_CACHE_SIZE:
            _READ_CACHE.popitem(last=False)
    _READ_CACHE.move_to_end(key)
    if probe is not None:
        rows, margins = (np.array(a) for a in probe)  # copies, kept read-only
        rows.setflags(write=False)
        margins.setflags(write=False)
        probe = (rows, margins)
    _BY_BOOSTER[by_booster] = _Kept(booster, flat, probe)
    _BY_BOOSTER.move_to_end(by_booster)
    while len(_BY_BOOSTER) > _READ_CACHE_SIZE:
        _BY_BOOSTER.popitem(last=False)
    return flat


def _resolve(model, missing):
    """``(booster, missing, iteration_end, model_type)`` of an XGBoost model, as
    ``read_xgboost`` reads it (``missing`` a float, NaN for none)."""
    import xgboost

    iteration_end = None
    if isinstance(model, xgboost.XGBModel):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model)
        own = _missing_value(getattr(model, "missing", None))
        if missing is not None and not _same(_missing_value(missing), own):
            raise ValueError(
                f"missing={missing!r} differs from the {type(model).__name__}'s own "
                f"missing={model.missing!r}, the value its predict treats as "
                "missing: leave missing=None for XGBoost's scikit-learn models."
            )
        missing = own
        booster = model.get_booster()
        try:
            iteration_end = int(model.best_iteration) + 1
        except (AttributeError, ValueError, TypeError):
            iteration_end = None
        model_type = _model_type(model)
    elif isinstance(model, xgboost.Booster):
        booster = model
        model_type = "xgboost.Booster"
        missing = _missing_value(missing)
    else:  # pragma: no cover - dispatch guarantees the type
        raise _unsupported(model)
    return booster, missing, iteration_end, model_type


def xgboost_margin(model, rows, missing=None):
    """The margin ``(n, n_outputs)`` (float64 of XGBoost's float32) of an XGBoost
    ``Booster`` or scikit-learn-API model on the dense array ``rows``: what
    ``read_xgboost(model, missing)`` reads, over the same trees (``best_iteration``
    of the scikit-learn models), with the same missing value.

    One ``inplace_predict`` of the booster, on one thread (where the booster does
    not set ``nthread`` itself): a few rows gain nothing from more, and threads
    waiting for a busy core cost far more than the prediction. This is what a
    ``probe`` of ``read_xgboost`` holds.
    """
    import xgboost

    booster, missing, iteration_end, _ = _resolve(model, missing)
    with xgboost.config_context(nthread=1):
        out = booster.inplace_predict(
            rows,
            iteration_range=(0, iteration_end or 0),
            predict_type="margin",
            missing=missing,
            validate_features=False,
        )
    return np.array(out, dtype=np.float64).reshape(len(rows), -1)


def probe_rows(model, missing=None):
    """The rows of the probe kept with the model last read from this booster
    object (read-only; see ``read_xgboost``), or ``None``: probing the booster on
    them again tells whether it still is the model read."""
    try:
        booster, missing, iteration_end, model_type = _resolve(model, missing)
    except Exception:  # read_xgboost raises it
        return None
    kept = _BY_BOOSTER.get((id(booster), repr(missing), iteration_end, model_type))
    if kept is None or kept.probe is None or kept.booster() is not booster:
        return None
    return kept.probe[0]


def _read_booster(booster, missing, iteration_end, model_type):
    """The ``FlatEnsemble`` of ``booster`` from its JSON (see ``read_xgboost``).

    ``read_xgboost`` keeps the last few by the booster's saved bytes: reading
    the JSON is most of a small call's cost, and the bytes change with the model.
    """
    learner = json.loads(booster.save_raw(raw_format="json"))["learner"]
    params = learner["learner_model_param"]
    objective = learner["objective"]["name"]
    gbm = learner["gradient_booster"]
    if gbm["name"] == "gblinear":
        raise NotImplementedError("xgboost gblinear models have no trees.")
    if gbm["name"] == "dart":
        weights = np.asarray(gbm["weight_drop"], dtype=np.float64)
        gbm_model = gbm["gbtree"]["model"]
    else:
        gbm_model = gbm["model"]
        weights = None
    trees = gbm_model["trees"]
    tree_info = [int(g) for g in gbm_model["tree_info"]]
    n_outputs = max(
        int(params.get("num_class", 0)), int(params.get("num_target", 1)), 1
    )
    n_features = int(params["num_feature"])

    n_used = len(trees)
    if iteration_end is not None:
        indptr = gbm_model.get("iteration_indptr")
        if indptr is not None and iteration_end < len(indptr):
            n_used = int(indptr[iteration_end])
        elif indptr is None:
            per_iter = int(gbm_model["gbtree_model_param"]["num_parallel_tree"])
            per_iter *= max(1, int(params.get("num_class", 0)) or 1)
            n_used = min(len(trees), iteration_end * per_iter)

    base_score = _parse_xgb_base_score(params["base_score"])
    base = np.broadcast_to(_xgb_base_margin(base_score, objective), (n_outputs,))

    asm = _Assembler(n_outputs)
    for t in range(n_used):
        tree = trees[t]
        weight = 1.0 if weights is None else float(weights[t])
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        is_leaf = left < 0
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        threshold = np.nextafter(cond, np.float32(-np.inf)).astype(np.float64)
        missing_left = np.asarray(tree["default_left"], dtype=bool)
        size_leaf = int(tree["tree_param"].get("size_leaf_vector", "1") or 1)
        if size_leaf > 1:
            leaf_weights = np.asarray(tree["leaf_weights"], dtype=np.float64)
            leaf_weights = leaf_weights.reshape(-1, size_leaf)
            value = np.zeros((left.size, size_leaf))
            value[is_leaf] = leaf_weights[right[is_leaf]] * weight
            group = -1
            if size_leaf != n_outputs:
                raise NotImplementedError(
                    f"Leaf vectors of size {size_leaf} for {n_outputs} outputs."
                )
        else:
            value = cond.astype(np.float64) * weight
            group = tree_info[t]
        cat_nodes = {}
        if any(int(s) == 1 for s in tree.get("split_type", [])):
            cats = tree["categories"]
            for node, seg, size in zip(
                tree["categories_nodes"],
                tree["categories_segments"],
                tree["categories_sizes"],
            ):
                # xgboost sends the listed categories right and everything else
                # (unlisted, negative, out of range) left: swap the children so the
                # bitset lists the categories of the new left child.
                node, seg, size = int(node), int(seg), int(size)
                left[node], right[node] = right[node], left[node]
                missing_left[node] = not missing_left[node]
                cat_nodes[node] = np.asarray(cats[seg : seg + size], dtype=np.int64)
        asm.add(
            left=left,
            right=right,
            feature=np.asarray(tree["split_indices"], dtype=np.int64),
            threshold=threshold,
            missing_left=missing_left,
            cover=np.asarray(tree["sum_hessian"], dtype=np.float64),
            value=value,
            group=group,
            cat_nodes=cat_nodes,
        )
    if n_outputs == 1:
        names = ["margin"]
    elif int(params.get("num_class", 0)) > 1:
        names = [f"class{k}" for k in range(n_outputs)]
    else:
        names = [f"target{k}" for k in range(n_outputs)]
    return asm.build(
        base,
        n_features,
        np.float32,
        names,
        model_type,
        missing_value=missing,
        sparse_fill=np.nan,
    )


def _missing_value(missing):
    """``missing`` as a float, NaN for None."""
    return np.nan if missing is None else float(missing)


def _same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))
