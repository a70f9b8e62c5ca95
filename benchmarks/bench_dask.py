"""QuadratureTreeExplainer.transform on a Dask LocalCluster vs in memory.

A 100-tree depth-6 XGBoost regressor on ``--n-rows`` rows (default 2,000,000) of
``--n-features`` features. Measured in one run:

- in memory: ``transform(X)`` with ``n_jobs`` = the total thread count;
- on a ``LocalCluster`` of 1 worker with that many threads, and of that many workers
  with 1 thread each: ``transform(X_dask).sum(axis=0)`` computed, where ``X_dask``
  is generated block by block on the workers (the same rows as the in-memory ``X``),
  so that a worker holds only the chunks it is working on.

It prints throughput (rows/s), the ratio to the in-memory call, and the peak RSS of
each worker (``VmHWM``), as a Markdown table (``--out`` writes it to a file).

    PYTHONPATH=. python benchmarks/bench_dask.py --n-rows 2000000 --chunk-rows 100000

(``PYTHONPATH=.`` from the repository root, so that the workers import this
checkout.)
"""

from __future__ import annotations

import argparse
import os
import time

import dask.array as da
import numpy as np
import xgboost
from distributed import Client, LocalCluster
from sklearn.frozen import FrozenEstimator

from sklearn_shapley import QuadratureTreeExplainer

#: Rows generated per block: the rows are the same whatever the chunk size explained.
GENERATED_ROWS = 10_000


def make_rows(n_rows, n_features, chunk_rows):
    """The rows as a Dask array generated on the workers, in chunks of ``chunk_rows``."""
    rows = da.random.default_rng(0).normal(
        size=(n_rows, n_features), chunks=(GENERATED_ROWS, n_features)
    )
    return rows.rechunk((chunk_rows, n_features))


def make_explainer(n_features):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20_000, n_features))
    y = X[:, 0] + X[:, 1] * X[:, 2] + np.sin(X[:, 3]) + 0.1 * rng.normal(size=len(X))
    model = xgboost.XGBRegressor(n_estimators=100, max_depth=6, random_state=0)
    return QuadratureTreeExplainer(FrozenEstimator(model.fit(X, y))).fit(X)


def peak_rss_mib():
    """This process's peak resident memory (``VmHWM``: not inherited across exec)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def on_cluster(explainer, X_dask, n_workers, threads_per_worker):
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: explainer.transform(np.zeros((1, X_dask.shape[1]))))
        start = time.perf_counter()
        total = explainer.transform(X_dask).sum(axis=0).compute()
        seconds = time.perf_counter() - start
        rss = sorted(client.run(peak_rss_mib).values())
    return seconds, total, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=2_000_000)
    parser.add_argument("--n-features", type=int, default=20)
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    explainer = make_explainer(args.n_features)
    n = args.n_rows
    X = make_rows(n, args.n_features, args.chunk_rows[0]).compute(scheduler="sync")
    explainer.set_params(n_jobs=args.threads)
    explainer.transform(X[:1000])  # prepare the kernel data
    start = time.perf_counter()
    expected = explainer.transform(X).sum(axis=0)
    in_memory = time.perf_counter() - start
    explainer.set_params(n_jobs=None)
    rows = [
        f"| in memory | n_jobs={args.threads} | - | {n / in_memory:,.0f} | 1.00 "
        f"| {peak_rss_mib():,.0f} (process, holds X) |"
    ]
    layouts = [(1, args.threads)] + ([(args.threads, 1)] if args.threads > 1 else [])
    for chunk_rows in args.chunk_rows:
        X_dask = make_rows(n, args.n_features, chunk_rows)
        for n_workers, threads in layouts:
            seconds, total, rss = on_cluster(explainer, X_dask, n_workers, threads)
            np.testing.assert_allclose(total, expected, rtol=1e-9)
            rows.append(
                f"| LocalCluster | {n_workers} worker(s) x {threads} thread(s) "
                f"| {chunk_rows:,} | {n / seconds:,.0f} | {in_memory / seconds:.2f} "
                f"| {', '.join(f'{r:,.0f}' for r in rss)} |"
            )
    table = "\n".join(
        [
            f"{n:,} rows x {args.n_features} features, XGBoost 100 trees depth 6, "
            f"{args.threads} threads in all, {os.cpu_count()} CPUs",
            "",
            "| where | threads | chunk rows | rows/s | ratio to in memory "
            "| peak RSS per worker (MiB) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
