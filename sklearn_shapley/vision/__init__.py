"""Explaining image classifiers: patches as players.

- :class:`PatchGrid`: images cut into patches, the players;
- :class:`VisionTransformer` / :class:`ViTClassifier`: a vision transformer that holds
  patches out by attention masking;
- :func:`fit_image_surrogate` / :class:`ImageSurrogateGame`: a masked copy of a
  classifier fine-tuned to imitate it with patches held out (the value function);
- :class:`ViTShapleyExplainer`, :class:`UNetShapleyExplainer`: amortized patch
  Shapley values (ViT Shapley), trained like FastSHAP;
- :mod:`~sklearn_shapley.vision.metrics`: insertion/deletion, faithfulness, the
  ViT Shapley error certificate, and the baselines to compare against.
"""

from . import metrics  # noqa: F401  (sklearn_shapley.vision.metrics)
from ._image import ImageSurrogateGame, PatchGrid, patches_to_heatmap
from ._vit import VisionTransformer, ViTClassifier
from ._vit_shapley import UNetShapleyExplainer, ViTShapleyExplainer, fit_image_surrogate

__all__ = [
    "ImageSurrogateGame",
    "PatchGrid",
    "UNetShapleyExplainer",
    "ViTClassifier",
    "ViTShapleyExplainer",
    "VisionTransformer",
    "fit_image_surrogate",
    "patches_to_heatmap",
]
