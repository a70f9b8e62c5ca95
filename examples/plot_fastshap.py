"""
=====================================
FastSHAP next to exact Shapley values
=====================================

FastSHAP trains an explainer network once; afterwards one forward pass explains a row
(with the players' first and last marginal contributions as inputs where the game
computes them cheaply: ``2d + 2`` game evaluations, or a fast form of them).
Here a neural network regressor on the diabetes data (10 features) is explained with
the baseline value function (held-out features set to their means), where exact
Shapley values can still be enumerated (``2^10`` coalitions per row) to check FastSHAP's
estimates.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_shapley import ExactExplainer, FastSHAPExplainer

X, y = load_diabetes(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
model = make_pipeline(
    StandardScaler(),
    MLPRegressor(hidden_layer_sizes=(64,), max_iter=3000, random_state=0),
).fit(X_train, y_train)

# %%
# Train the explainer (a smaller budget and a shorter schedule than the defaults, 10
# million model evaluations and 100 epochs, to run in seconds), then explain the test
# rows in one pass and compare with exact enumeration.
start = time.perf_counter()
fastshap = FastSHAPExplainer(
    FrozenEstimator(model),
    value_function="baseline",
    max_evaluations=2_000_000,
    max_epochs=80,
    random_state=0,
).fit(X_train)
print(f"training: {time.perf_counter() - start:.1f} s")

start = time.perf_counter()
estimate = fastshap.explain(X_test)
print(f"FastSHAP, {len(X_test)} rows: {1000 * (time.perf_counter() - start):.1f} ms")
start = time.perf_counter()
exact = ExactExplainer(FrozenEstimator(model)).fit(X_train).explain(X_test)
print(f"exact enumeration: {1000 * (time.perf_counter() - start):.1f} ms")

error = np.linalg.norm(estimate.values - exact.values, axis=1).mean()
size = np.linalg.norm(exact.values, axis=1).mean()
print(f"mean L2 error {error:.2f} for attributions of mean L2 norm {size:.2f}")
# Efficiency holds exactly: base value + attributions = the model's prediction.
np.testing.assert_allclose(
    estimate.base_values + estimate.values.sum(axis=1), model.predict(X_test)
)

# %%
# Left: every (row, feature) attribution, FastSHAP against exact. Right: one row.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
lim = np.abs(exact.values).max() * 1.05
left.plot([-lim, lim], [-lim, lim], color="grey", lw=1)
for j, name in enumerate(estimate.feature_names):
    left.scatter(exact.values[:, j], estimate.values[:, j], s=8, label=name)
left.set(xlabel="exact Shapley value", ylabel="FastSHAP", title="All test rows")
left.legend(fontsize=7, ncol=2)

row = 0
positions = np.arange(len(estimate.feature_names))
right.barh(positions - 0.2, exact.values[row], height=0.4, label="exact")
right.barh(positions + 0.2, estimate.values[row], height=0.4, label="FastSHAP")
right.set_yticks(positions, estimate.feature_names)
right.set(xlabel="attribution", title=f"Test row {row}")
right.legend()
fig.tight_layout()
plt.show()
