"""Explaining Dask arrays and DataFrames, on a real ``distributed.LocalCluster``.

The oracle is the in-memory call: the Dask result must equal it bit for bit.
"""

import os
import signal
import sys
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.frozen import FrozenEstimator

from sklearn_shapley import (
    FastSHAPExplainer,
    KernelExplainer,
    QuadratureTreeExplainer,
    _memory,
)
from sklearn_shapley.tree import _kernel

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each, started once for the module."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def tree_explainer(data):
    X, y = data
    model = GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0)
    return QuadratureTreeExplainer(FrozenEstimator(model.fit(X, y))).fit(X)


def _explainer_keys(collection, explainer):
    prefix = type(explainer).__name__ + "-"
    return [k for k in dict(collection.__dask_graph__()) if str(k).startswith(prefix)]


def test_tree_transform_on_dask_array_is_lazy_per_block_and_exact(
    client, data, tree_explainer
):
    X, _ = data
    X_dask = da.from_array(X, chunks=(100, 3))  # split columns are joined again
    result = tree_explainer.transform(X_dask)
    assert isinstance(result, da.Array)
    assert result.chunks == ((100,) * 4, (6,))
    # the explainer is one key of the graph, which every block's task depends on
    assert len(_explainer_keys(result, tree_explainer)) == 1
    np.testing.assert_array_equal(result.compute(), tree_explainer.transform(X))


def test_interventional_tree_on_dask_equals_in_memory(client, data):
    X, y = data
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y)
    explainer = QuadratureTreeExplainer(
        FrozenEstimator(model), feature_perturbation="interventional", background=X[:50]
    ).fit(X)
    result = explainer.transform(da.from_array(X, chunks=(100, 6)))
    np.testing.assert_array_equal(result.compute(), explainer.transform(X))
    pairs = explainer.interactions(da.from_array(X, chunks=(200, 6)))
    np.testing.assert_array_equal(pairs.compute(), explainer.interactions(X))


