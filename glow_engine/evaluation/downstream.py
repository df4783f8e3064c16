"""Downstream AI utility: can a classifier still be trained on, or applied to, released images?

The paper releases images "for training AI". Two protocols, both with the fixed recipe of
evaluation.cnn (abnormal vs normal, AUC with a patient-bootstrap interval on the val split):

* *real -> privatised* (PriCheXy-Net's protocol with CheXNet): trained once on the real
  training images, applied to the privatised val images. Measures how much of what a model
  trained elsewhere relies on survives the mechanism.
* *privatised -> real*: trained on the training images privatised by the mechanism at the
  budget (what a recipient of such a release can learn), applied to the real val images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from glow_engine.evaluation import cnn
from glow_engine.evaluation.metrics import auc_with_ci

__all__ = ["Classifier", "auc", "scores", "train_classifier"]


class Classifier(cnn.Network):
    """The logit of the image's features: higher = abnormal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.backbone(x))


def train_classifier(pixels: np.ndarray, labels: np.ndarray, seed: int,
                     recipe: cnn.Recipe) -> Classifier:
    """Trained on the images labelled 0 or 1 (others are left out)."""
    known = (labels == 0) | (labels == 1)
    x = cnn.to_input(pixels[known], recipe.input)
    y = torch.from_numpy(labels[known].astype(np.float32))
    if len(torch.unique(y)) < 2:
        raise ValueError("the downstream classifier needs normal and abnormal training images")
    model = cnn.build(lambda: Classifier(recipe.input), seed)

    def loss(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(cnn.train_view(x[idx], gen, recipe)),
                                                  y[idx])

    return cnn.fit(model, recipe, seed, lambda gen: torch.randperm(len(x), generator=gen), loss)


def scores(model: Classifier, pixels: np.ndarray) -> np.ndarray:
    return cnn.apply(model, cnn.to_input(pixels, model.size)).double().numpy()


def auc(model: Classifier, pixels: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray,
        n_boot: int, seed: int) -> dict:
    return auc_with_ci(scores(model, pixels), labels, patient_ids, n_boot, seed).to_dict()
