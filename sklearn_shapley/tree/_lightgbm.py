"""Reader of LightGBM models (``Booster`` and the scikit-learn API) from
``dump_model()``.

LightGBM's numeric decision at a node (``Tree::NumericalDecision``), by the node's
``missing_type``:

- NaN is first replaced by 0.0 unless ``missing_type`` is ``"NaN"``;
- with ``"Zero"`` a value ``|x| <= 1e-35`` (``kZeroThreshold``), with ``"NaN"`` a NaN,
  goes to the ``default_left`` side;
- any other value goes left iff ``x <= threshold``.

The flat decision rule has one missing branch per node, taken by NaN. The features
that any ``"Zero"`` node splits on (``zero_as_missing=True``) are listed in the flat
ensemble's ``zero_as_missing``, so that :func:`~._flat.encode_inputs` turns their
values ``|x| <= 1e-35`` into NaN, and every node on them sends NaN where the model
sends zero and NaN: its default side at a ``"Zero"`` node, where 0.0 goes
(``0 <= threshold``) at a ``"None"`` node. On other features NaN goes where the model
sends it (the default side, or where 0.0 goes). A node whose zero and NaN (or tiny
values) go to different sides cannot be expressed by a per-feature mapping and is
refused with ``NotImplementedError``.
"""

from __future__ import annotations

import numpy as np

from ._ensemble import _Assembler, _model_type
from ._flat import ZERO_THRESHOLD, FlatEnsemble

__all__ = ["read_lightgbm"]


def read_lightgbm(model) -> FlatEnsemble:
    """Read a LightGBM ``Booster`` or sklearn-API model from ``dump_model()``.

    Parameters
    ----------
    model : lightgbm.Booster or lightgbm.LGBMModel
        A fitted model (LGBMRegressor, LGBMClassifier, LGBMRanker).

    Returns
    -------
    flat : FlatEnsemble
        The raw score (``predict(raw_score=True)``), using the best iteration when
        there is one, as LightGBM's ``predict`` does; ``decision_dtype`` float64.
        Cover is ``internal_count`` / ``leaf_count`` (the sample counts LightGBM's
        own TreeSHAP and shap use). Multi-class trees interleave by class
        (tree ``i`` in group ``i % K``). In random-forest mode the raw score is the
        *sum* of the trees, as ``predict(raw_score=True)`` and ``pred_contrib``
        return it (``predict`` divides it by the number of iterations).
        Missing values follow LightGBM exactly (see the module docstring): NaN is
        0.0 at a node with ``missing_type`` None and follows ``default_left`` with
        NaN; with Zero (``zero_as_missing=True``) the feature's values
        ``|x| <= 1e-35`` and NaN follow ``default_left``, through
        ``zero_as_missing``.

    Raises
    ------
    NotImplementedError
        For linear trees, and for a split on a zero-as-missing feature that sends
        zero and NaN, or zero and values within 1e-35 of it, to different sides.
    """
    import lightgbm

    if isinstance(model, lightgbm.LGBMModel):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model)
        booster = model.booster_
        model_type = _model_type(model)
    else:
        booster = model
        model_type = "lightgbm.Booster"
    dump = booster.dump_model()
    K = int(dump.get("num_tree_per_iteration", 1))
    n_features = int(dump["max_feature_idx"]) + 1
    trees = [_lightgbm_tree(info["tree_structure"]) for info in dump["tree_info"]]
    zero_features = np.unique(
        np.concatenate(
            [np.asarray(t["feature"])[t["missing_type"] == "Zero"] for t in trees]
            + [np.zeros(0, dtype=np.int64)]
        )
    ).astype(np.int64)
    asm = _Assembler(K)
    for i, tree in enumerate(trees):
        missing_left = _missing_left(tree, zero_features, i)
        del tree["missing_type"], tree["default_left"]
        asm.add(group=i % K, missing_left=missing_left, **tree)
    names = ["raw_score"] if K == 1 else [f"class{k}" for k in range(K)]
    return asm.build(
        np.zeros(K),
        n_features,
        np.float64,
        names,
        model_type,
        zero_as_missing=zero_features,
    )


