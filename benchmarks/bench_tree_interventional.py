"""Interventional TreeSHAP: QuadratureTreeExplainer against woodelf and shap, in one run.

    python benchmarks/bench_tree_interventional.py                  # issue #27's sizes
    python benchmarks/bench_tree_interventional.py --rows 2000 --pair-rows 200

(run from the repository root with the worktree's package importable, e.g.
``PYTHONPATH=.``). Each side is called once on a few rows before the timed rounds.

For every configuration (XGBoost trees, depth / features as in issue #27) it trains a
model on synthetic data, then times on the same model, rows and background, calls
alternating within each round:

- this project: ``QuadratureTreeExplainer(feature_perturbation="interventional")``,
  ``fit`` (reading the trees) plus ``transform`` (values) or ``interactions`` (pairs),
  at each thread count of ``--threads``;
- woodelf (``WoodelfExplainer(model, background_df)``, construction plus
  ``shap_values`` / ``shap_interaction_values``; numpy);
- shap (``TreeExplainer(model, Independent(bg, max_samples=len(bg)),
  feature_perturbation="interventional")``), on ``--shap-rows`` rows only (its cost is
  rows x background rows): its time is scaled to the full row count.

It prints markdown tables of the best time of the rounds, ratios (peer / ours: above 1
means we are faster), the max |difference| to each peer, and writes them to
``benchmarks/results/tree_interventional.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: (name, trees, depth, features) of issue #27.
CONFIGURATIONS = [
    ("depth6-127f", 100, 6, 127),
    ("depth8-20f", 100, 8, 20),
    ("depth4-10f", 200, 4, 10),
    ("depth12-50f", 50, 12, 50),
]


def make_model(n_trees, depth, n_features, n_train, seed=0):
    import xgboost

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_train, n_features))
    coef = rng.normal(size=n_features)
    y = X @ coef + np.sin(3 * X[:, 0]) * X[:, 1 % n_features] + rng.normal(size=n_train)
    model = xgboost.XGBRegressor(
        n_estimators=n_trees, max_depth=depth, learning_rate=0.1, n_jobs=2
    ).fit(X, y)
    return model, rng


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def ours(model, background, rows, threads, pairs):
    from sklearn.frozen import FrozenEstimator

    from sklearn_shapley import QuadratureTreeExplainer

    explainer = QuadratureTreeExplainer(
        FrozenEstimator(model),
        feature_perturbation="interventional",
        background=background,
        n_jobs=threads,
    ).fit(background)
    return explainer.interactions(rows) if pairs else explainer.transform(rows)


def woodelf(model, background, rows, pairs):
    import pandas as pd
    from woodelf.explainer import WoodelfExplainer

    columns = [f"f{j}" for j in range(rows.shape[1])]
    explainer = WoodelfExplainer(model, pd.DataFrame(background, columns=columns))
    frame = pd.DataFrame(rows, columns=columns)
    if pairs:
        return explainer.shap_interaction_values(frame, verbose=False)
    return np.asarray(explainer.shap_values(frame, verbose=False))


def shap_peer(model, background, rows, pairs):
    import shap

    masker = shap.maskers.Independent(background, max_samples=len(background))
    explainer = shap.TreeExplainer(model, masker, feature_perturbation="interventional")
    return explainer.shap_values(rows, check_additivity=False)


def run(args):
    lines = []
    for name, n_trees, depth, n_features in CONFIGURATIONS:
        if args.only and name not in args.only:
            continue
        model, rng = make_model(n_trees, depth, n_features, args.train_rows)
        X = rng.normal(size=(args.rows + max(args.backgrounds), n_features))
        for n_bg in args.backgrounds:
            background = X[args.rows : args.rows + n_bg]
            for pairs in (False, True):
                if pairs and not args.pair_rows:
                    continue
                n = args.pair_rows if pairs else args.rows
                rows = X[:n]
                shap_rows = rows[: args.shap_rows]
                times = {}
                results = {}
                # warm-up: imports and first-call costs outside the timed rounds
                ours(model, background, rows[:20], 1, pairs)
                if not args.skip_woodelf:
                    woodelf(model, background, rows[:20], pairs)
                for _ in range(args.repeats):
                    for threads in args.threads:
                        t, results["ours"] = timed(
                            ours, model, background, rows, threads, pairs
                        )
                        key = f"ours x{threads}"
                        times[key] = min(times.get(key, np.inf), t)
                    if not args.skip_woodelf:
                        t, results["woodelf"] = timed(
                            woodelf, model, background, rows, pairs
                        )
                        times["woodelf"] = min(times.get("woodelf", np.inf), t)
                    if args.shap_rows and not pairs:
                        t, results["shap"] = timed(
                            shap_peer, model, background, shap_rows, False
                        )
                        t *= n / len(shap_rows)
                        times["shap"] = min(times.get("shap", np.inf), t)
                mine = results["ours"]
                best_ours = min(v for k, v in times.items() if k.startswith("ours"))
                diffs = {}
                if "woodelf" in results:
                    diffs["woodelf"] = float(np.abs(results["woodelf"] - mine).max())
                if "shap" in results:
                    diffs["shap"] = float(
                        np.abs(results["shap"] - mine[: len(shap_rows)]).max()
                    )
                row = {
                    "config": name,
                    "background": n_bg,
                    "what": "pairs" if pairs else "values",
                    "rows": n,
                    **{k: v for k, v in times.items()},
                    "woodelf / ours": times.get("woodelf", np.nan) / best_ours,
                    "shap / ours": times.get("shap", np.nan) / best_ours,
                    "max |diff| woodelf": diffs.get("woodelf", np.nan),
                    "max |diff| shap": diffs.get("shap", np.nan),
                }
                print(row, flush=True)
                lines.append(row)
                # written as it goes: a long run leaves its finished rows
                Path(args.output).write_text(report(lines, args))
    return lines


def report(lines, args):
    keys = []
    for line in lines:
        keys += [k for k in line if k not in keys]
    out = [
        "# Interventional TreeSHAP: QuadratureTreeExplainer vs woodelf and shap",
        "",
        f"`python benchmarks/bench_tree_interventional.py {' '.join(args.argv)}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        "(shared). Times in seconds (best of the rounds; shap's scaled from "
        f"{args.shap_rows} rows); ratios peer / ours (> 1: we are faster).",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
    ]
    for line in lines:
        cells = []
        for k in keys:
            v = line.get(k, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--pair-rows", type=int, default=2000)
    parser.add_argument("--shap-rows", type=int, default=100)
    parser.add_argument("--train-rows", type=int, default=20000)
    parser.add_argument("--backgrounds", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--skip-woodelf", action="store_true")
    parser.add_argument(
        "--output", default=str(HERE / "results/tree_interventional.md")
    )
    args = parser.parse_args(argv)
    import sys

    args.argv = sys.argv[1:] if argv is None else list(argv)
    print(report(run(args), args))


if __name__ == "__main__":
    main()
