"""ViT Shapley on scikit-learn's digits against the baselines and exact Shapley values.

A small vision transformer is trained on the 8 x 8 digits (patches of 2 x 2: 16
players), then the surrogate (a copy fine-tuned to predict with patches held out by
attention masking) and the ViT Shapley explainer, all on the CPU. Every method explains
the true class of held-out test images:

- insertion / deletion AUC: the surrogate's probability of the class as the most
  important patches are added to an empty image / removed from the full one
  (higher / lower is better), faithfulness (correlation of summed attributions with
  the probability drop, higher is better), explanation time per image;
- exact Shapley values of the surrogate game (all 65,536 coalitions per image,
  ``exact_shapley``) on a subset: the distance of ViT Shapley to them, and the
  held-out loss certificate ``E‖φ̂ − φ‖₂ ≤ sqrt(2 H_15 (L(θ) − L*))``.

The paper's figures (ImageNette, ViT-Base): ViT Shapley insertion 0.985 vs 0.977 for the
best baseline (RISE), deletion 0.691 vs 0.779 (LRP).

Usage::

    python benchmarks/bench_vit_shapley.py            # about 10 minutes on 1 busy core
    python benchmarks/bench_vit_shapley.py --quick    # a smoke run

Prints a markdown table and writes it to ``benchmarks/results/vit_shapley.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from sklearn_shapley import (
    UNetShapleyExplainer,
    ViTClassifier,
    ViTShapleyExplainer,
    exact_shapley,
)
from sklearn_shapley.metrics import shapley_error
from sklearn_shapley.vision import metrics as im

RESULTS = Path(__file__).parent / "results" / "vit_shapley.md"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke settings")
    parser.add_argument("--n-eval", type=int, default=150, help="images evaluated")
    parser.add_argument("--n-exact", type=int, default=12, help="images with exact φ")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def _kl(p, q):
    return float(np.mean(np.sum(p * np.log(p / np.clip(q, 1e-12, None)), axis=1)))


def evaluate(game, X, values, target, seconds):
    insertion, deletion = im.insertion_deletion_auc(game, X, values, target)
    faith = im.faithfulness(game, X, values, target, n_coalitions=200)
    return {
        "insertion": (insertion.mean(), insertion.std() / np.sqrt(len(X))),
        "deletion": (deletion.mean(), deletion.std() / np.sqrt(len(X))),
        "faithfulness": (np.nanmean(faith), np.nanstd(faith) / np.sqrt(len(X))),
        "ms": 1e3 * seconds / len(X),
    }


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    settings = {
        "classifier_epochs": 4 if args.quick else 30,
        "surrogate_epochs": 2 if args.quick else 15,
        "explainer_epochs": 2 if args.quick else 20,
        "vit": {"embed_dim": 64, "depth": 2, "n_heads": 4},
    }
    if args.quick:
        args.n_eval, args.n_exact = min(args.n_eval, 30), min(args.n_exact, 2)
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    log = []

    clf, t_clf = timed(
        ViTClassifier(
            patch_size=2,
            learning_rate=2e-3,
            batch_size=32,
            max_epochs=settings["classifier_epochs"],
            random_state=0,
            **settings["vit"],
        ).fit,
        X_train,
        y_train,
    )
    log.append(
        f"ViT classifier ({settings['vit']}): test accuracy "
        f"{clf.score(X_test, y_test):.3f}, trained in {t_clf:.0f} s"
    )
    explainer, t_fit = timed(
        ViTShapleyExplainer(
            FrozenEstimator(clf),
            n_coalitions=32,
            max_epochs=settings["explainer_epochs"],
            surrogate_params={"max_epochs": settings["surrogate_epochs"]},
            random_state=0,
        ).fit,
        X_train,
    )
    game = explainer.surrogate_
    full = game(X_test, np.ones((1, 16), dtype=bool))[:, 0]
    log.append(
        f"surrogate ({settings['surrogate_epochs']} epochs) + explainer "
        f"({settings['explainer_epochs']} epochs, 32 paired masks per image): "
        f"{t_fit:.0f} s; surrogate test accuracy on full images "
        f"{np.mean(full.argmax(axis=1) == y_test):.3f}, agreement with the classifier "
        f"{np.mean(full.argmax(axis=1) == clf.predict(X_test)):.3f}"
    )

    masks = np.random.default_rng(0).random((len(X_test), 16)) < 0.5
    target = clf.predict_proba(X_test)
    log.append(
        "KL(f(x) ‖ g(x_S)) with half the patches held out (attention masking): "
        f"classifier {_kl(target, clf.predict_proba(X_test, mask=masks)):.3f}, "
        f"fine-tuned surrogate {_kl(target, game(X_test, masks[:, None])[:, 0]):.3f}"
    )
    unet, t_unet = timed(
        UNetShapleyExplainer(
            FrozenEstimator(clf),
            value_function=game,
            n_coalitions=32,
            max_epochs=settings["explainer_epochs"],
            random_state=0,
        ).fit,
        X_train,
    )
    log.append(
        f"U-Net explainer on the same surrogate game ({settings['explainer_epochs']} "
        f"epochs): {t_unet:.0f} s"
    )

    X_eval, y_eval = X_test[: args.n_eval], y_test[: args.n_eval]
    rows = np.arange(len(X_eval))
    methods = {}
    exp, seconds = timed(explainer.explain, X_eval)
    methods["ViT Shapley"] = (exp.values[rows, :, y_eval], seconds)
    exp_unet, seconds = timed(unet.explain, X_eval)
    methods["U-Net explainer (FastSHAP)"] = (exp_unet.values[rows, :, y_eval], seconds)
    methods["Attention last"] = timed(im.attention_last, clf, X_eval)
    methods["Attention rollout"] = timed(im.attention_rollout, clf, X_eval)
    methods["Vanilla gradients"] = timed(im.vanilla_gradients, clf, X_eval, y_eval)
    methods["Integrated Gradients"] = timed(
        im.integrated_gradients, clf, X_eval, y_eval
    )
    methods["SmoothGrad"] = timed(im.smoothgrad, clf, X_eval, y_eval, random_state=0)
    methods["Leave-one-out"] = timed(im.leave_one_out, game, X_eval, y_eval)
    table = {
        name: evaluate(game, X_eval, v, y_eval, s) for name, (v, s) in methods.items()
    }
    draws = [
        evaluate(game, X_eval, im.random_attributions(len(X_eval), 16, seed), y_eval, 0)
        for seed in range(10)
    ]
    table["Random (10 orderings)"] = {
        key: (np.mean([d[key][0] for d in draws]), np.mean([d[key][1] for d in draws]))
        for key in ("insertion", "deletion")
    } | {"faithfulness": (np.nan, np.nan), "ms": 0.0}

    # Exact Shapley values of the surrogate game on a subset.
    X_exact, y_exact = X_eval[: args.n_exact], y_eval[: args.n_exact]
    sub = np.arange(len(X_exact))
    truth, t_exact = timed(exact_shapley, game, X_exact.reshape(len(X_exact), -1))
    truth = truth.values
    estimate = exp.values[: len(X_exact)]
    exact_row = evaluate(game, X_exact, truth[sub, :, y_exact], y_exact, t_exact)
    vit_row = evaluate(game, X_exact, estimate[sub, :, y_exact], y_exact, 0)
    target_truth, target_estimate = truth[sub, :, y_exact], estimate[sub, :, y_exact]
    correlation = np.mean(
        [np.corrcoef(a, b)[0, 1] for a, b in zip(target_estimate, target_truth)]
    )
    certificate = im.shapley_loss_certificate(
        game, X_exact, estimate, exact_values=truth, n_coalitions=2048
    )
    loose = im.shapley_loss_certificate(game, X_exact, estimate, n_coalitions=2048)
    distance = {
        "images": len(X_exact),
        "error_all": shapley_error(estimate, truth),
        "norm_all": float(np.mean(np.linalg.norm(truth, axis=1))),
        "error_target": float(
            np.mean(np.linalg.norm(target_estimate - target_truth, axis=1))
        ),
        "norm_target": float(np.mean(np.linalg.norm(target_truth, axis=1))),
        "correlation": correlation,
        "top1": float(np.mean(target_estimate.argmax(1) == target_truth.argmax(1))),
        "certificate": certificate,
        "loose": loose,
        "exact_seconds": t_exact / len(X_exact),
    }
    report = render(table, exact_row, vit_row, distance, log, args, len(X_eval))
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)


def _cell(pair, best=False):
    mean, sem = pair
    if np.isnan(mean):
        return "–"
    text = f"{mean:.3f} ± {sem:.3f}"
    return f"**{text}**" if best else text


def render(table, exact_row, vit_row, distance, log, args, n_eval):
    ranked = {k: v for k, v in table.items() if not k.startswith("Random")}
    best_ins = max(ranked, key=lambda k: ranked[k]["insertion"][0])
    best_del = min(ranked, key=lambda k: ranked[k]["deletion"][0])
    best_faith = max(ranked, key=lambda k: ranked[k]["faithfulness"][0])
    lines = [
        "# ViT Shapley on digits (8 x 8, 2 x 2 patches: 16 players)",
        "",
        *[f"- {line}" for line in log],
        f"- torch threads: {args.threads}; {n_eval} test images, explaining their "
        "true class; removal through the surrogate (probabilities)",
        "",
        "| method | insertion AUC (↑) | deletion AUC (↓) | faithfulness (↑) | ms / image |",
        "|---|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {_cell(row['insertion'], name == best_ins)} | "
            f"{_cell(row['deletion'], name == best_del)} | "
            f"{_cell(row['faithfulness'], name == best_faith)} | {row['ms']:.2f} |"
        )
    d, c, loose = distance, distance["certificate"], distance["loose"]
    lines += [
        "",
        "(mean ± standard error over images; best non-random method in bold)",
        "",
        f"## Against exact Shapley values of the surrogate game ({d['images']} images)",
        "",
        "| | insertion AUC | deletion AUC | faithfulness | ms / image |",
        "|---|---|---|---|---|",
        f"| exact (65,536 coalitions) | {_cell(exact_row['insertion'])} | "
        f"{_cell(exact_row['deletion'])} | {_cell(exact_row['faithfulness'])} | "
        f"{exact_row['ms']:.0f} |",
        f"| ViT Shapley | {_cell(vit_row['insertion'])} | {_cell(vit_row['deletion'])} "
        f"| {_cell(vit_row['faithfulness'])} | {table['ViT Shapley']['ms']:.2f} |",
        "",
        f"- mean ‖φ̂ − φ‖₂ over images and classes: {d['error_all']:.4f} "
        f"(mean ‖φ‖₂ {d['norm_all']:.4f}); explained class: {d['error_target']:.4f} "
        f"(‖φ‖₂ {d['norm_target']:.4f})",
        f"- explained class: Pearson correlation with exact {d['correlation']:.3f}, "
        f"same top patch {d['top1']:.2f}",
        f"- loss certificate (2,048 paired Shapley-kernel coalitions per image): "
        f"L(θ) = {c['loss']:.5f}, L* = {c['optimal_loss']:.5f}, bound "
        f"sqrt(2 H_15 (L − L*)) = {c['bound']:.4f} ≥ measured {d['error_all']:.4f}; "
        f"without ground truth (L* ≥ 0) the bound is {loose['bound']:.4f}",
        "",
        "Paper (ImageNette, ViT-Base): ViT Shapley insertion 0.985 / deletion 0.691; "
        "best baselines 0.977 (RISE) / 0.779 (LRP).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
