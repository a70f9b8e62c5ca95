"""QuadratureTreeExplainer against the peers, side by side, in one run.

    python benchmarks/bench_tree.py            # the full run
    python benchmarks/bench_tree.py --quick    # a smoke run

The full run with ``--skip-classic --repeats 2`` took about 25 minutes on 2 cores.

For every configuration it trains an XGBoost model on synthetic data shaped like the
paper's benchmarks (seed 003, Table 1: 8 / 14 / 54 / 784 features; "small" depth 6,
"large" depth 16, "sparse" 512 leaves grown loss-guided; tree counts and rows scaled
down), plus shallow (depth 2-4) and deep (depth 24-32) trees, saves it (xgboost JSON +
the rows as .npy) and times, alternating within each round, at equal thread counts:

- this project (first order and pairwise interactions),
- xgboost >= 3.3 ``pred_contribs`` / ``pred_interactions`` (Quadrature-TreeSHAP, 8
  fixed points, float32) in a Python >= 3.12 virtual environment this script creates
  in ``benchmarks/.peer-venv`` and drives through ``_xgb_peer.py`` on the same files,
- the xgboost installed next to the project (classic TreeSHAP before 3.3),
- ``shap.TreeExplainer`` on scikit-learn random forests, and ``shapiq`` at order 3.

It prints markdown tables of times (best of the rounds), ratios (peer / ours: above 1
means we are faster) and max |difference| against each peer, and our thread scaling
(the lowest and highest thread counts alternating call by call), and writes them to
``benchmarks/results/tree.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
PEER_VENV = HERE / ".peer-venv"


# -- the peer xgboost ------------------------------------------------------------------
def find_python312():
    """A Python >= 3.12 interpreter, or None."""
    candidates = ["python3.13", "python3.12"]
    for name in candidates:
        for env in ({}, {"PYENV_VERSION": "3.13.0"}, {"PYENV_VERSION": "3.12.1"}):
            exe = shutil.which(name)
            if exe is None:
                continue
            try:
                out = subprocess.run(
                    [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                    capture_output=True,
                    text=True,
                    env={**os.environ, **env},
                    timeout=30,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip() == "True":
                return exe, env
    return None, None


def peer_python():
    """The interpreter of the peer venv (created on first use), or None with a reason."""
    exe = PEER_VENV / "bin" / "python"
    if exe.exists():
        check = subprocess.run(
            [str(exe), "-c", "import xgboost; print(xgboost.__version__)"],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0:
            return str(exe), check.stdout.strip()
    python, env = find_python312()
    if python is None:
        return None, "no Python >= 3.12 found (xgboost >= 3.3 needs one)"
    print(f"creating {PEER_VENV} with {python} and installing xgboost ...", flush=True)
    subprocess.run(
        [python, "-m", "venv", str(PEER_VENV)], check=True, env={**os.environ, **env}
    )
    subprocess.run(
        [str(exe), "-m", "pip", "install", "--quiet", "xgboost>=3.3", "numpy"],
        check=True,
    )
    version = subprocess.run(
        [str(exe), "-c", "import xgboost; print(xgboost.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return str(exe), version


class PeerWorker:
    """A long-lived peer process, so timings alternate without start-up costs."""

    #: The worker script it runs, beside this file.
    script = "_xgb_peer.py"

    def __init__(self, python):
        self.proc = subprocess.Popen(
            [python, str(HERE / self.script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def time(self, model, rows, kind, nthread, repeats=1, save=None, warm_bytes=0):
        request = dict(
            model=str(model),
            rows=str(rows),
            kind=kind,
            nthread=nthread,
            repeats=repeats,
            save=None if save is None else str(save),
            warm_bytes=int(warm_bytes),
        )
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def warm_memory(nbytes):
    """Touch ``nbytes`` of memory once and free it.

    The virtual machines this was measured on report freed memory to the host
    (virtio-balloon free page reporting, about 2 s after it is freed), and touching
    such memory again costs about 1 s per GB, far more than memory freed just
    before: fashion-small's 490 MB of pairs took 0.6-1.0 s on a call that got such
    memory and 0.2 s on one that reused memory freed a moment before. Which a call
    gets depends on what ran before it, so every timed pairs call, ours and the
    peers', is preceded (untimed) by touching twice its output: each then measures
    its work and the first touch of recently used memory, as on a machine without
    page reporting."""
    np.ones(int(nbytes) // 8).sum()


# -- configurations --------------------------------------------------------------------
def configurations(quick, only=None):
    """(name, n_features, xgboost params, n_trees, rows first order, rows pairs)."""
    scale = 0.2 if quick else 1.0

    def trees(n):
        return max(2, int(n * scale))

    configs = []
    shapes = [("calhousing", 8), ("adult", 14), ("covtype", 54), ("fashion", 784)]
    for name, d in shapes:
        big = d == 784
        configs += [
            (
                f"{name}-small",
                d,
                {"max_depth": 6},
                trees(10 if not big else 100),
                1000,
                100,
            ),
            (
                f"{name}-large",
                d,
                {"max_depth": 16},
                trees(40 if not big else 20),
                300 if big else 1000,
                20 if big else 100,
            ),
            (
                f"{name}-sparse",
                d,
                {"max_depth": 0, "max_leaves": 512, "grow_policy": "lossguide"},
                trees(30 if not big else 20),
                300 if big else 1000,
                20 if big else 100,
            ),
        ]
    for depth in (2, 3, 4):
        configs.append(
            (f"shallow-d{depth}", 8, {"max_depth": depth}, trees(100), 1000, 100)
        )
    for depth in (24, 32):
        configs.append((f"deep-d{depth}", 54, {"max_depth": depth}, trees(20), 300, 30))
    if only:
        configs = [c for c in configs if c[0].startswith(tuple(only.split(",")))]
    return configs


def make_data(n_features, n_rows, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    k = min(n_features, 24)
    W = rng.normal(size=(n_features, k)) / np.sqrt(min(n_features, 16))
    Z = X @ W
    y = np.sin(Z).sum(axis=1) + Z[:, 0] * Z[:, 1] + 0.1 * rng.normal(size=n_rows)
    X[rng.random(X.shape) < 0.02] = np.nan  # missing values follow default_left
    return X, y


def best(seconds):
    return float(np.min(seconds))


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


MIN_SECONDS, MAX_ROUNDS = 1.0, 25


def _rounds(repeats, fns):
    """Time each of ``fns`` (``{name: () -> (result, seconds)}``, false values
    skipped) in turn, at least ``repeats`` rounds after one untimed round.

    Quick calls get more rounds (up to MAX_ROUNDS, until the first function has run
    for MIN_SECONDS): the best of a few millisecond timings is mostly noise.
    Returns ``({name: [seconds]}, {name: last result})``.
    """
    fns = {name: fn for name, fn in fns.items() if fn}
    first = next(iter(fns))
    times = {name: [] for name in fns}
    results = {}
    # one untimed round first (caches, the first allocation of each output)
    for fn in fns.values():
        fn()
    while len(times[first]) < repeats or (
        len(times[first]) < MAX_ROUNDS and sum(times[first]) < MIN_SECONDS
    ):
        for name, fn in fns.items():  # alternate within each round
            results.pop(name, None)  # free the last output before the next
            results[name], s = fn()
            times[name].append(s)
    return times, results


def _alternate(repeats, ours, peer, classic):
    """Time ``ours``, ``peer`` and ``classic`` (each ``() -> (result, seconds)``, or
    a false value to skip) in turn (``_rounds``).

    Returns ``({name: best seconds or nan}, {name: last result})``.
    """
    times, results = _rounds(repeats, dict(ours=ours, peer=peer, classic=classic))
    names = ("ours", "peer", "classic")
    return {n: best(times[n]) if n in times else np.nan for n in names}, results


def warmed(warm_bytes, fn, *args, **kwargs):
    """``timed(fn, *args, **kwargs)`` right after ``warm_memory(warm_bytes)``."""
    warm_memory(warm_bytes)
    return timed(fn, *args, **kwargs)


def _peer_call(peer, model_path, rows_path, kind, threads, warm_bytes=0):
    """``(None, seconds)`` of one peer call (its result goes to ``peer.npy``)."""
    out = peer.time(
        model_path,
        rows_path,
        kind,
        threads,
        save=WORK / "peer.npy",
        warm_bytes=warm_bytes,
    )
    return None, out["seconds"][0]


def _max_diff(a, b):
    return float(np.abs(a - b).max())


def run_xgboost_configs(args, threads, peer):
    import xgboost as xgb
    from sklearn.frozen import FrozenEstimator

    from sklearn_shapley import QuadratureTreeExplainer

    rows_out = []
    for name, d, params, n_trees, n_first, n_pairs in configurations(
        args.quick, args.only
    ):
        n_train = 4000 if d == 784 else 20000
        X, y = make_data(d, n_train)
        start = time.perf_counter()
        model = xgb.XGBRegressor(
            n_estimators=n_trees,
            tree_method="hist",
            n_jobs=os.cpu_count(),
            random_state=0,
            **params,
        ).fit(X, y)
        train_s = time.perf_counter() - start
        booster = model.get_booster()
        model_path = WORK / f"{name}.json"
        booster.save_model(model_path)
        rows = X[: (n_first // 5 if args.quick else n_first)]
        pair_rows = X[: max(2, n_pairs // 5 if args.quick else n_pairs)]
        rows_path, pairs_path = WORK / f"{name}-rows.npy", WORK / f"{name}-pairs.npy"
        np.save(rows_path, rows)
        np.save(pairs_path, pair_rows)
        explainer = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X[:10])
        dump = json.loads(booster.save_raw("json"))
        leaves = np.mean(
            [
                sum(1 for c in t["left_children"] if c == -1)
                for t in dump["learner"]["gradient_booster"]["model"]["trees"]
            ]
        )
        print(
            f"{name}: {n_trees} trees, {leaves:.0f} leaves/tree, trained in {train_s:.1f} s",
            flush=True,
        )
        local_dm = xgb.DMatrix(rows, missing=np.nan)
        pair_dm = xgb.DMatrix(pair_rows, missing=np.nan)
        info = dict(config=name, trees=n_trees, leaves=leaves)
        for t in threads:
            explainer.set_params(n_jobs=t)
            booster.set_param({"nthread": t})

            peer_fn = None if peer is None else partial(_peer_call, peer, model_path)
            classic = not args.skip_classic
            seconds, got = _alternate(
                args.repeats,
                partial(timed, explainer.explain, rows),
                peer_fn and partial(peer_fn, rows_path, "contribs", t),
                classic
                and partial(timed, booster.predict, local_dm, pred_contribs=True),
            )
            phi = got["ours"]
            ours_full = np.concatenate([phi.values, phi.base_values[:, None]], axis=1)
            diffs = dict(diff_peer=np.nan, diff_classic=np.nan)
            if peer is not None:
                diffs["diff_peer"] = _max_diff(np.load(WORK / "peer.npy"), ours_full)
            if "classic" in got:
                diffs["diff_classic"] = _max_diff(got["classic"], ours_full)
            rows_out.append(
                dict(info, order=1, rows=len(rows), threads=t, **seconds, **diffs)
            )
            print(_line(rows_out[-1]), flush=True)
            if d > 100 and args.quick:
                continue
            # pairwise interactions (classic xgboost: up to 54 features, all threads)
            with_classic = d <= 54 and t == threads[-1]
            warm_bytes = 2 * 8 * len(pair_rows) * d * d
            seconds, got = _alternate(
                args.repeats,
                partial(warmed, warm_bytes, explainer.interactions, pair_rows, order=2),
                peer_fn and partial(peer_fn, pairs_path, "interactions", t, warm_bytes),
                classic
                and with_classic
                and partial(
                    warmed, warm_bytes, booster.predict, pair_dm, pred_interactions=True
                ),
            )
            diffs = dict(diff_peer=np.nan, diff_classic=np.nan)
            if peer is not None:
                diffs["diff_peer"] = _max_diff(
                    np.load(WORK / "peer.npy")[:, :-1, :-1], got["ours"]
                )
            rows_out.append(
                dict(info, order=2, rows=len(pair_rows), threads=t, **seconds, **diffs)
            )
            print(_line(rows_out[-1]), flush=True)
        if len(threads) > 1 and threads[-1] > threads[0]:
            scaling = _thread_scaling(explainer, rows, threads[0], threads[-1], args)
            rows_out.append(dict(info, order=0, **scaling))
            print(
                f"  scaling {threads[0]} -> {threads[-1]} threads: "
                f"x{scaling['best']:.2f} (median of rounds x{scaling['median']:.2f})",
                flush=True,
            )
    return rows_out


def _thread_scaling(explainer, rows, low, high, args):
    """Our first order at ``low`` and ``high`` threads, alternating call by call.

    The table's two thread counts are timed minutes apart, and this VM's speed moves
    by up to 30% between such phases; alternating within one loop compares the
    two thread counts under the same conditions. Returns the number of rounds, the
    ratio of the best times and the median of the per-round ratios."""
    from sklearn.base import clone

    calls = {}
    for t in (low, high):
        fitted = clone(explainer).set_params(n_jobs=t).fit(rows[:10])
        calls[t] = partial(timed, fitted.explain, rows)
    times, _ = _rounds(max(3, args.repeats), calls)
    lo, hi = np.array(times[low]), np.array(times[high])
    return dict(
        low=low,
        high=high,
        rounds=len(lo),
        best=float(lo.min() / hi.min()),
        median=float(np.median(lo / hi)),
    )


def run_shap_forests(args, threads):
    """shap.TreeExplainer on scikit-learn random forests (single-threaded C++)."""
    try:
        import shap
    except ImportError:
        print("shap not installed: skipping the shap comparison")
        return []
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.frozen import FrozenEstimator

    from sklearn_shapley import QuadratureTreeExplainer

    out = []
    for depth, n_trees, n_rows in ((6, 50, 1000), (12, 50, 300)):
        X, y = make_data(8, 5000)
        X = np.nan_to_num(X)
        forest = RandomForestRegressor(
            n_estimators=max(2, n_trees // (5 if args.quick else 1)),
            max_depth=depth,
            random_state=0,
            n_jobs=-1,
        ).fit(X, y)
        rows = X[: (n_rows // 5 if args.quick else n_rows)].astype(np.float64)
        explainer = QuadratureTreeExplainer(FrozenEstimator(forest), n_jobs=1).fit(
            X[:10]
        )
        reference = shap.TreeExplainer(
            forest, feature_perturbation="tree_path_dependent"
        )
        ours_s, theirs_s = [], []
        for _ in range(args.repeats):
            phi, s = timed(explainer.transform, rows)
            ours_s.append(s)
            ref, s = timed(reference.shap_values, rows, check_additivity=False)
            theirs_s.append(s)
        out.append(
            dict(
                config=f"rf-depth{depth}",
                trees=forest.n_estimators,
                rows=len(rows),
                threads=1,
                ours=best(ours_s),
                shap=best(theirs_s),
                diff=float(np.abs(phi - ref).max()),
            )
        )
        print(
            f"  shap rf-depth{depth}: ours {best(ours_s):.4f} s, shap {best(theirs_s):.4f} s",
            flush=True,
        )
    return out


def run_shapiq(args):
    """Order-3 Shapley interactions of one row: shapiq's TreeSHAP-IQ vs ours."""
    try:
        import shapiq
    except ImportError:
        print("shapiq not installed: skipping the order-3 comparison")
        return []
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.frozen import FrozenEstimator

    from sklearn_shapley import QuadratureTreeExplainer

    out = []
    for depth, n_trees in ((6, 20), (10, 10)):
        X, y = make_data(8, 5000)
        X = np.nan_to_num(X)
        forest = RandomForestRegressor(
            n_estimators=max(2, n_trees // (5 if args.quick else 1)),
            max_depth=depth,
            random_state=0,
            n_jobs=-1,
        ).fit(X, y)
        explainer = QuadratureTreeExplainer(FrozenEstimator(forest), n_jobs=1).fit(
            X[:10]
        )
        row = X[:1].astype(np.float64)
        (subsets, ours), ours_s = timed(explainer.interactions, row, order=3)
        reference = shapiq.TreeExplainer(
            model=forest, max_order=3, min_order=3, index="SII"
        )
        theirs, theirs_s = timed(reference.explain, row[0])
        values = dict(theirs.dict_values)
        ref = np.array([values.get(tuple(int(i) for i in s), 0.0) for s in subsets])
        out.append(
            dict(
                config=f"rf-depth{depth}",
                trees=forest.n_estimators,
                ours=ours_s,
                shapiq=theirs_s,
                diff=float(np.abs(ours[0] - ref).max()),
            )
        )
        print(
            f"  shapiq rf-depth{depth}: ours {ours_s:.4f} s, shapiq {theirs_s:.4f} s",
            flush=True,
        )
    return out


def _ratio(a, b):
    return "–" if not np.isfinite(a) or not np.isfinite(b) else f"{a / b:.2f}"


def _fmt(x, digits=4):
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _line(r):
    return (
        f"  order {r['order']} t={r['threads']}: ours {r['ours']:.4f} s | xgb>=3.3 {_fmt(r['peer'])} s "
        f"(x{_ratio(r['peer'], r['ours'])}) | classic {_fmt(r['classic'])} s (x{_ratio(r['classic'], r['ours'])})"
    )


def report(
    xgb_rows, shap_rows, shapiq_rows, peer_version, local_version, threads, note
):
    lines = [
        "# Tree benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.platform()}; Python {platform.python_version()}.",
        f"Peers: xgboost {peer_version} (Quadrature-TreeSHAP, Python >= 3.12 venv), "
        f"xgboost {local_version} (installed beside the project). Threads: {threads}. {note}",
        "Times are the best of the alternating rounds; ratio = peer time / our time "
        "(> 1: we are faster). max |diff| is against the peer (xgboost works in float32).",
        "",
    ]
    for order, title in (
        (1, "First order (`pred_contribs`)"),
        (2, "Pairwise interactions (`pred_interactions`)"),
    ):
        lines += [
            f"## {title}",
            "",
            "| config | trees | leaves/tree | rows | threads | ours (s) | xgb>=3.3 (s) | ratio | classic xgb (s) | ratio | max abs diff vs xgb>=3.3 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in xgb_rows:
            if r["order"] != order:
                continue
            lines.append(
                f"| {r['config']} | {r['trees']} | {r['leaves']:.0f} | {r['rows']} | {r['threads']} | "
                f"{r['ours']:.4f} | {_fmt(r['peer'])} | {_ratio(r['peer'], r['ours'])} | "
                f"{_fmt(r['classic'])} | {_ratio(r['classic'], r['ours'])} | {_fmt(r['diff_peer'], 7)} |"
            )
        lines.append("")
        scaling = [r for r in xgb_rows if r["order"] == 0]
        if order == 1 and scaling:
            lines += [
                f"Thread scaling {scaling[0]['low']} -> {scaling[0]['high']} threads "
                "(first order, ours alone, the two thread counts alternating call by "
                "call: ratio of the best times, and the median of the per-round "
                "ratios):",
                "",
                "| config | rounds | best | median |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r['config']} | {r['rounds']} | x{r['best']:.2f} | x{r['median']:.2f} |"
                for r in scaling
            ]
            lines.append("")
    if shap_rows:
        lines += [
            "## shap.TreeExplainer (scikit-learn random forests, 1 thread)",
            "",
            "| config | trees | rows | ours (s) | shap (s) | ratio | max abs diff |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['config']} | {r['trees']} | {r['rows']} | {r['ours']:.4f} | {r['shap']:.4f} | "
            f"{r['shap'] / r['ours']:.2f} | {r['diff']:.2e} |"
            for r in shap_rows
        ]
        lines.append("")
    if shapiq_rows:
        lines += [
            "## shapiq TreeSHAP-IQ, order 3, one row",
            "",
            "| config | trees | ours (s) | shapiq (s) | ratio | max abs diff |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['config']} | {r['trees']} | {r['ours']:.4f} | {r['shapiq']:.4f} | "
            f"{r['shapiq'] / r['ours']:.1f} | {r['diff']:.2e} |"
            for r in shapiq_rows
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating rounds (at least)"
    )
    parser.add_argument(
        "--threads", default=None, help="comma list, default '1,<all cores>'"
    )
    parser.add_argument(
        "--skip-peer", action="store_true", help="do not use xgboost >= 3.3"
    )
    parser.add_argument(
        "--skip-classic", action="store_true", help="skip the local xgboost"
    )
    parser.add_argument(
        "--only", default=None, help="comma list of config name prefixes"
    )
    parser.add_argument("--out", default=str(HERE / "results" / "tree.md"))
    args = parser.parse_args(argv)
    import xgboost

    threads = (
        [int(t) for t in args.threads.split(",")]
        if args.threads
        else sorted({1, os.cpu_count() or 1})
    )
    WORK.mkdir(exist_ok=True)
    peer, note, peer_version = None, "", "–"
    if not args.skip_peer:
        python, info = peer_python()
        if python is None:
            note = f"xgboost >= 3.3 not run: {info}."
            print(note)
        else:
            peer, peer_version = PeerWorker(python), info
    try:
        xgb_rows = run_xgboost_configs(args, threads, peer)
    finally:
        if peer is not None:
            peer.close()
    shap_rows = run_shap_forests(args, threads)
    shapiq_rows = run_shapiq(args)
    text = report(
        xgb_rows,
        shap_rows,
        shapiq_rows,
        peer_version,
        xgboost.__version__,
        threads,
        note,
    )
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
