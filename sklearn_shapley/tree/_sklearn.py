"""Readers of scikit-learn's tree models: decision and extra trees, random forests and
extra-trees, gradient boosting, histogram gradient boosting and isolation forests."""

from __future__ import annotations

import numpy as np

from ._ensemble import _Assembler, _categories_from_bitset, _model_type, _unsupported
from ._flat import FlatEnsemble

__all__ = [
    "read_sklearn",
    "read_sklearn_forest",
    "read_sklearn_gradient_boosting",
    "read_sklearn_hist_gradient_boosting",
    "read_sklearn_isolation_forest",
    "read_sklearn_tree",
]


def read_sklearn(model) -> FlatEnsemble:
    """Read any of scikit-learn's supported tree models (dispatch on its type)."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import BaseDecisionTree

    forests = (
        RandomForestRegressor,
        RandomForestClassifier,
        ExtraTreesRegressor,
        ExtraTreesClassifier,
    )
    if isinstance(model, BaseDecisionTree):
        return read_sklearn_tree(model)
    if isinstance(model, forests):
        return read_sklearn_forest(model)
    if isinstance(model, (GradientBoostingRegressor, GradientBoostingClassifier)):
        return read_sklearn_gradient_boosting(model)
    if isinstance(
        model, (HistGradientBoostingRegressor, HistGradientBoostingClassifier)
    ):
        return read_sklearn_hist_gradient_boosting(model)
    if isinstance(model, IsolationForest):
        return read_sklearn_isolation_forest(model)
    raise _unsupported(model)


def _sklearn_structure(tree_, feature_map=None):
    """Structure arrays of a fitted ``sklearn.tree._tree.Tree`` (local indices)."""
    left = np.asarray(tree_.children_left, dtype=np.int64)
    is_leaf = left < 0
    feature = np.where(is_leaf, -1, tree_.feature).astype(np.int64)
    if feature_map is not None:
        feature[~is_leaf] = np.asarray(feature_map)[feature[~is_leaf]]
    return {
        "left": left,
        "right": np.asarray(tree_.children_right, dtype=np.int64),
        "feature": feature,
        "threshold": np.asarray(tree_.threshold, dtype=np.float64),
        "missing_left": np.asarray(tree_.missing_go_to_left, dtype=bool),
        "cover": np.asarray(tree_.weighted_n_node_samples, dtype=np.float64),
    }


def _sklearn_leaf_values(estimator, tree_):
    """Per-node output rows of one sklearn tree: probabilities or regression values."""
    value = np.asarray(tree_.value, dtype=np.float64)  # (nodes, outputs, classes)
    if not hasattr(estimator, "classes_"):
        return value[:, :, 0]
    n_classes = np.atleast_1d(estimator.n_classes_)
    parts = []
    for o, k in enumerate(n_classes):
        proba = value[:, o, : int(k)]
        norm = proba.sum(axis=1, keepdims=True)
        norm[norm == 0.0] = 1.0
        parts.append(proba / norm)
    return np.concatenate(parts, axis=1)


def _sklearn_output_names(estimator):
    if hasattr(estimator, "classes_"):
        if getattr(estimator, "n_outputs_", 1) == 1:
            return [str(c) for c in estimator.classes_]
        return [
            f"output{o}_{c}"
            for o, classes in enumerate(estimator.classes_)
            for c in classes
        ]
    n_out = getattr(estimator, "n_outputs_", 1)
    return ["prediction"] if n_out == 1 else [f"target{o}" for o in range(n_out)]


def read_sklearn_tree(model) -> FlatEnsemble:
    """Read a fitted sklearn decision tree or extra tree (regressor or classifier).

    Parameters
    ----------
    model : DecisionTreeRegressor, DecisionTreeClassifier, ExtraTreeRegressor or ExtraTreeClassifier
        A fitted tree.

    Returns
    -------
    flat : FlatEnsemble
        One tree; outputs are the ``predict`` columns (regressors, one per target)
        or the ``predict_proba`` columns (classifiers, both columns when binary,
        multi-output classifiers concatenated), ``decision_dtype`` float32.
    """
    return _read_sklearn_trees(model, [model], scale=1.0)


def read_sklearn_forest(model) -> FlatEnsemble:
    """Read a fitted RandomForest / ExtraTrees regressor or classifier.

    Parameters
    ----------
    model : RandomForestRegressor, RandomForestClassifier, ExtraTreesRegressor or ExtraTreesClassifier
        A fitted forest.

    Returns
    -------
    flat : FlatEnsemble
        Every tree adds its whole value row (``tree_group == -1``) scaled by
        ``1 / n_trees``: regressors average predictions, classifiers average the
        trees' class probabilities (the ``predict_proba`` of the forest).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    return _read_sklearn_trees(model, model.estimators_, 1.0 / len(model.estimators_))


