"""
InstaSHAP: shape functions, Shapley values and a trust audit
=============================================================

:class:`~sklearn_shapley.InstaSHAPGAM` fits an additive model of the *masked* model,
``F(x, S) = b + Σ_T 1[T ⊆ S] g_T(x_T)``, whose components are read out as Shapley
values in one forward pass: ``φ_i = Σ_{T ∋ i} g_T(x_T) / |T|``.

The black box here is a neural network fitted to ``y = x0 + x1·x2 + sin(x3)`` with two
null features ``x4``, ``x5``. We fit an order-2 InstaSHAP GAM (every pair is a
candidate), plot its shape functions and Shapley values, and run the audit, which fits
the first-order GAM beside it and finds that first-order SHAP cannot represent the
``x1·x2`` interaction.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.neural_network import MLPRegressor

from sklearn_shapley import InstaSHAPGAM
from sklearn_shapley.amortized import ShapleyTrustWarning

rng = np.random.default_rng(0)
X = rng.normal(size=(900, 6))
y = X[:, 0] + X[:, 1] * X[:, 2] + np.sin(X[:, 3]) + 0.1 * rng.normal(size=len(X))
X_train, X_test, y_train, y_test = X[:600], X[600:], y[:600], y[600:]

# %%
# Fit the model and the explainer in one go: an unfitted estimator is cloned and
# fitted on ``(X, y)``; the explainer is then trained on the baseline game of it.
gam = InstaSHAPGAM(
    MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=1000, random_state=0),
    max_order=2,
    value_function="baseline",
    n_coalitions=16,
    batch_size=512,
    max_epochs=40,
    random_state=0,
).fit(X_train, y_train)
print(f"{len(gam.components_)} components; held-out masked R²: {gam.score(X_test):.3f}")

# %%
# The audit: fidelity of the GAM of each order to the black box, and a verdict.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ShapleyTrustWarning)
    audit = gam.audit(X_test, y_test)
print(audit)
print("warned:", [type(w.message).__name__ for w in caught])

# %%
# Shape functions of the main effects, the strongest interaction, the Shapley values
# and the audit in one figure.
shapes = gam.shape_functions(n_points=40)
importance = gam.component_values(X_test).var(axis=0)
pairs = [c for c, T in enumerate(gam.components_) if len(T) == 2]
top_pair = max(pairs, key=lambda c: importance[c])
explanation = gam.explain(X_test)

fig, axes = plt.subplots(2, 4, figsize=(15, 7), constrained_layout=True)
for ax, c in zip(axes[0], range(4)):
    shape = shapes[c]
    ax.plot(shape["grid"][0], shape["values"], color="C0")
    ax.set(title=f"g({shape['names'][0]})", xlabel=shape["names"][0])
axes[0, 0].set_ylabel("component value")

shape = shapes[top_pair]
mesh = axes[1, 0].pcolormesh(*shape["grid"], shape["values"].T, cmap="RdBu_r")
fig.colorbar(mesh, ax=axes[1, 0])
axes[1, 0].set(
    title=f"g({', '.join(shape['names'])})",
    xlabel=shape["names"][0],
    ylabel=shape["names"][1],
)

mean_abs = np.abs(explanation.values).mean(axis=0)
axes[1, 1].barh(explanation.feature_names, mean_abs, color="C1")
axes[1, 1].invert_yaxis()
axes[1, 1].set(title="mean |Shapley value|")

axes[1, 2].scatter(X_test[:, 1], explanation.values[:, 1], c=X_test[:, 2], s=8)
axes[1, 2].set(title="φ(x1), coloured by x2", xlabel="x1", ylabel="φ")

rows = audit.table
axes[1, 3].bar(
    [row["model"].split(" (")[0] for row in rows],
    [row["fidelity"] for row in rows],
    color=["grey"] + ["C2"] * (len(rows) - 1),
)
axes[1, 3].set(title="audit: fidelity to the black box (R²)", ylim=(0, 1.05))
axes[1, 3].tick_params(axis="x", rotation=20)
fig.suptitle(f"InstaSHAP — {audit.verdict.split(':')[0]}")
plt.show()
