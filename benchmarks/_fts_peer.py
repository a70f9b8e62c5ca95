"""A timing worker for fasttreeshap, run by bench_tree_path_dependent.py in its own
interpreter (``benchmarks/.fts-venv``: fasttreeshap needs numpy < 2).

It reads one JSON request per line on stdin and answers one JSON line on stdout:
``{"model": path (.npz of the trees), "rows": path, "algorithm": "v1" | "v2",
"kind": "contribs" | "interactions", "n_jobs": int, "save": path or null}`` ->
``{"seconds": float, "version": str}``. The trees come as the dict model shap and
fasttreeshap accept (fasttreeshap 0.1.6 cannot read xgboost >= 2 boosters); the
timed call is the explainer's construction plus ``shap_values`` /
``shap_interaction_values``.
"""

import json
import sys
import time

import fasttreeshap
import numpy as np


def load(path):
    data = np.load(path)
    offsets = data["offsets"]
    trees = []
    for t in range(len(offsets) - 1):
        s = slice(offsets[t], offsets[t + 1])
        trees.append(
            {
                key: data[key][s]
                for key in (
                    "children_left",
                    "children_right",
                    "children_default",
                    "features",
                    "thresholds",
                    "node_sample_weight",
                )
            }
            | {"values": data["values"][s][:, None]}
        )
    return {"trees": trees, "base_offset": float(data["base_offset"])}


def main():
    models = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["model"] not in models:
            models[request["model"]] = load(request["model"])
        rows = np.load(request["rows"])
        start = time.perf_counter()
        explainer = fasttreeshap.TreeExplainer(
            models[request["model"]],
            algorithm=request["algorithm"],
            n_jobs=request["n_jobs"],
        )
        if request["kind"] == "contribs":
            out = explainer.shap_values(rows, check_additivity=False)
        else:
            out = explainer.shap_interaction_values(rows)
        seconds = time.perf_counter() - start
        if request.get("save"):
            np.save(request["save"], out)
        print(json.dumps({"seconds": seconds, "version": fasttreeshap.__version__}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
