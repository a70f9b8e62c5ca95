"""Reader of LightGBM models (``Booster`` and the scikit-learn API) from
``dump_model()``."""

from __future__ import annotations

import numpy as np

from . import _flat
from ._ensemble import _Assembler, _model_type
from ._flat import _LGBM_ZERO, NUMERIC_SPLIT, FlatEnsemble

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
        NaN follows LightGBM: with ``missing_type`` None it is treated as 0.0, with
        NaN it follows ``default_left``, with Zero both NaN and zeros follow
        ``default_left`` (exact when the zero region lies on that side of the
        threshold anyway).
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
    asm = _Assembler(K)
    for i, info in enumerate(dump["tree_info"]):
        asm.add(group=i % K, **_lightgbm_tree(info["tree_structure"], i))
    names = ["raw_score"] if K == 1 else [f"class{k}" for k in range(K)]
    return asm.build(np.zeros(K), n_features, np.float64, names, model_type)


def _lightgbm_tree(root, tree_index):
    """Flatten one nested ``tree_structure`` dict (preorder, iterative)."""
    left, right, feature, threshold = [], [], [], []
    missing_left, cover, value, kind = [], [], [], []
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
            missing_left.append(False)
            kind.append(NUMERIC_SPLIT)
            cover.append(float(node.get("leaf_count", 1.0)))
            value.append(float(node.get("leaf_const", node["leaf_value"])))
            continue
        f = int(node["split_feature"])
        mtype = str(node.get("missing_type", "None"))
        default_left = bool(node.get("default_left", False))
        decision = node["decision_type"]
        split = NUMERIC_SPLIT
        if decision == "==":
            cat_nodes[idx] = [
                int(c) for c in str(node["threshold"]).split("||") if c != ""
            ]
            thr = 0.0
            miss = False  # LightGBM sends NaN (and negative categories) right
        elif decision == "<=":
            thr = float(node["threshold"])
            if mtype == "NaN":
                miss = default_left
            elif mtype == "Zero":
                # NaN becomes 0.0, and values in [-1e-35, 1e-35] follow default_left.
                miss = default_left
                natural = (thr >= _LGBM_ZERO) if default_left else (thr < -_LGBM_ZERO)
                if not natural:
                    zero_split = getattr(_flat, "ZERO_MISSING_SPLIT", None)
                    if zero_split is None:
                        raise NotImplementedError(
                            f"LightGBM tree {tree_index}: a zero-as-missing split "
                            "sends zeros to the side the threshold does not; the "
                            "flat decision rule cannot express it."
                        )
                    split = zero_split
            else:  # "None": NaN is converted to 0.0
                miss = thr >= 0.0
        else:
            raise NotImplementedError(f"LightGBM decision type {decision!r}.")
        kind.append(split)
        feature.append(f)
        threshold.append(thr)
        missing_left.append(bool(miss))
        cover.append(float(node.get("internal_count", 1.0)))
        value.append(0.0)
        stack.append((node["right_child"], idx, True))
        stack.append((node["left_child"], idx, False))
    return {
        "left": left,
        "right": right,
        "feature": feature,
        "threshold": threshold,
        "missing_left": missing_left,
        "cover": cover,
        "value": np.asarray(value, dtype=np.float64),
        "cat_nodes": cat_nodes,
        "split_kind": kind,
    }
