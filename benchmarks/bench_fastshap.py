"""FastSHAP with its defaults against KernelSHAP with 1,000 evaluations per row.

For diabetes (10 features, regression), breast_cancer (30, binary), digits (64, 10
classes) and a synthetic regression (``make_friedman1`` with 50 features, 45 of them
noise, 20,000 rows), a fitted GradientBoosting and MLP model, and the baseline,
marginal and surrogate value functions, the script trains
``FastSHAPExplainer(FrozenEstimator(model), value_function=..., random_state=0)``
with its defaults on the training split and reports, on ``--n-test`` test rows:

- fit time (the surrogate's training included) and the time to explain 1,000 rows;
- FastSHAP's mean L2 distance to the ground truth, and its ratio to
  ``shap.KernelExplainer(nsamples=1000)``'s (the tool a user would pick instead; for
  the surrogate game, which shap cannot evaluate, the package's paired KernelSHAP
  with 1,000 evaluations) and to the package's paired KernelSHAP@1000. Ground truth:
  exact enumeration up to 16 players, else paired KernelSHAP with
  ``--truth-evaluations`` evaluations per row;
- break-even rows: the fit time over the time per row saved against KernelSHAP@1000.

``--grid-search`` adds the GridSearchCV section of issue #26 on breast_cancer;
``--curve`` measures the error against the fit time on diabetes (GradientBoosting,
baseline game) as ``max_epochs`` grows (``fastshap_curve.md``).
Run: ``python benchmarks/bench_fastshap.py`` (results to
``benchmarks/results/fastshap.md``, rewritten after every row; ``--datasets`` /
``--models`` / ``--value-functions`` restrict the run and name the file after it).
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
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    make_friedman1,
)
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_shapley import exact_shapley, kernel_shap
from sklearn_shapley.amortized import FastSHAPExplainer
from sklearn_shapley.games import BaselineGame
from sklearn_shapley.metrics import shapley_error

RESULTS = Path(__file__).parent / "results" / "fastshap.md"
DATASETS = ("diabetes", "breast_cancer", "digits", "friedman50")
MODELS = ("GradientBoosting", "MLP")
VALUE_FUNCTIONS = ("baseline", "marginal", "surrogate")
#: Timed calls of ``explain`` on 1,000 rows; the fastest is reported.
EXPLAIN_REPEATS = 11


def load(name):
    """``(X, y, regression)`` of a benchmark dataset."""
    if name == "friedman50":
        X, y = make_friedman1(n_samples=20000, n_features=50, noise=1.0, random_state=0)
        return X, y, True
    loader = {
        "diabetes": load_diabetes,
        "breast_cancer": load_breast_cancer,
        "digits": load_digits,
    }[name]
    X, y = loader(return_X_y=True)
    return X.astype(np.float64), y, name == "diabetes"


def make_model(name, regression):
    if name == "GradientBoosting":
        cls = GradientBoostingRegressor if regression else GradientBoostingClassifier
        return cls(random_state=0)
    cls = MLPRegressor if regression else MLPClassifier
    return make_pipeline(
        StandardScaler(),
        cls(hidden_layer_sizes=(100,), max_iter=2000, random_state=0),
    )


def as_3d(values):
    return values if values.ndim == 3 else values[:, :, None]


def ground_truth(game, X, evaluations):
    exact = game.shapley_values(X)  # a tree ensemble's exact form
    if exact is not None:
        return as_3d(exact)
    if game.n_players <= 16:
        return as_3d(exact_shapley(game, X).values)
    return as_3d(
        kernel_shap(
            game,
            X,
            max_evaluations=evaluations,
            batch_size=2000,
            convergence_threshold=None,
            random_state=1,
        ).values
    )


def shap_kernel(explainer, X):
    """``shap.KernelExplainer(nsamples=1000)`` on the explainer's game, or None
    (the surrogate game), with its time per row."""
    import shap

    game = getattr(explainer.game_, "game", explainer.game_)  # a tree form's
    if not hasattr(game, "model") and not hasattr(game, "background"):
        return None, None
    model = explainer.estimator_
    f = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    data = (
        game.baseline[None]
        if isinstance(game, BaselineGame)
        else np.asarray(game.background)
    )
    kernel = shap.KernelExplainer(f, data)
    start = time.perf_counter()
    values = kernel.shap_values(X, nsamples=1000, silent=True)
    per_row = (time.perf_counter() - start) / len(X)
    values = np.asarray(values)
    if values.ndim == 3 and values.shape[0] != len(X):  # (K, n, d), older shap
        values = values.transpose(1, 2, 0)
    return as_3d(values), per_row


def _ratio(error, reference):
    """Two decimals, or one significant digit below 0.01 (not a bare 0.00)."""
    ratio = error / reference
    return f"{ratio:.2f}" if ratio >= 0.01 else f"{ratio:.1g}"


HEADER = (
    "| dataset | model | value function | fit (s) | explain 1,000 rows (ms) "
    "| FastSHAP error | shap KernelSHAP@1000 error | ratio "
    "| paired KernelSHAP@1000 error | ratio | break-even rows | plan |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def run(args):
    lines = [HEADER]
    print(HEADER, flush=True)
    results = RESULTS
    part = [*args.datasets] if len(args.datasets) < len(DATASETS) else []
    part += args.models if len(args.models) < len(MODELS) else []
    part += args.value_functions if len(args.value_functions) < 3 else []
    if part:  # a part of the benchmark: a file of its own
        results = RESULTS.with_name(f"fastshap_{'_'.join(part)}.md")
    for dataset in args.datasets:
        X, y, regression = load(dataset)
        X_train, X_test, y_train, _ = train_test_split(
            X, y, test_size=0.25, random_state=0
        )
        X_timing = np.resize(X_test, (1000, X.shape[1]))
        for model_name in args.models:
            model = make_model(model_name, regression).fit(X_train, y_train)
            for value_function in args.value_functions:
                n_test = args.n_test
                if value_function == "marginal" and X.shape[1] > 16:
                    n_test = args.n_test_marginal
                X_eval = X_test[:n_test]
                start = time.perf_counter()
                explainer = FastSHAPExplainer(
                    FrozenEstimator(model),
                    value_function=value_function,
                    random_state=0,
                ).fit(X_train)
                fit_time = time.perf_counter() - start
                explainer.explain(X_timing[:10])  # warm-up
                timings = []
                for _ in range(EXPLAIN_REPEATS):
                    start = time.perf_counter()
                    explainer.explain(X_timing)
                    timings.append(time.perf_counter() - start)
                explain_time = min(timings) / 1000  # per row
                game = explainer.game_
                estimate = as_3d(explainer.explain(X_eval).values)
                truth = ground_truth(game, X_eval, args.truth_evaluations)
                start = time.perf_counter()
                paired = as_3d(
                    kernel_shap(
                        game,
                        X_eval,
                        max_evaluations=1000,
                        convergence_threshold=None,
                        random_state=0,
                    ).values
                )
                paired_time = (time.perf_counter() - start) / len(X_eval)
                fast_error = shapley_error(estimate, truth)
                paired_error = shapley_error(paired, truth)
                shap_values, shap_time = shap_kernel(explainer, X_eval)
                if shap_values is None:
                    shap_error, shap_time = paired_error, paired_time
                    shap_cell = f"({paired_error:.4g})"
                else:
                    shap_error = shapley_error(shap_values, truth)
                    shap_cell = f"{shap_error:.4g}"
                saved = shap_time - explain_time
                break_even = fit_time / saved if saved > 0 else float("inf")
                plan = explainer.plan_
                line = (
                    f"| {dataset} | {model_name} | {value_function} "
                    f"| {fit_time:.1f} | {explain_time * 1e6:.1f} "
                    f"| {fast_error:.4g} | {shap_cell} "
                    f"| {_ratio(fast_error, shap_error)} | {paired_error:.4g} "
                    f"| {_ratio(fast_error, paired_error)} | {break_even:,.0f} "
                    f"| {plan.source} x{plan.n_copies} |"
                )
                lines.append(line)
                print(line, flush=True)
                write(results, args, lines)
    if args.grid_search:
        lines += ["", grid_search()]
        print(lines[-1], flush=True)
        write(results, args, lines)
    print(f"\nwritten to {results}")


CURVE_EPOCHS = (1, 2, 5, 10, 20, 50, 100)


def curve(args):
    """FastSHAP's error and fit time on diabetes (GradientBoosting, baseline game)
    for growing ``max_epochs``, beside shap's KernelSHAP@1000 error and time."""
    X, y, regression = load("diabetes")
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0)
    model = make_model("GradientBoosting", regression).fit(X_train, y_train)
    X_eval = X_test[: args.n_test]
    lines = [
        "| max_epochs | epochs run | fit (s) | FastSHAP error "
        "| ratio to shap KernelSHAP@1000 |",
        "|---:|---:|---:|---:|---:|",
    ]
    shap_error = truth = None
    for max_epochs in CURVE_EPOCHS:
        start = time.perf_counter()
        explainer = FastSHAPExplainer(
            FrozenEstimator(model),
            value_function="baseline",
            max_epochs=max_epochs,
            random_state=0,
        ).fit(X_train)
        fit_time = time.perf_counter() - start
        if truth is None:
            truth = ground_truth(explainer.game_, X_eval, args.truth_evaluations)
            shap_values, shap_time = shap_kernel(explainer, X_eval)
            shap_error = shapley_error(shap_values, truth)
        error = shapley_error(as_3d(explainer.explain(X_eval).values), truth)
        lines.append(
            f"| {max_epochs} | {len(explainer.history_)} | {fit_time:.1f} "
            f"| {error:.4g} | {error / shap_error:.2f} |"
        )
        print(lines[-1], flush=True)
    return (
        f"shap.KernelExplainer(nsamples=1000) on the same {len(X_eval)} rows: error "
        f"{shap_error:.4g}, {shap_time * len(X_eval):.1f} s for them.\n\n"
        + "\n".join(lines)
    )


