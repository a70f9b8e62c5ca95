"""The ``sklearn-shapley`` command.

``sklearn-shapley explain`` trains a HistGradientBoosting model on a dataset that ships
with scikit-learn, or on the user's CSV (``--data file.csv --target column``), explains
it with every explainer of the package, prints a table (top features by mean |φ|,
efficiency gap, time) and writes a PNG plot and, for a CSV, the attributions as CSV.

Every explainer explains the same output, named in the table and the CSV: the model's
prediction for a regressor, its margin (``decision_function``) for a classifier, of the
positive class when binary and of each row's predicted class otherwise. The margin is
the one output the tree explainer and the model-agnostic ones can all explain exactly.

The CSV is read with pandas; text columns become integer category codes (the model
treats them as categorical) and empty cells stay missing (NaN, which the model handles
natively), so attributions come per column of the file. Every problem with the input
or the output folder is reported in one line that says what to do, with exit code 2.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Cells read as missing besides pandas' defaults ("", "NA", "NaN", "null", ...).
EXTRA_MISSING = ["?"]
#: Delimiters the sniffer chooses from.
DELIMITERS = ",;\t|"
#: Most categories a HistGradientBoosting categorical feature takes (its max_bins).
MAX_CATEGORIES = 255
#: Most features for ExactExplainer, which evaluates all 2^d coalitions per row.
EXACT_MAX_FEATURES = 12
#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class CLIError(Exception):
    """A problem with the user's input, reported as one line."""


def _progress(message, quiet):
    if not quiet:
        print(message, file=sys.stderr, flush=True)


