"""The ``sklearn-shapley`` command.

``sklearn-shapley explain`` trains a model on a dataset that ships with scikit-learn and
explains it with every explainer of the package, printing a table (top features by mean
|φ|, efficiency gap, time) and writing a PNG plot. ``--data file.csv --target column``
explains the user's own data and writes the attributions to CSV.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

MISSING_TOKENS = {"", "na", "nan", "null", "none", "?"}


class CLIError(Exception):
    """A problem with the user's input, reported as one line."""


def _progress(message, quiet):
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def load_csv(path, target):
    """Read a CSV with a header into ``(X, y, feature_names)``; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(
            f"no such file: {path} (give the path of a CSV file with a header row)"
        )
    with path.open(newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise CLIError(
                f"{path} is empty; it needs a header row and data rows"
            ) from None
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    if target not in header:
        raise CLIError(
            f"target column {target!r} is not in {path.name}; its columns are: "
            + ", ".join(header)
        )
    if not rows:
        raise CLIError(f"{path} has a header but no data rows")
    bad_width = [i + 2 for i, row in enumerate(rows) if len(row) != len(header)]
    if bad_width:
        raise CLIError(
            f"line {bad_width[0]} of {path.name} has a different number of fields than "
            f"the header ({len(header)}); fix the file"
        )
    columns = {name: [row[j].strip() for row in rows] for j, name in enumerate(header)}
    y_raw = columns.pop(target)
    if any(v.lower() in MISSING_TOKENS for v in y_raw):
        raise CLIError(
            f"target column {target!r} has missing values; drop those rows first"
        )
    names, data, non_numeric, missing = list(columns), [], [], []
    for name in names:
        values = []
        for cell in columns[name]:
            if cell.lower() in MISSING_TOKENS:
                values.append(math.nan)
                continue
            try:
                values.append(float(cell))
            except ValueError:
                non_numeric.append(name)
                break
        else:
            if any(math.isnan(v) for v in values):
                missing.append(name)
            data.append(values)
    if non_numeric:
        raise CLIError(
            "non-numeric feature columns: "
            + ", ".join(non_numeric)
            + " (encode them as numbers, e.g. one-hot or ordinal codes, or drop them)"
        )
    if missing:
        raise CLIError(
            "missing values (NaN) in columns: "
            + ", ".join(missing)
            + " (impute them, e.g. with the column median, or drop those rows)"
        )
    X = np.asarray(data, dtype=np.float64).T
    try:
        y = np.asarray([float(v) for v in y_raw])
    except ValueError:
        y = np.asarray(y_raw, dtype=object)
    return X, y, names


def _is_classification(y, task):
    if task != "auto":
        return task == "classification"
    if y.dtype == object:
        return True
    values = np.unique(y)
    return len(values) <= 20 and np.all(values == np.round(values))


def available_explainers(n_features, random_state):
    """``(name, factory(frozen_model) -> explainer)`` for every explainer that applies."""
    import sklearn_shapley as ss

    factories = [("QuadratureTree", lambda m: ss.QuadratureTreeExplainer(m))]
    if n_features <= 16:
        factories.append(("Exact", lambda m: ss.ExactExplainer(m)))
    factories += [
        ("Kernel@1000", lambda m: ss.KernelExplainer(m, random_state=random_state)),
        (
            "Permutation@1000",
            lambda m: ss.PermutationExplainer(m, random_state=random_state),
        ),
        (
            "FastSHAP",
            lambda m: ss.FastSHAPExplainer(
                m, value_function="baseline", random_state=random_state
            ),
        ),
        (
            "InstaSHAP",
            lambda m: ss.InstaSHAPGAM(
                m, value_function="baseline", random_state=random_state
            ),
        ),
    ]
    return factories


def _selected(explanation, explainer, X):
    """``(values (n, d), base (n,), explained output (n,))`` for ``transform``'s output."""
    values, base = explanation.values, explanation.base_values
    output = explainer.explained_output(X)
    if values.ndim == 2:
        return values, base, output[:, 0]
    idx = explainer._output_index(values, base)
    rows = np.arange(len(values))
    return values[rows, :, idx], base[rows, idx], output[rows, idx]


