"""Path-dependent TreeSHAP: QuadratureTreeExplainer against its peers, in one run.

    python benchmarks/bench_tree_path_dependent.py                  # issue #27's sizes
    python benchmarks/bench_tree_path_dependent.py --rows 2000 --pair-rows 200

(run from the repository root with the worktree's package importable, e.g.
``PYTHONPATH=.``). On the XGBoost models of ``bench_tree_interventional.py``
(``CONFIGURATIONS``, ``make_model``), the same saved model and rows, calls
alternating within each round, at each thread count of ``--threads``, it times:

- ours: ``QuadratureTreeExplainer(FrozenEstimator(model), n_jobs=t)``, ``fit`` plus
  ``transform`` (values) or ``interactions(X, order=2)`` (pairs), each call a new
  explainer (so the time includes reading the trees);
- xgboost >= 3.3 ``pred_contribs`` / ``pred_interactions`` in ``benchmarks/.peer-venv``
  (``bench_tree.peer_python`` / ``PeerWorker``; loading the model is not timed);
- woodelf, ``WoodelfExplainer(model, feature_perturbation="tree_path_dependent")``,
  construction plus ``shap_values`` / ``shap_interaction_values``;
- fasttreeshap ``algorithm="v1"`` and ``"v2"`` in ``benchmarks/.fts-venv`` (made on
  first use: it needs numpy < 2), driven by ``_fts_peer.py`` on the trees exported as
  the dict model it accepts; construction plus ``shap_values`` /
  ``shap_interaction_values``;

on ``--rows`` rows (values), ``--pair-rows`` rows (pairs) and ``--small`` rows (values,
the per-call setup). It prints markdown tables of the best time of the rounds, ratios
peer / ours (> 1: we are faster) and the max |difference| to each peer, and writes
them to ``benchmarks/results/tree_path_dependent.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_tree import WORK, PeerWorker, peer_python
from bench_tree_interventional import CONFIGURATIONS, make_model

HERE = Path(__file__).resolve().parent
FTS_VENV = HERE / ".fts-venv"


def fts_python():
    """The interpreter of the fasttreeshap venv (made on first use), or None, reason."""
    exe = FTS_VENV / "bin" / "python"
    probe = [str(exe), "-c", "import fasttreeshap; print(fasttreeshap.__version__)"]
    if not exe.exists():
        print(f"creating {FTS_VENV} and installing fasttreeshap ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(FTS_VENV)], check=True)
            subprocess.run(
                [
                    str(exe),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "numpy<2",
                    "fasttreeshap",
                ],
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            return None, f"could not install fasttreeshap: {exc}"
    check = subprocess.run(probe, capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"fasttreeshap does not import: {check.stderr.strip()[-200:]}"
    return str(exe), check.stdout.strip()


class FtsWorker(PeerWorker):
    """A long-lived fasttreeshap process (``_fts_peer.py``)."""

    script = "_fts_peer.py"

    def time(self, model, rows, algorithm, kind, n_jobs, save):
        request = dict(
            model=str(model),
            rows=str(rows),
            algorithm=algorithm,
            kind=kind,
            n_jobs=n_jobs,
            save=str(save),
        )
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


def export_trees(model, path):
    """The trees as fasttreeshap's dict model (arrays concatenated, with offsets)."""
    from sklearn_shapley.tree._xgboost import _parse_xgb_base_score

    learner = json.loads(model.get_booster().save_raw("json"))["learner"]
    trees = learner["gradient_booster"]["model"]["trees"]
    cols = {k: [] for k in ("children_left", "children_right", "children_default")}
    cols |= {k: [] for k in ("features", "thresholds", "values", "node_sample_weight")}
    offsets = [0]
    for tree in trees:
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        cols["children_left"].append(left)
        cols["children_right"].append(right)
        cols["children_default"].append(
            np.where(np.asarray(tree["default_left"], dtype=bool), left, right)
        )
        cols["features"].append(np.asarray(tree["split_indices"], dtype=np.int64))
        # xgboost goes left on x < c, shap's kernels on x <= threshold
        cols["thresholds"].append(np.nextafter(cond, np.float32(-np.inf)).astype(float))
        cols["values"].append(cond.astype(np.float64))
        cols["node_sample_weight"].append(np.asarray(tree["sum_hessian"], dtype=float))
        offsets.append(offsets[-1] + left.size)
    base = _parse_xgb_base_score(learner["learner_model_param"]["base_score"])[0]
    np.savez(
        path,
        offsets=np.asarray(offsets),
        base_offset=base,
        **{k: np.concatenate(v) for k, v in cols.items()},
    )


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def ours(model, rows, threads, pairs):
    from sklearn.frozen import FrozenEstimator

    from sklearn_shapley import QuadratureTreeExplainer

    explainer = QuadratureTreeExplainer(FrozenEstimator(model), n_jobs=threads)
    explainer.fit(rows)
    return explainer.interactions(rows, order=2) if pairs else explainer.transform(rows)


def woodelf(model, rows, pairs):
    import pandas as pd
    from woodelf.explainer import WoodelfExplainer

    frame = pd.DataFrame(rows, columns=[f"f{j}" for j in range(rows.shape[1])])
    explainer = WoodelfExplainer(model, feature_perturbation="tree_path_dependent")
    if pairs:
        return explainer.shap_interaction_values(frame, verbose=False)
    return np.asarray(explainer.shap_values(frame, verbose=False))


