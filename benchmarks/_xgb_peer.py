"""A timing worker for a peer xgboost, run by bench_tree.py in its own interpreter.

It reads one JSON request per line on stdin and answers one JSON line on stdout:
``{"model": path, "rows": path, "kind": "contribs" | "interactions", "nthread": int,
"repeats": int, "save": path or null, "warm_bytes": int}`` -> ``{"seconds": [...],
"version": str}``; each timed call is preceded (untimed) by touching ``warm_bytes`` of
memory (see ``bench_tree.warm_memory``).
It imports only xgboost and numpy, so it runs in a bare virtual environment.
"""

import json
import sys
import time

import numpy as np
import xgboost as xgb


def main():
    boosters = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["model"], request["nthread"])
        if key not in boosters:
            booster = xgb.Booster(model_file=request["model"])
            booster.set_param({"nthread": request["nthread"]})
            boosters[key] = booster
        booster = boosters[key]
        rows = np.load(request["rows"])
        dmatrix = xgb.DMatrix(rows, missing=np.nan, nthread=request["nthread"])
        flag = (
            {"pred_contribs": True}
            if request["kind"] == "contribs"
            else {"pred_interactions": True}
        )
        seconds, out = [], None
        for _ in range(request["repeats"]):
            out = None  # free the last output before the next
            if request.get("warm_bytes"):
                np.ones(int(request["warm_bytes"]) // 8).sum()
            start = time.perf_counter()
            out = booster.predict(dmatrix, **flag)
            seconds.append(time.perf_counter() - start)
        if request.get("save"):
            np.save(request["save"], out)
        print(json.dumps({"seconds": seconds, "version": xgb.__version__}), flush=True)


if __name__ == "__main__":
    main()
