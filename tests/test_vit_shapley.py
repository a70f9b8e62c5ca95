"""ViT Shapley: attention masking, image games, the image explainers, metrics, baselines.

Every network here is tiny and trained for a few epochs on the CPU; the full-size run
on scikit-learn's digits lives in ``examples/plot_vit_shapley_digits.py`` and
``benchmarks/bench_vit_shapley.py``.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.nn import functional as F

from sklearn_shapley import (
    UNetShapleyExplainer,
    ViTClassifier,
    ViTShapleyExplainer,
    exact_shapley,
)
from sklearn_shapley.games import BaselineGame, Game
from sklearn_shapley.vision import metrics as im
from sklearn_shapley.vision._image import (
    ImageSurrogateGame,
    MaskedImageModel,
    PatchGrid,
    check_images,
    patches_to_heatmap,
)
from sklearn_shapley.vision._vit import VisionTransformer
from sklearn_shapley.vision._vit_shapley import (
    ImageModelFunction,
    ViTShapleyModule,
    fit_image_surrogate,
)

TINY_VIT = {"embed_dim": 16, "depth": 1, "n_heads": 2}
SMALL_VIT = {"embed_dim": 32, "depth": 1, "n_heads": 2}


# -- data and models ---------------------------------------------------------------------
def blob_images(n, seed):
    """8 x 8 images with noise and one bright 2 x 2 blob on the 4 x 4 patch grid.

    The class is the quadrant of the blob; the blob lies on one of the quadrant's four
    patches at random. Returns images ``(n, 1, 8, 8)``, classes and the blob's patch.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, n)
    rows = 2 * (y // 2) + rng.integers(0, 2, n)
    cols = 2 * (y % 2) + rng.integers(0, 2, n)
    for i in range(n):
        X[i, 0, 2 * rows[i] : 2 * rows[i] + 2, 2 * cols[i] : 2 * cols[i] + 2] += 3.0
    return X, y, rows * 4 + cols


class BlobDetector(nn.Module):
    """Logits of the four quadrants: 4 x the brightest 2 x 2 patch mean in each."""

    def forward(self, x):
        patches = F.avg_pool2d(x.reshape(len(x), 1, 8, 8), 2)
        quadrants = patches.reshape(len(x), 2, 2, 2, 2).amax(dim=(2, 4))
        return 4 * quadrants.reshape(len(x), 4)


def blob_game(X):
    """The blob detector's game: held-out patches filled with the mean image."""
    grid = PatchGrid((1, 8, 8), 2)
    return BaselineGame(
        ImageModelFunction(BlobDetector(), grid),
        X.reshape(len(X), -1).mean(axis=0),
        players=grid.pixel_groups(),
    )


class AdditiveGame(Game):
    """``v(S) = Σ_{i ∈ S} w_i`` (one output); its Shapley values are ``w``."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.n_players = self.weights.shape[1]
        self.n_outputs = 1

    def __call__(self, X, masks):
        masks = np.asarray(masks, dtype=np.float64)
        if masks.ndim == 2:
            masks = np.broadcast_to(masks, (len(X),) + masks.shape)
        return np.einsum("nmd,nd->nm", masks, self.weights[: len(X)])[:, :, None]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks: one thread is faster, much faster on a shared machine."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.reshape(-1, 1, 8, 8)[:300].astype(np.float32), y[:300]


@pytest.fixture(scope="module")
def digits_explainer(digits):
    """A tiny ViT classifier, its surrogate and a ViT Shapley explainer on digits."""
    X, y = digits
    clf = ViTClassifier(
        patch_size=2,
        batch_size=16,
        learning_rate=3e-3,
        max_epochs=6,
        random_state=0,
        **SMALL_VIT,
    ).fit(X[:250], y[:250])
    explainer = ViTShapleyExplainer(
        FrozenEstimator(clf),
        n_coalitions=8,
        max_epochs=2,
        surrogate_params={"max_epochs": 3},
        random_state=0,
    ).fit(X[:250])
    return clf, explainer


@pytest.fixture(scope="module")
def blob_data():
    X, _, _ = blob_images(300, 0)
    X_test, y_test, blob_test = blob_images(60, 1)
    return X, X_test, y_test, blob_test


# -- the vision transformer --------------------------------------------------------------
@pytest.mark.parametrize("removal", ["attention", "zeros", "mask_token"])
def test_held_out_patches_do_not_reach_the_prediction(removal):
    torch.manual_seed(0)
    vit = VisionTransformer((1, 8, 8), 2, n_classes=3, removal=removal, **TINY_VIT)
    x = torch.randn(5, 1, 8, 8)
    mask = torch.rand(5, 16) < 0.5
    scrambled = x + 10 * ~vit.grid.pixel_masks(mask)[:, None] * torch.randn_like(x)
    with torch.no_grad():
        torch.testing.assert_close(vit(x, mask), vit(scrambled, mask))
        empty = vit(x, torch.zeros(5, 16, dtype=torch.bool))
    torch.testing.assert_close(empty, empty[:1].expand(5, -1))


def test_attention_masking_equals_running_on_the_kept_patches_only():
    torch.manual_seed(1)
    vit = VisionTransformer((1, 8, 8), 2, n_classes=3, embed_dim=16, depth=2)
    x = torch.randn(1, 1, 8, 8)
    kept = torch.tensor([0, 3, 5, 6, 12])
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, kept] = True
    with torch.no_grad():
        tokens = vit.embed(x)[:, torch.cat([torch.tensor([0]), kept + 1])]
        for block in vit.blocks:
            tokens, _ = block(tokens)
        alone = vit.head(vit.norm(tokens)[:, 0])
        torch.testing.assert_close(vit(x, mask), alone)


def test_attention_weights_ignore_held_out_keys():
    torch.manual_seed(2)
    vit = VisionTransformer((1, 8, 8), 2, n_classes=3, **TINY_VIT)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[:, 4] = False
    with torch.no_grad():
        (attention,) = vit.attention_maps(torch.randn(2, 1, 8, 8), mask)
    assert attention.shape == (2, 2, 17, 17)
    assert torch.all(attention[..., 5] == 0)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 2, 17))


# -- patches, pixels, heatmaps -----------------------------------------------------------
def test_patch_grid_upsamples_masks_and_maps_values_back():
    grid = PatchGrid((1, 8, 8), 2)
    assert grid.grid == (4, 4) and grid.n_patches == 16
    mask = np.zeros(16, dtype=bool)
    mask[5] = True  # grid row 1, column 1
    pixels = grid.pixel_masks(mask)
    assert pixels.shape == (8, 8) and pixels[2:4, 2:4].all() and pixels.sum() == 4
    heat = patches_to_heatmap(np.arange(16.0), (1, 8, 8), 2)
    assert heat[3, 7] == 7 and heat[6, 1] == 12
    values = np.random.default_rng(0).normal(size=(3, 16, 2))
    assert grid.heatmap(values).shape == (3, 8, 8, 2)
    np.testing.assert_allclose(
        grid.pool(grid.heatmap(values[:, :, 0])), 4 * values[:, :, 0]
    )


def test_patches_that_do_not_tile_the_image_are_padded():
    grid = PatchGrid((3, 5, 7), 2)
    assert grid.grid == (3, 4) and grid.padded_shape == (6, 8)
    assert grid.heatmap(np.arange(12.0)).shape == (5, 7)
    assert sum(len(g) for g in grid.pixel_groups()) == 3 * 5 * 7
    assert PatchGrid((1, 9, 9)).grid == (3, 3)  # default: at most 4 x 4 patches
    vit = VisionTransformer((3, 5, 7), 2, n_classes=2, **TINY_VIT)
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 5, 7), torch.ones(2, 12, dtype=bool)).shape == (
            2,
            2,
        )


def test_check_images_accepts_every_layout():
    images = np.random.default_rng(0).random((4, 2, 3, 3))
    for X in (images, torch.as_tensor(images), images.reshape(4, -1)):
        np.testing.assert_array_equal(check_images(X, (2, 3, 3)), images)
    assert check_images(images[:, 0]).shape == (4, 1, 3, 3)
    with pytest.raises(ValueError, match="image_shape"):
        check_images(images.reshape(4, -1))


def test_image_surrogate_game_returns_probabilities():
    torch.manual_seed(0)
    grid = PatchGrid((1, 8, 8), 2)
    game = ImageSurrogateGame(VisionTransformer((1, 8, 8), 2, n_classes=3), grid)
    X = np.random.default_rng(0).random((4, 64))
    masks = np.random.default_rng(1).random((4, 5, 16)) < 0.5
    values = game(X, masks)
    assert values.shape == (4, 5, 3)
    np.testing.assert_allclose(values.sum(axis=2), 1.0)
    np.testing.assert_allclose(
        game(X, masks[0])[1], game(X[1:2], masks[:1])[0], atol=1e-6
    )
    np.testing.assert_allclose(game(X.reshape(4, 1, 8, 8), masks), values)


# -- the blob task: the explainers recover the known answer ------------------------------
@pytest.mark.parametrize(
    "make_explainer",
    [
        lambda: ViTShapleyExplainer(BlobDetector(), vit_params=SMALL_VIT),
        lambda: UNetShapleyExplainer(BlobDetector(), channels=8),
    ],
    ids=["vit", "unet"],
)
def test_explainer_finds_the_blob_that_decides_the_class(make_explainer, blob_data):
    X, X_test, y_test, blob_test = blob_data
    explainer = make_explainer().set_params(
        value_function="model",
        patch_size=2,
        n_coalitions=8,
        batch_size=8,
        learning_rate=2e-3,
        max_epochs=5,
        random_state=0,
    )
    explainer.fit(X)
    phi = explainer.transform(X_test)
    assert phi.shape == (60, 16)
    assert np.mean(phi.argmax(axis=1) == blob_test) >= 0.9
    exp = explainer.explain(X_test[:8])
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), explainer.explained_output(X_test[:8])
    )
    rows, target = np.arange(8), y_test[:8]
    truth = exact_shapley(explainer.game_, X_test[:8].reshape(8, -1)).values
    truth, estimate = truth[rows, :, target], exp.values[rows, :, target]
    error = np.linalg.norm(estimate - truth, axis=1)
    assert np.mean(error) < 0.5 * np.mean(np.linalg.norm(truth, axis=1))
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(estimate, truth)]
    assert np.mean(correlation) > 0.85


def test_insertion_and_deletion_reward_the_right_patch_over_random(blob_data):
    _, X_test, y_test, blob_test = blob_data
    game = blob_game(X_test)
    oracle = np.eye(16)[blob_test]  # the blob's patch first
    insertion, deletion = im.insertion_deletion_auc(game, X_test, oracle, y_test)
    rand = im.random_attributions(60, 16, random_state=0)
    insertion_rand, deletion_rand = im.insertion_deletion_auc(
        game, X_test, rand, y_test
    )
    assert insertion.mean() > insertion_rand.mean() + 0.2
    assert deletion.mean() < deletion_rand.mean() - 0.2
    assert np.nanmean(im.faithfulness(game, X_test, oracle, y_test)) > 0.9
    loo = im.leave_one_out(game, X_test, y_test)
    assert np.mean(loo.argmax(axis=1) == blob_test) >= 0.9


# -- the ViT pipeline: classifier, surrogate, explainer ----------------------------------
def test_vit_shapley_on_digits_shapes_efficiency_and_inputs(digits, digits_explainer):
    X, _ = digits
    clf, explainer = digits_explainer
    X_test = X[250:]
    assert isinstance(explainer.surrogate_, ImageSurrogateGame)
    assert isinstance(explainer.module_, ViTShapleyModule)
    assert explainer.n_patches_ == 16 and explainer.image_shape_ == (1, 8, 8)
    phi = explainer.transform(X_test)
    assert phi.shape == (50, 16)
    exp = explainer.explain(X_test)
    assert exp.values.shape == (50, 16, 10) and exp.output_names == [
        str(c) for c in range(10)
    ]
    np.testing.assert_allclose(
        exp.base_values + exp.values.sum(axis=1), explainer.explained_output(X_test)
    )
    np.testing.assert_allclose(explainer.transform(torch.as_tensor(X_test)), phi)
    np.testing.assert_allclose(explainer.transform(X_test[:, 0]), phi)
    np.testing.assert_allclose(explainer.transform(X_test.reshape(50, -1)), phi)
    assert explainer.heatmap(phi).shape == (50, 8, 8)
    assert explainer.heatmap(exp).shape == (50, 8, 8, 10)
    assert list(explainer.get_feature_names_out())[:2] == ["patch_0_0", "patch_0_1"]
    assert np.isfinite(explainer.score(X_test))
    with pytest.raises(ValueError, match="shape"):
        explainer.transform(np.zeros((2, 1, 4, 16)))


def test_surrogate_predicts_masked_images_better_than_the_classifier(
    digits, digits_explainer
):
    X, _ = digits
    clf, explainer = digits_explainer
    X_test = X[250:]
    masks = np.random.default_rng(0).random((50, 16)) < 0.5
    target = clf.predict_proba(X_test)
    masked_classifier = clf.predict_proba(X_test, mask=masks)
    masked_surrogate = explainer.surrogate_(X_test, masks[:, None])[:, 0]

    def kl(q):
        return np.mean(np.sum(target * np.log(target / np.clip(q, 1e-12, None)), 1))

    assert kl(masked_surrogate) < kl(masked_classifier)


def test_vit_shapley_is_reproducible(digits, digits_explainer):
    X, _ = digits
    clf, explainer = digits_explainer
    again = ViTShapleyExplainer(
        FrozenEstimator(clf),
        n_coalitions=8,
        max_epochs=2,
        surrogate_params={"max_epochs": 3},
        random_state=0,
    ).fit(X[:250])
    np.testing.assert_array_equal(
        again.transform(X[250:]), explainer.transform(X[250:])
    )


def test_unfitted_vit_classifier_is_fitted_from_images(digits):
    X, y = digits
    explainer = ViTShapleyExplainer(
        ViTClassifier(max_epochs=1, random_state=0, **TINY_VIT),
        patch_size=4,
        max_epochs=1,
        n_coalitions=4,
        surrogate_params={"max_epochs": 1},
        random_state=0,
    ).fit(X[:80], y[:80])
    assert explainer.estimator_.module_.patch_size == (4, 4)
    assert explainer.transform(X[80:83]).shape == (3, 4)


def test_classifier_trained_with_masking_is_its_own_value_function(digits):
    X, y = digits
    clf = ViTClassifier(
        patch_size=2, random_masking=1.0, max_epochs=2, random_state=0, **TINY_VIT
    ).fit(X[:200], y[:200])
    explainer = ViTShapleyExplainer(
        FrozenEstimator(clf),
        value_function="model",
        init="model",
        n_coalitions=4,
        max_epochs=1,
        random_state=0,
    ).fit(X[:200])
    assert not hasattr(explainer, "surrogate_")
    masks = np.random.default_rng(0).random((5, 16)) < 0.5
    np.testing.assert_allclose(
        explainer.game_(X[200:205], masks[:, None])[:, 0],
        clf.predict_proba(X[200:205], mask=masks),
        atol=1e-6,
    )


@pytest.mark.parametrize("removal", ["zeros", "mask_token"])
def test_surrogate_removal_options(removal, digits):
    X, y = digits
    clf = ViTClassifier(patch_size=2, max_epochs=1, random_state=0, **TINY_VIT)
    clf.fit(X[:100], y[:100])
    game = fit_image_surrogate(
        clf, X[:100], PatchGrid((1, 8, 8), 2), removal=removal, max_epochs=1
    )
    assert game.module.removal == removal and clf.module_.removal == "attention"
    assert game(X[:3], np.ones((2, 16), dtype=bool)).shape == (3, 2, 10)


def test_surrogates_of_cnns_and_black_boxes(digits):
    X, y = digits
    grid = PatchGrid((1, 8, 8), 2)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10))
    game = fit_image_surrogate(cnn, X[:60], grid, max_epochs=1, random_state=0)
    assert isinstance(game.module, MaskedImageModel)
    assert game.module.outputs == "logits"
    with_softmax = nn.Sequential(cnn, nn.Softmax(dim=1))
    game = fit_image_surrogate(with_softmax, X[:60], grid, max_epochs=1)
    assert game.module.outputs == "probabilities"
    flat = X[:100].reshape(100, -1)
    logistic = LogisticRegression(max_iter=200).fit(flat, y[:100])
    game = fit_image_surrogate(
        logistic, X[:60], grid, max_epochs=1, vit_params=TINY_VIT, random_state=0
    )
    assert isinstance(game.module, VisionTransformer)
    assert game.output_names == [str(c) for c in logistic.classes_]


def test_flat_rows_are_images_with_image_shape_else_one_player_per_column(digits):
    X, y = digits
    flat = X[:120].reshape(120, -1)
    model = FrozenEstimator(LogisticRegression(max_iter=300).fit(flat, y[:120]))
    params = {"value_function": "model", "max_epochs": 1, "n_coalitions": 4}
    params["vit_params"] = TINY_VIT
    explainer = ViTShapleyExplainer(model, image_shape=(1, 8, 8), **params).fit(flat)
    assert explainer.transform(flat[:2]).shape == (2, 16)
    explainer = ViTShapleyExplainer(model, **params).fit(flat)
    assert explainer.transform(flat[:2]).shape == (2, 64)
    assert explainer.get_feature_names_out()[3] == "x3"


def test_invalid_parameters_are_reported(digits):
    X, _ = digits
    for params, match in [
        ({"removal": "blur"}, "removal"),
        ({"init": "imagenet"}, "init"),
        ({"value_function": "marginal"}, "value_function"),
    ]:
        explainer = ViTShapleyExplainer(BlobDetector(), patch_size=2, **params)
        with pytest.raises(ValueError, match=match):
            explainer.fit(X[:20])


# -- metrics -----------------------------------------------------------------------------
def test_insertion_deletion_of_an_additive_game():
    weights = np.array([[3.0, -1.0, 0.5, 2.0]])
    game = AdditiveGame(weights)
    X = np.zeros((1, 4))
    insertion, deletion, curve_in, curve_del = im.insertion_deletion_auc(
        game, X, weights, target=0, return_curves=True
    )
    np.testing.assert_allclose(curve_in[0], [0, 3, 5, 5.5, 4.5])
    np.testing.assert_allclose(curve_del[0], [4.5, 1.5, -0.5, -1, 0])
    np.testing.assert_allclose(insertion, np.trapezoid(curve_in[0], dx=0.25))
    np.testing.assert_allclose(deletion, np.trapezoid(curve_del[0], dx=0.25))
    assert im.faithfulness(game, X, weights, target=0)[0] == pytest.approx(1.0)
    sens = im.sensitivity_n(game, X, weights, [1, 2, 3], target=0)
    np.testing.assert_allclose(sens, 1.0)


def test_loss_bound_certifies_the_distance_to_exact_shapley(blob_data):
    X, X_test, _, _ = blob_data
    game = blob_game(X)
    truth = exact_shapley(game, X_test[:3].reshape(3, -1)).values
    noise = np.random.default_rng(0).normal(scale=0.05, size=truth.shape)
    estimate = truth + noise - noise.mean(axis=1, keepdims=True)  # still efficient
    certificate = im.shapley_loss_certificate(
        game, X_test[:3], estimate, exact_values=truth, n_coalitions=4096
    )
    error = np.mean(np.linalg.norm(estimate - truth, axis=1))
    assert certificate["optimal_loss"] < certificate["loss"]
    assert error <= certificate["bound"] * 1.05
    loose = im.shapley_loss_certificate(game, X_test[:3], estimate)
    assert loose["bound"] >= certificate["bound"]
    assert im.harmonic_number(3) == pytest.approx(11 / 6)
    assert im.shapley_error_bound(0.5, 4, 0.25) == pytest.approx(np.sqrt(11 / 12))


# -- baselines ---------------------------------------------------------------------------
def test_gradient_baselines(digits_explainer, digits):
    X, _ = digits
    clf, _ = digits_explainer
    X_test = X[250:260]
    target = clf.predict_proba(X_test).argmax(axis=1)
    for method in (im.vanilla_gradients, im.smoothgrad):
        values = method(clf, X_test, target)
        assert values.shape == (10, 16) and np.all(values >= 0)
    ig = im.integrated_gradients(clf, X_test, target, n_steps=64)
    probs = clf.predict_proba(X_test)[np.arange(10), target]
    reference = clf.predict_proba(np.zeros_like(X_test))[np.arange(10), target]
    np.testing.assert_allclose(ig.sum(axis=1), probs - reference, atol=0.03)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3))
    assert im.vanilla_gradients(cnn, X_test, patch_size=4).shape == (10, 4)


def test_attention_baselines(digits_explainer, digits):
    X, _ = digits
    clf, _ = digits_explainer
    rollout = im.attention_rollout(clf, X[250:260])
    last = im.attention_last(FrozenEstimator(clf), X[250:260])
    for values in (rollout, last):
        assert values.shape == (10, 16)
        assert np.all(values >= 0) and np.all(values.sum(axis=1) <= 1 + 1e-9)
    with pytest.raises(TypeError, match="VisionTransformer"):
        im.attention_rollout(BlobDetector(), X[:2])


def test_leave_one_out_and_random(blob_data):
    _, X_test, y_test, _ = blob_data
    weights = np.random.default_rng(0).normal(size=(5, 6))
    game = AdditiveGame(weights)
    np.testing.assert_allclose(im.leave_one_out(game, np.zeros((5, 1)), 0), weights)
    assert im.leave_one_out(game, np.zeros((5, 1))).shape == (5, 6, 1)
    np.testing.assert_array_equal(
        im.random_attributions(3, 4, random_state=1),
        im.random_attributions(3, 4, random_state=1),
    )