def _read_sklearn_trees(model, estimators, scale):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    names = _sklearn_output_names(model)
    asm = _Assembler(len(names))
    for est in estimators:
        tree_ = est.tree_
        s = _sklearn_structure(tree_)
        asm.add(value=_sklearn_leaf_values(model, tree_) * scale, group=-1, **s)
    return asm.build(
        np.zeros(len(names)),
        model.n_features_in_,
        np.float32,
        names,
        _model_type(model),
    )


def read_sklearn_gradient_boosting(model) -> FlatEnsemble:
    """Read a fitted GradientBoostingRegressor / GradientBoostingClassifier.

    Parameters
    ----------
    model : GradientBoostingRegressor or GradientBoostingClassifier
        A fitted model whose ``init`` is the default (a constant dummy estimator) or
        ``"zero"``.

    Returns
    -------
    flat : FlatEnsemble
        Outputs of ``decision_function`` (classifiers; one output when binary, one
        per class otherwise, tree ``(i, k)`` in group ``k``) or ``predict``
        (regressors). Leaves are scaled by ``learning_rate``; ``base_offset`` is the
        init estimator's raw prediction.
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    init = model.init_
    constant = (isinstance(init, str) and init == "zero") or (
        isinstance(init, (DummyRegressor, DummyClassifier))
        and getattr(init, "strategy", None) != "stratified"  # random predictions
    )
    if not constant:
        raise NotImplementedError(
            "Only gradient boosting with a constant init estimator (the default) or "
            f"init='zero' can be flattened; got init={init!r}."
        )
    n_features = model.n_features_in_
    base = model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0]
    estimators = model.estimators_
    n_groups = estimators.shape[1]
    if hasattr(model, "classes_"):
        names = (
            [str(model.classes_[1])]
            if n_groups == 1
            else [str(c) for c in model.classes_]
        )
    else:
        names = ["prediction"]
    asm = _Assembler(n_groups)
    lr = float(model.learning_rate)
    for stage in estimators:
        for k, est in enumerate(stage):
            s = _sklearn_structure(est.tree_)
            value = np.asarray(est.tree_.value, dtype=np.float64)[:, 0, 0] * lr
            asm.add(value=value, group=k, **s)
    return asm.build(base, n_features, np.float32, names, _model_type(model))


def _average_path_length(n):
    """Average path length of an unsuccessful BST search among ``n`` points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    m = n[big]
    out[big] = 2.0 * (np.log(m - 1.0) + np.euler_gamma) - 2.0 * (m - 1.0) / m
    return out


def _node_depths(left, right):
    depth = np.zeros(left.shape[0], dtype=np.float64)
    for i in range(left.shape[0]):  # children come after their parent in sklearn
        if left[i] >= 0:
            depth[left[i]] = depth[right[i]] = depth[i] + 1.0
    return depth