def run(args, xgb_peer, fts):
    lines = []
    for name, n_trees, depth, n_features in CONFIGURATIONS:
        if args.only and name not in args.only:
            continue
        model, rng = make_model(n_trees, depth, n_features, args.train_rows)
        model_path, trees_path = WORK / f"pd-{name}.json", WORK / f"pd-{name}.npz"
        model.get_booster().save_model(model_path)
        export_trees(model, trees_path)
        X = rng.normal(size=(args.rows, n_features))
        for what, n in (
            ("values", args.rows),
            ("pairs", args.pair_rows),
            ("small", args.small),
        ):
            if not n:
                continue
            pairs = what == "pairs"
            rows = X[:n]
            rows_path = WORK / f"pd-{name}-{what}.npy"
            np.save(rows_path, rows)
            kind = "interactions" if pairs else "contribs"
            times, results = {}, {}

            def keep(key, t, times=times):
                times[key] = min(times.get(key, np.inf), t)

            ours(model, rows[:20], 1, pairs)  # warm-up: imports, first calls
            if not args.skip_woodelf:
                woodelf(model, rows[:20], pairs)
            for _ in range(args.repeats):
                for threads in args.threads:
                    t, results["ours"] = timed(ours, model, rows, threads, pairs)
                    keep(f"ours x{threads}", t)
                    if xgb_peer is not None:
                        save = WORK / "pd-xgb.npy"
                        out = xgb_peer.time(
                            model_path, rows_path, kind, threads, save=save
                        )
                        keep(f"xgboost x{threads}", out["seconds"][0])
                        got = np.load(save)
                        results["xgboost"] = got[:, :-1, :-1] if pairs else got[:, :-1]
                    for algorithm in ("v1", "v2") if fts is not None else ():
                        save = WORK / f"pd-fts-{algorithm}.npy"
                        out = fts.time(
                            trees_path, rows_path, algorithm, kind, threads, save
                        )
                        keep(f"fts-{algorithm} x{threads}", out["seconds"])
                        results[f"fts-{algorithm}"] = np.load(save)
                if not args.skip_woodelf and not (
                    pairs and n_features > args.woodelf_pair_features
                ):
                    t, results["woodelf"] = timed(woodelf, model, rows, pairs)
                    keep("woodelf x1", t)
            row = {"config": name, "what": what, "rows": n}
            row |= {k: v for k, v in times.items()}
            for threads in args.threads:
                mine = times[f"ours x{threads}"]
                for key, t in times.items():
                    peer, _, th = key.rpartition(" x")
                    if peer != "ours" and (int(th) == threads or peer == "woodelf"):
                        row[f"{peer} x{th} / ours x{threads}"] = t / mine
            for peer, got in results.items():
                if peer != "ours":
                    row[f"max|diff| {peer}"] = float(
                        np.abs(got - results["ours"]).max()
                    )
            print(row, flush=True)
            lines.append(row)
            Path(args.output).write_text(report(lines, args))
    return lines


def report(lines, args):
    out = [
        "# Path-dependent TreeSHAP: QuadratureTreeExplainer vs xgboost, woodelf, "
        "fasttreeshap",
        "",
        f"`python benchmarks/bench_tree_path_dependent.py {' '.join(args.argv)}` on "
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared; load average at the start "
        f"{args.load_start}, at the end {os.getloadavg()[0]:.2f}). "
        f"Versions: {args.versions}. {args.notes}",
        "",
        "Times in seconds, best of the rounds. `values`: fit + transform on the rows; "
        "`pairs`: fit + interactions(X, order=2); `small`: fit + transform on a few rows "
        "(the per-call setup). Peers: explainer construction plus the call (xgboost: "
        "the predict call on a loaded booster). Ratios peer / ours: > 1 means we are "
        "faster.",
        "",
    ]
    for kind in ("times", "ratios", "diffs"):
        keys = []
        for line in lines:
            for k in line:
                is_ratio, is_diff = " / " in k, k.startswith("max|diff|")
                wanted = {"times": not is_ratio and not is_diff, "ratios": is_ratio}
                if (
                    wanted.get(kind, is_diff) or k in ("config", "what", "rows")
                ) and k not in keys:
                    keys.append(k)
        out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for line in lines:
            cells = []
            for k in keys:
                v = line.get(k, "")
                cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--pair-rows", type=int, default=2000)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=20000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--skip-woodelf", action="store_true")
    parser.add_argument("--woodelf-pair-features", type=int, default=60)
    parser.add_argument("--skip-xgboost", action="store_true")
    parser.add_argument("--skip-fasttreeshap", action="store_true")
    parser.add_argument(
        "--output", default=str(HERE / "results/tree_path_dependent.md")
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.load_start = f"{os.getloadavg()[0]:.2f}"
    import xgboost

    WORK.mkdir(exist_ok=True)
    versions, notes = [f"xgboost (ours' model) {xgboost.__version__}"], []
    xgb_peer = fts = None
    if not args.skip_xgboost:
        try:
            python, info = peer_python()
        except (OSError, subprocess.CalledProcessError) as exc:
            python, info = None, f"could not make benchmarks/.peer-venv ({exc})"
        if python is None:
            notes.append(f"xgboost >= 3.3 not run: {info}.")
        else:
            xgb_peer = PeerWorker(python)
            versions.append(f"peer xgboost {info}")
    if not args.skip_fasttreeshap:
        python, info = fts_python()
        if python is None:
            notes.append(f"fasttreeshap not run: {info}.")
        else:
            fts = FtsWorker(python)
            versions.append(f"fasttreeshap {info}")
    if not args.skip_woodelf:
        from importlib.metadata import version

        versions.append(f"woodelf-explainer {version('woodelf-explainer')}")
    for note in notes:
        print(note)
    args.versions, args.notes = ", ".join(versions), " ".join(notes)
    try:
        lines = run(args, xgb_peer, fts)
    finally:
        for worker in (xgb_peer, fts):
            if worker is not None:
                worker.close()
    print(report(lines, args))


if __name__ == "__main__":
    main()