def test_tree_transform_on_dask_dataframe_keeps_index_and_columns(client):
    X, y = make_regression(n_samples=300, n_features=4, random_state=0)
    frame = pd.DataFrame(X, columns=["age", "bmi", "bp", "s1"])
    frame.index = np.random.default_rng(0).permutation(1000)[:300] * 7
    model = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(frame, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(frame)
    result = explainer.transform(dd.from_pandas(frame, npartitions=3, sort=False))
    assert isinstance(result, dd.DataFrame)
    assert result.npartitions == 3
    computed = result.compute()
    assert list(computed.columns) == list(explainer.get_feature_names_out())
    pd.testing.assert_index_equal(computed.index, frame.index)
    np.testing.assert_array_equal(computed.to_numpy(), explainer.transform(frame))


def test_tree_interactions_on_dask_array_chunked_by_rows(client, data, tree_explainer):
    X, _ = data
    result = tree_explainer.interactions(da.from_array(X, chunks=(150, 6)))
    assert result.shape == (400, 6, 6, 3)
    assert result.chunks[0] == (150, 150, 100)
    np.testing.assert_array_equal(result.compute(), tree_explainer.interactions(X))
    dense3 = tree_explainer.interactions(
        da.from_array(X[:50], chunks=25), order=3, dense=True
    )
    np.testing.assert_array_equal(
        dense3.compute(), tree_explainer.interactions(X[:50], order=3, dense=True)
    )
    with pytest.raises(TypeError, match="to_dask_array"):
        tree_explainer.interactions(dd.from_array(X))


def test_interactions_memory_check_applies_per_chunk(monkeypatch, data, tree_explainer):
    X, _ = data
    full = 400 * 6 * 6 * 3 * 8  # bytes of the whole interaction array
    monkeypatch.setattr(_memory, "available_memory_bytes", lambda: full // 2)
    with pytest.raises(MemoryError, match="interaction matrix"):
        tree_explainer.interactions(X)
    chunked = tree_explainer.interactions(da.from_array(X, chunks=(50, 6)))
    computed = chunked.compute(scheduler="sync")  # a chunk is 1/8 of the whole
    monkeypatch.undo()
    np.testing.assert_array_equal(computed, tree_explainer.interactions(X))


def test_a_task_runs_its_kernel_on_one_thread(monkeypatch, data):
    from sklearn_shapley._openmp import effective_n_threads

    X, y = data
    model = GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y)
    explainer = QuadratureTreeExplainer(FrozenEstimator(model), n_jobs=-1).fit(X)
    seen = []
    shap_values = _kernel.shap_values

    def recording(*args, n_threads, **kwargs):
        seen.append((n_threads, effective_n_threads(None)))
        return shap_values(*args, n_threads=n_threads, **kwargs)

    monkeypatch.setattr(_kernel, "shap_values", recording)
    X_dask = da.from_array(X, chunks=(100, 6))
    explainer.transform(X_dask).compute(scheduler="threads", num_workers=2)
    assert seen == [(1, 1)] * 4
    assert explainer.n_jobs == -1  # the shipped copy has n_jobs=1, not the original


def test_kernel_explainer_on_dask_equals_in_memory(client, data):
    X, y = data
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    explainer = KernelExplainer(
        model, random_state=0, max_evaluations=64, convergence_threshold=None
    ).fit(X)
    result = explainer.transform(da.from_array(X[:40], chunks=(10, 6)))
    np.testing.assert_array_equal(result.compute(), explainer.transform(X[:40]))


def test_fastshap_on_dask_equals_in_memory_on_the_same_blocks(client, data):
    X, y = data
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, y)
    explainer = FastSHAPExplainer(
        model,
        random_state=0,
        hidden_layer_sizes=(16,),
        n_coalitions=8,
        max_epochs=2,
        max_evaluations=2000,
    ).fit(X)
    result = explainer.transform(da.from_array(X[:60], chunks=(20, 6))).compute()
    # the network's matrix products round differently for other batch sizes: the
    # oracle is the in-memory call on the same blocks of rows
    expected = np.vstack([explainer.transform(X[i : i + 20]) for i in (0, 20, 40)])
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_allclose(result, explainer.transform(X[:60]), atol=1e-8)


def test_a_worker_killed_mid_computation_is_recovered(client, data):
    X, y = data
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y)
    explainer = KernelExplainer(
        model, random_state=0, max_evaluations=256, convergence_threshold=None
    ).fit(X)
    frame = pd.DataFrame(X, index=np.arange(400) * 3 + 1)
    frame_dask = dd.from_pandas(frame, npartitions=8, sort=False)
    future = client.compute(explainer.transform(frame_dask))
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 30
    while not any(client.processing().values()):  # a task has started
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.01)
    busy = next(addr for addr, tasks in client.processing().items() if tasks)
    assert not future.done()
    os.kill(pids[busy], signal.SIGKILL)
    result = future.result(timeout=60)
    assert pids[busy] not in client.run(os.getpid).values()  # the worker was killed
    pd.testing.assert_index_equal(result.index, frame.index)  # nothing lost, no dups
    np.testing.assert_array_equal(result.to_numpy(), explainer.transform(frame))


def test_explain_on_dask_says_to_use_transform(data, tree_explainer):
    X, _ = data
    with pytest.raises(TypeError, match=r"use transform\(X\)"):
        tree_explainer.explain(da.from_array(X))


def test_set_output_pandas_on_dask_is_refused(data, tree_explainer):
    X, _ = data
    explainer = QuadratureTreeExplainer(tree_explainer.estimator).fit(X)
    explainer.set_output(transform="pandas")
    with pytest.raises(ValueError, match="set_output"):
        explainer.transform(da.from_array(X))


def test_without_the_dask_extra_the_error_names_it(monkeypatch, data, tree_explainer):
    X, _ = data
    X_dask = da.from_array(X)
    monkeypatch.setitem(sys.modules, "dask.array", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "sklearn_shapley\[dask\]"'):
        tree_explainer.transform(X_dask)