def read_sklearn_isolation_forest(model) -> FlatEnsemble:
    """Read a fitted IsolationForest as its mean path length.

    Parameters
    ----------
    model : IsolationForest
        A fitted isolation forest.

    Returns
    -------
    flat : FlatEnsemble
        One output, the average over trees of ``depth(leaf) + c(n_leaf)`` with
        ``c`` the average unsuccessful-search path length, so that
        ``score_samples(X) == -2 ** (-raw / c(max_samples_))``. Tree features are
        mapped back to the input columns when the trees saw a feature subset.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    n_features = model.n_features_in_
    subsample = model._max_features != n_features
    n_trees = len(model.estimators_)
    asm = _Assembler(1)
    for est, feats in zip(model.estimators_, model.estimators_features_):
        tree_ = est.tree_
        s = _sklearn_structure(tree_, feature_map=feats if subsample else None)
        depth = _node_depths(s["left"], s["right"])
        value = depth + _average_path_length(tree_.n_node_samples)
        asm.add(value=value / n_trees, group=0, **s)
    return asm.build(
        np.zeros(1), n_features, np.float32, ["mean_path_length"], _model_type(model)
    )


def read_sklearn_hist_gradient_boosting(model) -> FlatEnsemble:
    """Read a fitted HistGradientBoostingRegressor / HistGradientBoostingClassifier.

    Parameters
    ----------
    model : HistGradientBoostingRegressor or HistGradientBoostingClassifier
        A fitted model.

    Returns
    -------
    flat : FlatEnsemble
        The raw margin (``_raw_predict``): one output for regression and binary
        classification, one per class otherwise; ``decision_dtype`` float64; cover
        is the node's (unweighted) training sample ``count``. The model's column
        transformer (categorical features first) is undone, so features index the
        input columns. Categorical features hold the raw category value when all
        of the feature's training categories are non-negative integers, and
        otherwise the category's index in the model's ordinal encoder
        (``model._preprocessor.named_transformers_["encoder"].categories_``).
        Any other value (missing, negative, fractional, unseen) is an unknown
        category following the missing-value branch, as in the model:
        ``category_values`` holds the model's exact mapping
        (:func:`~sklearn_shapley.tree._flat.encode_inputs`).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    n_features = model.n_features_in_
    K = int(model.n_trees_per_iteration_)
    base = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
    known_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
    # Map the columns seen by the trees back to the input columns, and category codes
    # back to raw category values.
    perm = np.arange(n_features)
    code_to_raw = {}
    category_values = {}
    pre = getattr(model, "_preprocessor", None)
    if pre is not None:
        perm = np.full(n_features, -1, dtype=np.int64)
        for name, trans, cols in pre.transformers_:
            if isinstance(trans, str) and trans == "drop":
                continue
            sl = pre.output_indices_[name]
            idx = np.arange(n_features)[cols] if np.size(cols) else np.zeros(0, int)
            perm[sl] = idx
            if name == "encoder":
                for j, cats in enumerate(trans.categories_):
                    code_to_raw[sl.start + j] = _raw_categories(cats)
                    encoding = _category_encoding(cats, code_to_raw[sl.start + j])
                    if encoding is not None:
                        category_values[int(perm[sl.start + j])] = encoding
    if K == 1:
        classes = getattr(model, "classes_", None)
        if classes is None:
            names = ["prediction"]
        elif len(classes) == 1:  # trained on one class: its decision_function
            names = ["decision_function"]
        else:
            names = [str(classes[1])]
    else:
        names = [str(c) for c in model.classes_]
    asm = _Assembler(K)
    for predictors in model._predictors:
        for k, predictor in enumerate(predictors):
            nodes = predictor.nodes
            left = np.asarray(nodes["left"], dtype=np.int64)
            right = np.asarray(nodes["right"], dtype=np.int64)
            is_leaf = nodes["is_leaf"].astype(bool)
            left[is_leaf] = -1
            right[is_leaf] = -1
            feat_local = np.asarray(nodes["feature_idx"], dtype=np.int64)
            feature = np.where(is_leaf, -1, perm[np.where(is_leaf, 0, feat_local)])
            missing_left = nodes["missing_go_to_left"].astype(bool)
            cat_nodes = {}
            for node in np.flatnonzero(nodes["is_categorical"].astype(bool) & ~is_leaf):
                f = int(feat_local[node])
                go_left = _categories_from_bitset(
                    predictor.raw_left_cat_bitsets[nodes["bitset_idx"][node]]
                )
                if missing_left[node]:
                    # Unknown/negative/missing categories go left in the model: swap
                    # the children and list the known categories that go right.
                    known = _categories_from_bitset(known_bitsets[f_idx_map[f]])
                    go_left = np.setdiff1d(known, go_left)
                    left[node], right[node] = right[node], left[node]
                    missing_left[node] = False
                raw = code_to_raw.get(f)
                if raw is not None:
                    go_left = raw[go_left[go_left < raw.size]]
                cat_nodes[int(node)] = go_left
            asm.add(
                left=left,
                right=right,
                feature=feature,
                threshold=np.asarray(nodes["num_threshold"], dtype=np.float64),
                missing_left=missing_left,
                cover=np.asarray(nodes["count"], dtype=np.float64),
                value=np.asarray(nodes["value"], dtype=np.float64),
                group=k,
                cat_nodes=cat_nodes,
            )
    return asm.build(
        base, n_features, np.float64, names, _model_type(model), category_values
    )


def _category_encoding(categories, raw):
    """``(known, codes)`` of a HistGradientBoosting categorical feature: its sorted
    numeric training categories and the values its splits use for them (the raw
    integers, or else the ordinal encoder's codes); None for non-numeric ones."""
    cats = np.asarray(categories)
    if cats.dtype.kind not in "biuf":
        return None
    cats = cats.astype(np.float64)
    codes = np.arange(cats.size, dtype=np.float64)[~np.isnan(cats)]
    cats = cats[~np.isnan(cats)]
    if raw is not None:
        codes = raw.astype(np.float64)
    order = np.argsort(cats)
    return cats[order], codes[order]


def _raw_categories(categories):
    """Raw category values indexed by code, or None to keep the codes themselves."""
    cats = np.asarray(categories)
    if cats.dtype.kind not in "biuf":
        return None
    cats = cats.astype(np.float64)
    cats = cats[~np.isnan(cats)]
    if cats.size == 0:
        return None
    if np.all((cats >= 0) & (cats == np.round(cats)) & (cats < 2**24)):
        return cats.astype(np.int64)
    return None
