"""
============================================
The plots: bar, beeswarm, waterfall, scatter
============================================

:mod:`sklearn_shapley.plotting` draws shap's plots from an
:class:`~sklearn_shapley.Explanation`, each returning the matplotlib Axes it drew on.
Here a gradient-boosted regressor on the diabetes data is explained exactly by
:class:`~sklearn_shapley.QuadratureTreeExplainer` (path-dependent TreeSHAP), and its
explanation drawn four ways.
"""

import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator

from sklearn_shapley import QuadratureTreeExplainer, plotting

X, y = load_diabetes(return_X_y=True, as_frame=True)
model = HistGradientBoostingRegressor(max_iter=100, random_state=0).fit(X, y)
explanation = QuadratureTreeExplainer(FrozenEstimator(model)).fit(X).explain(X)
print(explanation.values.shape, explanation.feature_names)

# %%
# Bar: global importance
# ----------------------
# The mean absolute φ of each feature over the rows, the largest at the top.
plotting.bar(explanation)
plt.show()

# %%
# Beeswarm: every row
# -------------------
# One dot per row and feature at its φ, coloured by the feature's value (blue low, red
# high): a high ``s5`` or ``bmi`` raises the predicted disease progression.
plotting.beeswarm(explanation)
plt.show()

# %%
# Waterfall: one row
# ------------------
# From the base value E[f(X)] at the bottom, each feature's φ moves the output to the
# row's prediction f(x) at the top.
plotting.waterfall(explanation[0])
plt.tight_layout()  # room for the "value = name" labels
plt.show()

# %%
# Scatter: dependence
# -------------------
# One feature's value against its φ, coloured by the feature it interacts with most
# (``color="auto"``).
plotting.scatter(explanation[:, "bmi"], color=explanation)
plt.tight_layout()
plt.show()
