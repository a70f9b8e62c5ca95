"""
=============================================
ViT Shapley: explaining a vision transformer
=============================================

A small vision transformer classifies scikit-learn's 8 x 8 handwritten digits from 16
patches of 2 x 2 pixels. ViT Shapley explains it in three steps, all on the CPU:

1. **the classifier**, a :class:`~sklearn_shapley.ViTClassifier` trained from scratch;
2. **the surrogate**, a copy of it fine-tuned so that it still predicts well when
   patches are held out (attention masking: the held-out patches' keys get logit −∞
   in every layer), ``min KL(f(x) ‖ g(x_S))`` over random patch subsets;
3. **the explainer**, a vision transformer initialised from the surrogate with an
   extra attention block and a three-layer head, trained on the Shapley loss so that
   one forward pass returns the Shapley values of every patch for every class.

The explanations are compared with Integrated Gradients and attention rollout, and
scored by insertion / deletion AUC (the class probability as the most important
patches are added to an empty image / removed from the full one).
"""

# %%
# Train the classifier
# --------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from sklearn_shapley import ViTClassifier, ViTShapleyExplainer
from sklearn_shapley.plotting import image_heatmap
from sklearn_shapley.vision import metrics as im

torch.set_num_threads(1)  # tiny networks: one thread is as fast, and polite
X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 1, 8, 8).astype(np.float32)  # images (n, channels, height, width)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
clf = ViTClassifier(
    patch_size=2,
    embed_dim=64,
    depth=2,
    n_heads=4,
    learning_rate=2e-3,
    batch_size=32,
    max_epochs=12,
    random_state=0,
).fit(X_train, y_train)
print(f"test accuracy of the ViT: {clf.score(X_test, y_test):.3f}")

# %%
# Fit the surrogate and the explainer
# -----------------------------------
# ``FrozenEstimator`` keeps the classifier as it is; the explainer trains its own
# surrogate (``explainer.surrogate_``) and explainer network (``explainer.module_``).
explainer = ViTShapleyExplainer(
    FrozenEstimator(clf),
    n_coalitions=16,
    max_epochs=6,
    surrogate_params={"max_epochs": 6},
    random_state=0,
).fit(X_train)

explanation = explainer.explain(X_test[:100])  # values (100, 16 patches, 10 classes)
predicted = clf.predict(X_test[:100])
phi = explanation.values[np.arange(100), :, predicted]  # (100, 16): predicted class
print(f"explanations: {explanation.values.shape}")
print(
    "efficiency, max |base + Σφ − v(full)|:",
    np.abs(
        explanation.base_values
        + explanation.values.sum(axis=1)
        - explainer.explained_output(X_test[:100])
    ).max(),
)

# %%
# Heatmaps
# --------
# ``explainer.heatmap`` maps patch attributions back to pixels. Red patches raise the
# probability of the predicted class, blue ones lower it (attention rollout is not
# signed and not class specific).
integrated = im.integrated_gradients(clf, X_test[:100], predicted)
rollout = im.attention_rollout(clf, X_test[:100])
columns = {
    "ViT Shapley": explainer.heatmap(phi),
    "Integrated Gradients": explainer.heatmap(integrated),
    "Attention rollout": explainer.heatmap(rollout),
}
fig, axes = plt.subplots(6, 4, figsize=(8, 12))
for row in range(6):
    image = X_test[row, 0]
    axes[row, 0].imshow(image, cmap="gray")
    axes[row, 0].set_title(f"digit {y_test[row]} (pred. {predicted[row]})", fontsize=8)
    axes[row, 0].set_axis_off()
    for col, (name, maps) in enumerate(columns.items(), start=1):
        image_heatmap(maps[row], ax=axes[row, col], title=name)
fig.tight_layout()
plt.show()

# %%
# Insertion and deletion
# ----------------------
# Patches are removed through the surrogate, the closest approximation to the
# model's prediction without them.
game = explainer.surrogate_
rand = im.random_attributions(100, 16, random_state=0)
methods = {
    "ViT Shapley": phi,
    "Integrated Gradients": integrated,
    "Attention rollout": rollout,
    "Random": rand,
}
fig, (ax_in, ax_del) = plt.subplots(1, 2, figsize=(9, 3.5))
fraction = np.linspace(0, 1, 17)
print("method                insertion (higher better)  deletion (lower better)")
for name, values in methods.items():
    insertion, deletion, curve_in, curve_del = im.insertion_deletion_auc(
        game, X_test[:100], values, predicted, return_curves=True
    )
    print(f"{name:22s}{insertion.mean():>10.3f}{deletion.mean():>26.3f}")
    ax_in.plot(
        fraction, curve_in.mean(axis=0), label=f"{name} ({insertion.mean():.3f})"
    )
    ax_del.plot(
        fraction, curve_del.mean(axis=0), label=f"{name} ({deletion.mean():.3f})"
    )
for ax, title in [(ax_in, "insertion"), (ax_del, "deletion")]:
    ax.set_xlabel("fraction of patches (most important first)")
    ax.set_ylabel("probability of the predicted class")
    ax.set_title(f"{title} (AUC in the legend)")
    ax.legend(fontsize="small")
fig.tight_layout()
plt.show()