# -- reading the CSV ------------------------------------------------------------------
def _decode(path, encoding):
    """The file's text; a BOM is dropped, an undecodable byte is a one-line error."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise CLIError(
            f"unknown --encoding {encoding!r}; give a Python codec name such as "
            "utf-8 or latin-1"
        ) from None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CLIError(
            f"cannot read {path} ({exc.strerror}); give a file you can read"
        ) from None
    try:
        return raw.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CLIError(
            f"{path.name} is not valid {encoding} (byte 0x{raw[exc.start]:02x} on line "
            f"{line}); pass its encoding, e.g. --encoding latin-1, or re-save it as "
            "UTF-8"
        ) from None


def _sniff_delimiter(text):
    """The delimiter of the first lines of ``text`` (``,`` when they have none)."""
    sample = text[:65536]
    if "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def load_csv(path, target, encoding="utf-8"):
    """Read a CSV with a header into ``(features DataFrame, target Series, delimiter)``.

    The delimiter is sniffed among ``, ; tab |``, a UTF-8 BOM is dropped, header names
    are stripped and must be unique, and cells such as ``""``, ``NA`` or ``?`` are
    missing. A target given in the wrong case is matched when only one column fits.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CLIError(
            f"no such file: {path} (give the path of a CSV file with a header row)"
        )
    text = _decode(path, encoding)
    if not text.strip():
        raise CLIError(f"{path} is empty; it needs a header row and data rows")
    sep = _sniff_delimiter(text)
    read = {"sep": sep, "skipinitialspace": True, "low_memory": False}
    try:
        header = pd.read_csv(
            io.StringIO(text),
            header=None,
            nrows=1,
            dtype=str,
            keep_default_na=False,
            **read,
        )
        header = [name.strip() for name in header.iloc[0]]
        duplicated = sorted({n for n in header if header.count(n) > 1})
        if duplicated:
            raise CLIError(
                f"{path.name} has duplicate column names: {', '.join(duplicated)}; "
                "rename them so that every column has its own name"
            )
        frame = pd.read_csv(
            io.StringIO(text), header=0, names=header, na_values=EXTRA_MISSING, **read
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = " ".join(str(exc).split())
        raise CLIError(
            f"cannot read {path.name} as CSV (delimiter {sep!r}): {detail}; fix the "
            "file so that every row has the header's fields"
        ) from None
    if target not in header:
        matches = [n for n in header if n.lower() == target.lower()]
        if len(matches) != 1:
            raise CLIError(
                f"target column {target!r} is not in {path.name} (read with delimiter "
                f"{sep!r}); its columns are: " + ", ".join(header)
            )
        target = matches[0]
    if frame.empty:
        raise CLIError(f"{path} has a header but no data rows")
    y = frame.pop(target)
    if frame.shape[1] == 0:
        raise CLIError(
            f"{path.name} has no feature columns besides the target {target!r} (read "
            f"with delimiter {sep!r}); add the columns that predict it"
        )
    return frame, y, sep


def encode_features(frame):
    """``(X, categorical)``: numeric columns as floats, text columns as category codes.

    ``X`` is float64 with NaN where a cell is missing; ``categorical`` marks the text
    columns, whose codes index their sorted distinct values.
    """
    import pandas as pd

    columns, categorical, infinite, too_many = [], [], [], []
    for name, column in frame.items():
        if pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isinf(values).any():
                infinite.append(name)
            categorical.append(False)
        else:
            codes, uniques = pd.factorize(column, sort=True)
            if len(uniques) > MAX_CATEGORIES:
                too_many.append(f"{name} ({len(uniques)})")
            values = np.where(codes < 0, np.nan, codes).astype(np.float64)
            categorical.append(True)
        columns.append(values)
    if infinite:
        raise CLIError(
            "infinite values (inf) in columns: " + ", ".join(infinite) + " (replace "
            "them with finite numbers, or leave those cells empty to mark them missing)"
        )
    if too_many:
        raise CLIError(
            f"text columns with more than {MAX_CATEGORIES} distinct values: "
            + ", ".join(too_many)
            + " (an identifier or free text?); remove them from the CSV or encode "
            "them as numbers"
        )
    return np.column_stack(columns), np.array(categorical)


def _target_array(y, task):
    """``(y as an array, classification?)``; a one-line error for an unusable target."""
    import pandas as pd

    name = y.name
    if y.isna().any():
        raise CLIError(
            f"target column {name!r} has {int(y.isna().sum())} missing values; drop "
            "those rows first"
        )
    if y.nunique() < 2:
        raise CLIError(
            f"target column {name!r} has the same value ({y.iloc[0]}) in every row: "
            "there is nothing to predict or explain; choose another --target"
        )
    numeric = pd.api.types.is_numeric_dtype(y)
    if task == "auto":
        classification = not numeric or (
            y.nunique() <= 20 and bool(np.all(y == np.round(y)))
        )
    else:
        classification = task == "classification"
    if not classification and not numeric:
        raise CLIError(
            f"target column {name!r} holds text, which a regressor cannot predict; "
            "use --task classification (or --task auto)"
        )
    if numeric and np.isinf(y.to_numpy(dtype=np.float64)).any():
        raise CLIError(
            f"target column {name!r} has infinite values (inf); drop those rows first"
        )
    return (y.astype(str) if not numeric else y).to_numpy(), classification


# -- the explained output ---------------------------------------------------------------
def margin(model, X):
    """The model's margin ``(n, n_outputs)``: ``decision_function`` or ``predict``."""
    method = getattr(model, "decision_function", model.predict)
    return np.asarray(method(X), dtype=np.float64).reshape(len(X), -1)


class MarginWithMissing:
    """The model's margin as a function of rows in which missing cells are sentinels.

    The model-agnostic explainers take finite rows only: they see each missing cell
    of column ``j`` as ``sentinels[j]`` (a value the column never holds), and the model
    sees NaN again.
    """

    def __init__(self, model, sentinels):
        self.model = model
        self.sentinels = sentinels

    def __call__(self, Z):
        X = np.array(Z, dtype=np.float64)
        X[self.sentinels == X] = np.nan
        return margin(self.model, X)


def _sentinels(X, categorical):
    """Per column, a value it never holds: -1 for category codes, else above its max."""
    sentinels = np.full(X.shape[1], np.nan)
    for j in np.flatnonzero(np.isnan(X).any(axis=0)):
        observed = X[~np.isnan(X[:, j]), j]
        if categorical[j] or len(observed) == 0:
            sentinels[j] = -1.0
        else:
            sentinels[j] = np.nextafter(observed.max(), np.inf)
    if not np.isfinite(sentinels[~np.isnan(sentinels)]).all():
        raise CLIError(
            "a column with missing values also holds the largest float; rescale it"
        )
    return sentinels


def _baseline(X, categorical, sentinels):
    """The baseline row of the baseline game: each column's mean over its present
    cells, the most frequent category for text columns (a mean of category codes is
    no category), the missing cell's sentinel for a column with none present."""
    row = sentinels.copy()
    for j in range(X.shape[1]):
        observed = X[~np.isnan(X[:, j]), j]
        if len(observed) == 0:
            continue
        if categorical[j]:
            codes, counts = np.unique(observed, return_counts=True)
            row[j] = codes[np.argmax(counts)]
        else:
            row[j] = observed.mean()
    return row


def _explained_output(model, classification):
    """``(column(X) -> output index per row, description)`` of the explained output."""
    if not classification:
        return lambda X: np.zeros(len(X), dtype=np.int64), "the predicted value"
    classes = model.classes_
    if len(classes) == 2:
        return (
            lambda X: np.zeros(len(X), dtype=np.int64),
            f"the margin (log-odds) of class {classes[1]}",
        )
    return (
        lambda X: np.searchsorted(classes, model.predict(X)),
        "the margin (raw score) of each row's predicted class",
    )


def _output_labels(model, classification, columns):
    """Per row, the name of the explained output, for the CSV."""
    if not classification:
        return ["prediction"] * len(columns)
    classes = model.classes_
    if len(classes) == 2:
        return [f"log-odds of class {classes[1]}"] * len(columns)
    return [f"raw score of class {classes[k]}" for k in columns]


# -- the explainers --------------------------------------------------------------------
def _fastshap(model, background, random_state):
    """The CLI's FastSHAP explainer: its parameters are set here, in one place."""
    from . import FastSHAPExplainer

    return FastSHAPExplainer(
        model,
        value_function="baseline",
        background=background,
        random_state=random_state,
    )


def available_explainers(n_features, random_state):
    """``(name, uses_game, factory(model, background) -> explainer)`` for every explainer.

    ``uses_game`` explainers get the model as a function of NaN-free rows and the
    baseline row; the tree explainer gets the fitted model itself.
    """
    import sklearn_shapley as ss

    def game(cls, **params):
        return lambda m, bg: cls(m, background=bg, random_state=random_state, **params)

    factories = [("QuadratureTree", False, lambda m, bg: ss.QuadratureTreeExplainer(m))]
    if n_features <= EXACT_MAX_FEATURES:
        factories.append(("Exact", True, game(ss.ExactExplainer)))
    factories += [
        ("Kernel@1000", True, game(ss.KernelExplainer)),
        ("Permutation@1000", True, game(ss.PermutationExplainer)),
        ("FastSHAP", True, lambda m, bg: _fastshap(m, bg, random_state)),
        ("InstaSHAP", True, game(ss.InstaSHAPGAM, value_function="baseline")),
    ]
    return factories


# -- writing ---------------------------------------------------------------------------
def neutralise(cell):
    """``cell`` prefixed with ``'`` where a spreadsheet would read it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path, write, mode="w"):
    """Write ``path`` by ``write(file)`` into a new file beside it, then rename it.

    Whatever is at ``path`` (a symlink too) is replaced, never written through.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _output_dir(path):
    """Create the output folder; a one-line error when it cannot hold new files."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise CLIError(
            f"--output-dir {path} is a file, not a folder; give a folder path"
        ) from None
    except OSError as exc:
        raise CLIError(
            f"cannot write in --output-dir {path} ({exc.strerror}); choose a folder "
            "you can write to"
        ) from None
    return path


def _write_attributions(path, names, values, base, output, labels):
    def write(f):
        writer = csv.writer(f)
        writer.writerow(
            [
                *(neutralise(n) for n in names),
                "base_value",
                "explained_output",
                "output",
            ]
        )
        for phi, b, o, label in zip(values, base, output, labels):
            writer.writerow(
                [
                    *(f"{v:.10g}" for v in phi),
                    f"{b:.10g}",
                    f"{o:.10g}",
                    neutralise(label),
                ]
            )

    write_file(path, write)


def _selected(explanation, column):
    """``(values (n, d), base (n,))`` of the output ``column[i]`` of each row ``i``."""
    values, base = explanation.values, explanation.base_values
    if values.ndim == 2:
        return values, base
    rows = np.arange(len(values))
    return values[rows, :, column], base[rows, column]


def run_explain(args):
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import train_test_split

    from .plotting import importance_bars

    quiet = args.quiet
    out_dir = _output_dir(args.output_dir)
    if args.data is None:
        from sklearn.datasets import load_diabetes

        dataset = load_diabetes()
        X, y, names = dataset.data, dataset.target, list(dataset.feature_names)
        categorical = np.zeros(X.shape[1], dtype=bool)
        source = "scikit-learn's diabetes dataset (442 rows, 10 features)"
        classification = False
    else:
        if args.target is None:
            raise CLIError("--data needs --target COLUMN (the column to predict)")
        frame, target, sep = load_csv(args.data, args.target, args.encoding)
        X, categorical = encode_features(frame)
        y, classification = _target_array(target, args.task)
        names = [str(n) for n in frame.columns]
        source = f"{Path(args.data).name} ({X.shape[0]} rows, {X.shape[1]} features)"
        _progress(
            f"Read {args.data} (delimiter {sep!r}), target {target.name!r}: text "
            "columns as categories: "
            f"{', '.join(np.array(names)[categorical]) or 'none'}; "
            f"{int(np.isnan(X).sum())} missing cells kept as missing",
            quiet,
        )
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
    fitted = Model(
        categorical_features=categorical, random_state=args.random_state
    ).fit(X_train, y_train)
    column_of, output_name = _explained_output(fitted, classification)
    rows = X_test[: args.rows]
    columns = column_of(rows)
    output = margin(fitted, rows)[np.arange(len(rows)), columns]
    # the model-agnostic explainers see missing cells as sentinels (see
    # MarginWithMissing); a model whose default output is the margin and that sees no
    # missing cell goes to them as itself, so that they can read it (tree splits).
    sentinels = _sentinels(X, categorical)
    game_model = (
        MarginWithMissing(fitted, sentinels)
        if classification or not np.isnan(sentinels).all()
        else FrozenEstimator(fitted)
    )
    game_X_train = np.where(np.isnan(X_train), sentinels, X_train)
    game_rows = np.where(np.isnan(rows), sentinels, rows)
    baseline = _baseline(X_train, categorical, sentinels)
    factories = available_explainers(X.shape[1], args.random_state)
    if args.explainers:
        wanted = {w.strip().lower() for w in args.explainers.split(",")}
        factories = [f for f in factories if f[0].lower().split("@")[0] in wanted]
        if not factories:
            raise CLIError(f"no explainer matches --explainers {args.explainers}")
    results = []
    for k, (name, uses_game, factory) in enumerate(factories, 1):
        _progress(
            f"[{k}/{len(factories)}] {name}: fitting and explaining {len(rows)} rows ...",
            quiet,
        )
        start = time.perf_counter()
        if uses_game:
            explainer = factory(game_model, baseline).fit(game_X_train)
            explanation = explainer(game_rows)
        else:
            explainer = factory(FrozenEstimator(fitted), None).fit(X_train)
            explanation = explainer(rows)
        elapsed = time.perf_counter() - start
        values, base = _selected(explanation, columns)
        gap = float(np.max(np.abs(base + values.sum(axis=1) - output)))
        results.append((name, elapsed, gap, np.abs(values).mean(axis=0)))
        _progress(f"      done in {elapsed:.2f} s", quiet)
        if args.data is not None:
            labels = _output_labels(fitted, classification, columns)
            path = out_dir / f"attributions_{name.split('@')[0].lower()}.csv"
            try:
                _write_attributions(path, names, values, base, output, labels)
            except OSError as exc:
                raise CLIError(
                    f"cannot write {path} ({exc.strerror}); choose another --output-dir"
                ) from None
    print(f"\nExplained {len(rows)} rows of {source}")
    print(f"Output explained by every explainer: {output_name}")
    print(
        f"{'explainer':<18} {'time (s)':>9} {'max eff. gap':>13}  top features by mean |phi|"
    )
    for name, elapsed, gap, importance in results:
        top = np.argsort(importance)[::-1][:3]
        tops = ", ".join(f"{names[i]} ({importance[i]:.3g})" for i in top)
        print(f"{name:<18} {elapsed:>9.3f} {gap:>13.2e}  {tops}")
    if any(name == "InstaSHAP" for name, *_ in results):
        print(
            "InstaSHAP's values are exact for its additive model of the output, so "
            "its gap is that model's error;\nInstaSHAPGAM.audit says whether "
            "first-order values can be trusted for this model and data."
        )
    fig = importance_bars(
        {n: imp for n, _, _, imp in results}, names, title=f"{source}\n{output_name}"
    )
    png = out_dir / "importance.png"
    try:
        write_file(png, lambda f: fig.savefig(f, format="png", dpi=120), mode="wb")
    except OSError as exc:
        raise CLIError(
            f"cannot write {png} ({exc.strerror}); choose another --output-dir"
        ) from None
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
    explain.add_argument(
        "--data",
        help="CSV file with a header row (delimiter , ; tab or |, found by sniffing)",
    )
    explain.add_argument("--target", help="name of the column to predict")
    explain.add_argument(
        "--encoding",
        default="utf-8",
        help="the CSV's text encoding (default utf-8, with or without a BOM)",
    )
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
