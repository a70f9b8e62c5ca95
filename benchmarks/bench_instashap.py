"""InstaSHAP against exact Shapley values, FastSHAP and KernelSHAP, in one run.

    python benchmarks/bench_instashap.py            # the full run (~15 min, 2 busy cores)
    python benchmarks/bench_instashap.py --quick    # a smoke run

Three parts, each against an oracle:

1. **Real data** (scikit-learn's diabetes, 10 features, standardised; 342 rows to
   train, 100 to explain): a random forest and an RBF support-vector regressor are
   explained under two teachers — the baseline game (held-out features at their mean)
   and one masked surrogate network (``fit_surrogate``) shared by every explainer.
   The oracle is exact enumeration of the teacher game (``2^10`` coalitions per row).
   InstaSHAP of order 1 and 2 is compared with FastSHAP (same teacher, same rows) and
   with KernelSHAP at two budgets: mean L2 error ``‖φ̂ − φ‖₂`` (relative to the mean
   ``‖φ‖₂``), R² over all entries, fit and explain times.
2. **Synthetic** ``y = x1 + x2·x3 + sin(x4)`` plus two null features, the black box
   being that exact function under the baseline and marginal games: R² of InstaSHAP's
   values against exact enumeration (which equals the analytic form), per feature, and
   the audit's first-order gap.
3. **Correlated inputs** (equicorrelated Gaussians, ρ = 0.8), marginal game: the
   components of the masked GAM against an ordinary GAM of the same architecture
   fitted without masking (``unmasked_fraction=1``), both on one fixed marginal game:
   variance of each shape function, distance to the purified components (the Möbius
   transform of the game, exact), the variance put in components the game does not
   have, and the seed-to-seed variance of the components (two training seeds).

Markdown tables are printed and written to ``benchmarks/results/instashap.md``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.svm import SVR

from sklearn_shapley import InstaSHAPGAM, exact_shapley, kernel_shap
from sklearn_shapley.amortized import ShapleyTrustWarning
from sklearn_shapley.games import BaselineGame, MarginalGame
from sklearn_shapley.metrics import shapley_error
from sklearn_shapley.sampling import all_coalitions

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instashap.md"


def table(header, rows):
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def values_of(explainer, X):
    values = explainer.explain(X).values
    return values if values.ndim == 3 else values[:, :, None]


def accuracy_row(method, teacher, estimate, truth, fit_s, explain_s):
    norm = np.linalg.norm(truth, axis=1).mean()
    error = shapley_error(estimate, truth)
    return [
        method,
        teacher,
        f"{error:.3f}",
        f"{error / norm:.3f}",
        f"{r2_score(truth.ravel(), estimate.ravel()):.4f}",
        "-" if fit_s is None else f"{fit_s:.1f}",
        f"{explain_s * 1e3:.1f}",
    ]


def real_data(quick):
    from sklearn_shapley.amortized._fastshap import FastSHAPExplainer
    from sklearn_shapley.amortized._surrogate import fit_surrogate

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=100, random_state=0)
    models = {
        "random forest": RandomForestRegressor(
            n_estimators=100, min_samples_leaf=5, random_state=0
        ),
        "RBF SVR": SVR(C=100.0, gamma=0.05),
    }
    insta = {"random_state": 0}
    fast = {"random_state": 0}
    surrogate_params = {"random_state": 0}
    if quick:
        X_test = X_test[:20]
        insta.update(max_epochs=5)
        fast.update(max_epochs=3)
        surrogate_params.update(max_epochs=5)
    rows = []
    for model_name, model in models.items():
        model.fit(X_train, y_train)
        frozen = FrozenEstimator(model)
        surrogate, surrogate_s = timed(
            fit_surrogate, frozen, X_train, **surrogate_params
        )
        teachers = {
            "baseline": BaselineGame(frozen, X_train.mean(axis=0)),
            "surrogate": surrogate,
        }
        for teacher_name, game in teachers.items():
            label = f"{model_name} / {teacher_name}"
            truth = exact_shapley(game, X_test).values
            for order in (1, 2):
                gam = InstaSHAPGAM(
                    frozen, value_function=game, max_order=order, **insta
                )
                _, fit_s = timed(gam.fit, X_train)
                estimate, explain_s = timed(values_of, gam, X_test)
                rows.append(
                    accuracy_row(
                        f"InstaSHAP order {order}",
                        label,
                        estimate,
                        truth,
                        fit_s,
                        explain_s,
                    )
                )
            fs = FastSHAPExplainer(frozen, value_function=game, **fast)
            _, fit_s = timed(fs.fit, X_train)
            estimate, explain_s = timed(values_of, fs, X_test)
            rows.append(
                accuracy_row("FastSHAP", label, estimate, truth, fit_s, explain_s)
            )
            for budget in (256, 1024):
                result, explain_s = timed(
                    kernel_shap,
                    game,
                    X_test,
                    max_evaluations=budget,
                    convergence_threshold=None,
                    random_state=0,
                )
                rows.append(
                    accuracy_row(
                        f"KernelSHAP {budget} evals",
                        label,
                        result.values,
                        truth,
                        None,
                        explain_s,
                    )
                )
        print(f"  {model_name}: surrogate fitted in {surrogate_s:.1f} s", flush=True)
    header = [
        "method",
        "model / teacher",
        "mean ‖φ̂−φ‖₂",
        "relative",
        "R²",
        "fit (s)",
        f"explain {len(X_test)} rows (ms)",
    ]
    return table(header, rows)


def synthetic_function(X):
    return X[:, 0] + X[:, 1] * X[:, 2] + np.sin(X[:, 3])


def synthetic(quick):
    rng = np.random.default_rng(0)
    X, X_test = rng.normal(size=(600, 6)), rng.normal(size=(300, 6))
    settings = {"random_state": 0, "n_background": 50}
    if quick:
        settings.update(max_epochs=5)
    rows = []
    for value_function in ("baseline", "marginal"):
        for order in (1, 2):
            gam = InstaSHAPGAM(
                synthetic_function,
                value_function=value_function,
                max_order=order,
                **settings,
            ).fit(X)
            phi = gam.transform(X_test)
            truth = exact_shapley(gam.game_, X_test).values[:, :, 0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ShapleyTrustWarning)
                audit = gam.audit(X_test)
            per_feature = [f"{r2_score(truth[:, i], phi[:, i]):.3f}" for i in range(4)]
            rows.append(
                [
                    value_function,
                    order,
                    f"{r2_score(truth.ravel(), phi.ravel()):.4f}",
                    *per_feature,
                    f"{np.abs(phi[:, 4:]).mean():.4f}",
                    f"{audit.gaps[1]:.3f}",
                    f"{audit.gaps[order]:.3f}",
                    "yes" if audit.trustworthy else "**flagged**",
                ]
            )
    header = [
        "game",
        "max_order",
        "R² (all)",
        "R² x1",
        "R² x2",
        "R² x3",
        "R² x4",
        "mean |φ| nulls",
        "audit gap, order 1",
        "audit gap, max_order",
        "first-order SHAP trusted",
    ]
    return table(header, rows)


def mobius(game, X, components):
    """Harsanyi dividends of every component: the purified components of the game."""
    masks = all_coalitions(game.n_players)
    values = game(X, masks)[:, :, 0]
    code = {tuple(np.flatnonzero(m)): i for i, m in enumerate(masks)}
    out = np.zeros((len(X), len(components)))
    for c, T in enumerate(components):
        for k in range(len(T) + 1):
            for S in itertools.combinations(T, k):
                out[:, c] += (-1) ** (len(T) - k) * values[:, code[S]]
    return out


def correlated(quick):
    rho, d = 0.8, 6
    cov = np.full((d, d), rho) + (1 - rho) * np.eye(d)
    rng = np.random.default_rng(1)
    X = rng.multivariate_normal(np.zeros(d), cov, size=600)
    X_test = rng.multivariate_normal(np.zeros(d), cov, size=300)
    # One teacher for every fit, so that seeds change only the training.
    game = MarginalGame(synthetic_function, X[rng.choice(len(X), 50, replace=False)])
    settings = {"value_function": game, "max_order": 2}
    if quick:
        settings.update(max_epochs=5)
    fits = {}
    for name, fraction in (("masked (InstaSHAP)", 0.1), ("ordinary GAM", 1.0)):
        fits[name] = [
            InstaSHAPGAM(
                synthetic_function,
                unmasked_fraction=fraction,
                random_state=seed,
                **settings,
            ).fit(X)
            for seed in (0, 1)
        ]
    first = fits["masked (InstaSHAP)"][0]
    truth = mobius(game, X_test, first.components_)
    names = ["·".join(f"x{p + 1}" for p in T) for T in first.components_]
    values = {
        name: [gam.component_values(X_test) for gam in gams]
        for name, gams in fits.items()
    }
    shown = [
        c
        for c in range(len(names))
        if truth[:, c].var() > 0.01
        or any(v[0][:, c].var() > 0.05 for v in values.values())
    ]
    rows = []
    for c in shown:
        row = [names[c], f"{truth[:, c].var():.3f}"]
        for name in fits:
            row.append(f"{values[name][0][:, c].var():.3f}")
        for name in fits:
            row.append(f"{((values[name][0][:, c] - truth[:, c]) ** 2).mean():.3f}")
        rows.append(row)
    totals = ["**all components**", f"{truth.var(axis=0).sum():.3f}"]
    for name in fits:
        totals.append(f"{values[name][0].var(axis=0).sum():.3f}")
    for name in fits:
        totals.append(f"{((values[name][0] - truth) ** 2).mean(axis=0).sum():.3f}")
    rows.append(totals)
    header = ["component", "Var purified (oracle)"]
    header += [f"Var {name}" for name in fits]
    header += [f"MSE to oracle, {name}" for name in fits]
    spurious = truth.var(axis=0) < 1e-3  # components the game does not have
    summary_rows = []
    for name, (a, b) in values.items():
        prediction = fits[name][0].predict(X_test)
        summary_rows.append(
            [
                name,
                f"{((a - b) ** 2).mean(axis=0).sum() / 2:.3f}",
                f"{a.var(axis=0)[spurious].sum():.3f}",
                f"{r2_score(synthetic_function(X_test), prediction):.4f}",
            ]
        )
    summary = table(
        [
            "GAM",
            "seed-to-seed variance (sum over components)",
            f"variance in the {spurious.sum()} components the game lacks",
            "R² of F(x, full) to f",
        ],
        summary_rows,
    )
    return table(header, rows) + "\n\n" + summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    sections = [
        "# InstaSHAP benchmark",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads available (InstaSHAP trains on 1); "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"load average at start {os.getloadavg()[0]:.1f} (timings on a shared "
        "machine are inflated by other jobs)."
        + (" **Quick smoke run: not the figures to report.**" if args.quick else ""),
    ]
    for title, part in (
        (
            "## 1. Diabetes: error against exact Shapley values of the teacher",
            real_data,
        ),
        ("## 2. Synthetic x1 + x2·x3 + sin(x4) (+2 null features)", synthetic),
        ("## 3. Correlated inputs (ρ = 0.8): purified components", correlated),
    ):
        print(title, flush=True)
        start = time.perf_counter()
        text = part(args.quick)
        print(text, flush=True)
        print(f"({time.perf_counter() - start:.0f} s)\n", flush=True)
        sections += [title, text]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        RESULTS.write_text("\n\n".join(sections) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