def grid_search():
    """GridSearchCV over two explainer hyperparameters on breast_cancer: the time
    and the choice, scored by the held-out FastSHAP loss on one shared game."""
    X, y = load_breast_cancer(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0)
    model = FrozenEstimator(
        GradientBoostingClassifier(random_state=0).fit(X_train, y_train)
    )
    grid = {"hidden_layer_sizes": [(64,), (128, 128)], "n_coalitions": [16, 32]}
    start = time.perf_counter()
    search = GridSearchCV(FastSHAPExplainer(model, random_state=0), grid, cv=3).fit(
        X_train
    )
    elapsed = time.perf_counter() - start
    scores = ", ".join(
        f"{p} {s:.4g}"
        for p, s in zip(
            search.cv_results_["params"], search.cv_results_["mean_test_score"]
        )
    )
    return (
        f"GridSearchCV(FastSHAPExplainer(FrozenEstimator(gb)), {grid}, cv=3) on "
        f"breast_cancer: {elapsed:.0f} s; best {search.best_params_}; mean scores: "
        f"{scores}."
    )


def write(results, args, lines):
    header = (
        "# FastSHAP with its defaults vs KernelSHAP@1000\n\n"
        f"Errors: mean L2 distance to the ground truth over {args.n_test} test rows "
        f"({args.n_test_marginal} for the marginal game above 16 players): the "
        "game's own exact Shapley values where it has them (a tree ensemble's "
        "regression output), else exact enumeration up to 16 players, else paired "
        "KernelSHAP with "
        f"{args.truth_evaluations:,} evaluations per row; for the surrogate, the "
        "Shapley values of the trained surrogate's game. ratio = FastSHAP error / "
        "KernelSHAP@1000 error (< 1: FastSHAP is closer); the shap column is "
        "shap.KernelExplainer(nsamples=1000) on the same game (in parentheses, for "
        "the surrogate game: the package's paired KernelSHAP@1000). explain: "
        "time per 1,000 rows. Break-even "
        "rows: fit time / (KernelSHAP@1000's time per row − FastSHAP's). plan: the "
        "coalition source and copies of the training rows.\n\n"
        f"Command: `{' '.join(['python benchmarks/bench_fastshap.py', *sys.argv[1:]])}`"
        ".\n\n"
        f"Machine: {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}, "
        f"{torch.get_num_threads()} torch threads.\n\n"
    )
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(header + "\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--n-test-marginal", type=int, default=20)
    parser.add_argument("--truth-evaluations", type=int, default=20000)
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=DATASETS
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--value-functions",
        nargs="+",
        default=list(VALUE_FUNCTIONS),
        choices=VALUE_FUNCTIONS,
    )
    parser.add_argument("--grid-search", action="store_true")
    parser.add_argument("--curve", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    if args.curve:
        table = curve(args)
        path = RESULTS.with_name("fastshap_curve.md")
        path.write_text(
            "# FastSHAP: error against fit time (diabetes, GradientBoosting, "
            "baseline game)\n\n"
            "Error: mean L2 distance to the exact Shapley values on "
            f"{args.n_test} test rows; ratio to shap.KernelExplainer(nsamples=1000)'s "
            "(< 1: FastSHAP is closer). Every other parameter at its default; early "
            "stopping may end training before max_epochs.\n\n"
            f"Command: `python benchmarks/bench_fastshap.py --curve`. Torch "
            f"{torch.__version__}, {torch.get_num_threads()} torch threads.\n\n"
            + table
            + "\n"
        )
        print(f"\nwritten to {path}")
        return
    run(args)


if __name__ == "__main__":
    main()