def _missing_left(tree, zero_features, tree_index):
    """Where NaN goes at each node of one tree, after :func:`~._flat.encode_inputs`
    has made the values ``|x| <= 1e-35`` of ``zero_features`` NaN."""
    feature = np.asarray(tree["feature"], dtype=np.int64)
    threshold = np.asarray(tree["threshold"], dtype=np.float64)
    mtype = tree["missing_type"]
    default_left = tree["default_left"]
    internal = feature >= 0
    numeric = np.ones(feature.size, dtype=bool)
    numeric[list(tree["cat_nodes"])] = False
    on_zero = internal & np.isin(feature, zero_features)
    zero_left = threshold >= 0.0  # where 0.0 (and NaN, as 0.0) goes by the threshold
    # the values |x| <= 1e-35 all go where 0.0 goes unless the threshold lies among them
    tiny_split = (threshold >= -ZERO_THRESHOLD) & (threshold < ZERO_THRESHOLD)
    missing_left = np.where(mtype == "NaN", default_left, zero_left)
    missing_left = np.where(mtype == "Zero", default_left, missing_left)
    missing_left &= numeric  # LightGBM sends NaN right at categorical splits

    def refuse(nodes, why):
        node = int(np.flatnonzero(nodes)[0])
        split = f"feature {feature[node]}, missing_type {mtype[node]}"
        raise NotImplementedError(
            f"LightGBM tree {tree_index}, node {node} ({split}, threshold "
            f"{float(threshold[node])!r}): {why}; "
            "feature values within 1e-35 of zero, which other splits of the model "
            "treat as missing (zero_as_missing), cannot all be mapped to one "
            "missing value for it."
        )

    cat_on_zero = on_zero & ~numeric
    if cat_on_zero.any():
        refuse(cat_on_zero, "a categorical split on a zero-as-missing feature")
    nan_apart = on_zero & (mtype == "NaN") & (default_left != zero_left)
    if nan_apart.any():
        refuse(nan_apart, "its default side (for NaN) is not where it sends zero")
    tiny_apart = on_zero & (mtype != "Zero") & tiny_split
    if tiny_apart.any():
        refuse(tiny_apart, "its threshold splits the values within 1e-35 of zero")
    return missing_left & internal


def _lightgbm_tree(root):
    """Flatten one nested ``tree_structure`` dict (preorder, iterative), with each
    node's ``missing_type`` and ``default_left``."""
    left, right, feature, threshold = [], [], [], []
    cover, value, mtypes, defaults = [], [], [], []
    cat_nodes = {}
    stack = [(root, -1, False)]
    while stack:
        node, parent, is_right = stack.pop()
        idx = len(left)
        if parent >= 0:
            (right if is_right else left)[parent] = idx
        left.append(-1)
        right.append(-1)
        if "split_index" not in node:  # leaf
            if node.get("leaf_coeff"):
                raise NotImplementedError(
                    "LightGBM linear trees (leaves with linear models) are not "
                    "supported."
                )
            feature.append(-1)
            threshold.append(0.0)
            mtypes.append("")
            defaults.append(False)
            cover.append(float(node.get("leaf_count", 1.0)))
            value.append(float(node.get("leaf_const", node["leaf_value"])))
            continue
        decision = node["decision_type"]
        if decision == "==":
            cat_nodes[idx] = [
                int(c) for c in str(node["threshold"]).split("||") if c != ""
            ]
            threshold.append(0.0)
        elif decision == "<=":
            threshold.append(float(node["threshold"]))
        else:
            raise NotImplementedError(f"LightGBM decision type {decision!r}.")
        feature.append(int(node["split_feature"]))
        mtypes.append(str(node.get("missing_type", "None")))
        defaults.append(bool(node.get("default_left", False)))
        cover.append(float(node.get("internal_count", 1.0)))
        value.append(0.0)
        stack.append((node["right_child"], idx, True))
        stack.append((node["left_child"], idx, False))
    return {
        "left": left,
        "right": right,
        "feature": feature,
        "threshold": threshold,
        "cover": cover,
        "value": np.asarray(value, dtype=np.float64),
        "cat_nodes": cat_nodes,
        "missing_type": np.asarray(mtypes, dtype=object),
        "default_left": np.asarray(defaults, dtype=bool),
    }
