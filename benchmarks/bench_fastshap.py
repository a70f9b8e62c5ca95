"""FastSHAP against paired KernelSHAP with 1,000 evaluations per row.

For diabetes (10 features, regression) and breast_cancer (30 features, classification,
both class probabilities explained) with a fitted GradientBoosting and MLP model, and the
baseline, marginal and surrogate value functions, the script trains
``FastSHAPExplainer(FrozenEstimator(model), value_function=..., link="identity")`` with
its defaults on the training split and reports, on ``--n-test`` test rows:

- the mean L2 distance to the ground truth of FastSHAP and of paired KernelSHAP with
  1,000 evaluations (``kernel_shap(max_evaluations=1000, convergence_threshold=None)``),
  and their ratio (< 1: FastSHAP is closer). Ground truth: exact enumeration for
  diabetes, KernelSHAP with ``--truth-evaluations`` evaluations per row for
  breast_cancer (``--n-test-marginal`` rows and ``--truth-evaluations-marginal``
  evaluations for the marginal game, whose values cost ``n_background`` model calls
  each; with the surrogate, the Shapley values of the trained surrogate's game);
- FastSHAP's training time, the time to explain 1,000 rows (test rows repeated; the
  fastest of ``EXPLAIN_REPEATS`` calls), and
  KernelSHAP@1000's time for the same 1,000 rows (measured on the ``--n-test`` rows and
  scaled), with the speed-up.

Run: ``python benchmarks/bench_fastshap.py`` (about an hour on 2 cores). The table is
printed and written to ``benchmarks/results/fastshap.md``; with ``--datasets`` naming
one of them, to ``benchmarks/results/fastshap_<dataset>.md`` (``--models`` naming
one: ``..._<model>.md``; ``--value-functions`` naming fewer than three:
``..._<value function>.md``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_shapley import exact_shapley, kernel_shap
from sklearn_shapley.amortized import FastSHAPExplainer
from sklearn_shapley.metrics import shapley_error

RESULTS = Path(__file__).parent / "results" / "fastshap.md"
DATASETS = ("diabetes", "breast_cancer")
MODELS = ("GradientBoosting", "MLP")
#: Timed calls of ``explain`` on 1,000 rows; the fastest is reported (a shared VM's
#: timings vary by several milliseconds between calls).
EXPLAIN_REPEATS = 21


def make_model(name, regression):
    if name == "GradientBoosting":
        cls = GradientBoostingRegressor if regression else GradientBoostingClassifier
        return cls(random_state=0)
    cls = MLPRegressor if regression else MLPClassifier
    return make_pipeline(
        StandardScaler(),
        cls(hidden_layer_sizes=(100,), max_iter=2000, random_state=0),
    )


def ground_truth(game, X, evaluations):
    if game.n_players <= 16:
        return exact_shapley(game, X).values
    return kernel_shap(
        game,
        X,
        max_evaluations=evaluations,
        batch_size=2000,
        convergence_threshold=None,
        random_state=1,
    ).values


def as_3d(values):
    return values if values.ndim == 3 else values[:, :, None]


def run(args):
    datasets = {"diabetes": load_diabetes, "breast_cancer": load_breast_cancer}
    datasets = {name: datasets[name] for name in args.datasets}
    lines = [
        "| dataset | model | value function | FastSHAP error | KernelSHAP@1000 error "
        "| ratio | FastSHAP train (s) | FastSHAP explain 1,000 rows (ms) "
        "| KernelSHAP@1000, 1,000 rows (s) | speed-up |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for dataset, loader in datasets.items():
        X, y = loader(return_X_y=True)
        X_train, X_test, y_train, _ = train_test_split(
            X, y, test_size=0.25, random_state=0
        )
        X_timing = np.resize(X_test, (1000, X.shape[1]))
        regression = dataset == "diabetes"
        for model_name in args.models:
            model = make_model(model_name, regression).fit(X_train, y_train)
            for value_function in args.value_functions:
                # The marginal game costs n_background model calls per value: fewer
                # rows and a smaller ground-truth budget where it is not enumerated.
                costly = value_function == "marginal" and X.shape[1] > 16
                X_eval = X_test[: args.n_test_marginal if costly else args.n_test]
                truth_evaluations = (
                    args.truth_evaluations_marginal
                    if costly
                    else args.truth_evaluations
                )
                start = time.perf_counter()
                explainer = FastSHAPExplainer(
                    FrozenEstimator(model),
                    value_function=value_function,
                    link="identity",
                    random_state=0,
                ).fit(X_train)
                train_time = time.perf_counter() - start
                explainer.transform(X_timing[:10])  # warm-up
                timings = []
                for _ in range(EXPLAIN_REPEATS):
                    start = time.perf_counter()
                    explainer.explain(X_timing)
                    timings.append(time.perf_counter() - start)
                explain_time = min(timings)
                game = explainer.game_
                estimate = as_3d(explainer.explain(X_eval).values)
                truth = ground_truth(game, X_eval, truth_evaluations)
                start = time.perf_counter()
                kernel = kernel_shap(
                    game,
                    X_eval,
                    max_evaluations=1000,
                    convergence_threshold=None,
                    random_state=0,
                ).values
                kernel_time = (time.perf_counter() - start) * 1000 / len(X_eval)
                fast_error = shapley_error(estimate, truth)
                kernel_error = shapley_error(kernel, truth)
                line = (
                    f"| {dataset} | {model_name} | {value_function} "
                    f"| {fast_error:.4g} | {kernel_error:.4g} "
                    f"| {fast_error / kernel_error:.2f} | {train_time:.1f} "
                    f"| {explain_time * 1000:.1f} | {kernel_time:.1f} "
                    f"| {kernel_time / explain_time:,.0f}x |"
                )
                lines.append(line)
                print(line, flush=True)
    header = (
        "# FastSHAP vs paired KernelSHAP@1000\n\n"
        f"Errors: mean L2 distance to the ground truth over {args.n_test} test rows "
        "(exact enumeration for diabetes, KernelSHAP with "
        f"{args.truth_evaluations:,} evaluations per row for breast_cancer, except "
        f"breast_cancer x marginal: {args.n_test_marginal} rows, "
        f"{args.truth_evaluations_marginal:,} evaluations; for the surrogate, the "
        "Shapley values of the trained surrogate's game). "
        "ratio = FastSHAP error / KernelSHAP error (< 1: FastSHAP is closer). "
        "FastSHAPExplainer with its defaults and link='identity' (breast_cancer: both "
        "class probabilities). KernelSHAP's time for 1,000 rows is measured on the "
        "test rows and scaled.\n\n"
        f"Command: `{' '.join(['python benchmarks/bench_fastshap.py', *sys.argv[1:]])}`"
        ".\n\n"
        f"Machine: {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}, "
        f"{torch.get_num_threads()} torch threads.\n\n"
    )
    results = RESULTS
    part = [*datasets] if len(datasets) < len(DATASETS) else []
    part += args.models if len(args.models) < len(MODELS) else []
    part += args.value_functions if len(args.value_functions) < 3 else []
    if part:  # a part of the benchmark: a file of its own
        results = RESULTS.with_name(f"fastshap_{'_'.join(part)}.md")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(header + "\n".join(lines) + "\n")
    print(f"\nwritten to {results}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--truth-evaluations", type=int, default=20000)
    parser.add_argument("--n-test-marginal", type=int, default=30)
    parser.add_argument("--truth-evaluations-marginal", type=int, default=10000)
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=DATASETS
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--value-functions",
        nargs="+",
        default=["baseline", "marginal", "surrogate"],
        choices=["baseline", "marginal", "surrogate"],
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    run(args)


if __name__ == "__main__":
    main()