def run_explain(args):
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import train_test_split

    from .plotting import importance_bars

    quiet = args.quiet
    if args.data is None:
        from sklearn.datasets import load_diabetes

        dataset = load_diabetes()
        X, y, names = dataset.data, dataset.target, list(dataset.feature_names)
        source = "scikit-learn's diabetes dataset (442 rows, 10 features)"
        classification = False
    else:
        if args.target is None:
            raise CLIError("--data needs --target COLUMN (the column to predict)")
        X, y, names = load_csv(args.data, args.target)
        source = f"{args.data} ({X.shape[0]} rows, {X.shape[1]} features)"
        classification = _is_classification(y, args.task)
    if X.shape[1] < 1:
        raise CLIError("the data has no feature columns besides the target")
    if len(X) < 10:
        raise CLIError(
            f"only {len(X)} rows: need at least 10 to train and explain a model"
        )
    X_train, X_test, y_train, _ = train_test_split(
        X, y, test_size=0.25, random_state=args.random_state
    )
    Model = (
        HistGradientBoostingClassifier
        if classification
        else HistGradientBoostingRegressor
    )
    _progress(f"Training {Model.__name__} on {source} ...", quiet)
    model = FrozenEstimator(Model(random_state=args.random_state).fit(X_train, y_train))
    rows = X_test[: args.rows]
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    factories = available_explainers(X.shape[1], args.random_state)
    if args.explainers:
        wanted = {w.strip().lower() for w in args.explainers.split(",")}
        factories = [(n, f) for n, f in factories if n.lower().split("@")[0] in wanted]
        if not factories:
            raise CLIError(f"no explainer matches --explainers {args.explainers}")
    results = []
    for k, (name, factory) in enumerate(factories, 1):
        _progress(
            f"[{k}/{len(factories)}] {name}: fitting and explaining {len(rows)} rows ...",
            quiet,
        )
        start = time.perf_counter()
        explainer = factory(model).fit(X_train)
        explanation = explainer.explain(rows)
        elapsed = time.perf_counter() - start
        values, base, target = _selected(explanation, explainer, rows)
        gap = float(np.max(np.abs(base + values.sum(axis=1) - target)))
        importance = np.abs(values).mean(axis=0)
        results.append((name, elapsed, gap, importance))
        _progress(f"      done in {elapsed:.2f} s", quiet)
        if args.data is not None:
            path = out_dir / f"attributions_{name.split('@')[0].lower()}.csv"
            with path.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow([*names, "base_value", "explained_output"])
                for phi_row, b, o in zip(values, base, target):
                    writer.writerow(
                        [*(f"{v:.10g}" for v in phi_row), f"{b:.10g}", f"{o:.10g}"]
                    )
    print(f"\nExplained {len(rows)} rows of {source}")
    print(
        f"{'explainer':<18} {'time (s)':>9} {'max eff. gap':>13}  top features by mean |phi|"
    )
    for name, elapsed, gap, importance in results:
        top = np.argsort(importance)[::-1][:3]
        tops = ", ".join(f"{names[i]} ({importance[i]:.3g})" for i in top)
        print(f"{name:<18} {elapsed:>9.3f} {gap:>13.2e}  {tops}")
    fig = importance_bars({n: imp for n, _, _, imp in results}, names, title=source)
    png = out_dir / "importance.png"
    fig.savefig(png, dpi=120)
    print(f"\nWrote {png}")
    if args.data is not None:
        print(f"Wrote attributions_<explainer>.csv files to {out_dir}/")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sklearn-shapley",
        description="Shapley-value explanations for scikit-learn models.",
    )
    sub = parser.add_subparsers(dest="command")
    explain = sub.add_parser(
        "explain",
        help="train a model and explain it with every explainer",
        description="Without --data: scikit-learn's diabetes dataset. With --data: your CSV.",
    )
    explain.add_argument("--data", help="CSV file with a header row")
    explain.add_argument("--target", help="name of the column to predict")
    explain.add_argument(
        "--task", choices=["auto", "classification", "regression"], default="auto"
    )
    explain.add_argument(
        "--rows", type=int, default=100, help="rows to explain (default 100)"
    )
    explain.add_argument(
        "--explainers",
        help="comma-separated subset, e.g. quadraturetree,kernel,fastshap",
    )
    explain.add_argument(
        "--output-dir",
        default="sklearn-shapley-output",
        help="where the PNG and CSVs go",
    )
    explain.add_argument("--random-state", type=int, default=0)
    explain.add_argument("--quiet", action="store_true", help="no progress messages")
    sub.add_parser("versions", help="print the build (OpenMP or serial) and versions")
    return parser


def main(argv=None):
    """Entry point of the ``sklearn-shapley`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "versions":
        from . import show_versions

        show_versions()
        return 0
    if args.command != "explain":
        parser.print_help()
        return 2
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    try:
        return run_explain(args)
    except CLIError as exc:
        print(f"sklearn-shapley: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
