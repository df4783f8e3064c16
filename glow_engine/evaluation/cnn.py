"""The small convolutional network behind the learned measures (downstream classifier and
learned re-identification attacker), and its fixed training recipe.

Fixed on purpose: the evaluation compares privatised sets, so every set gets the same network,
input size, optimiser, epochs and seed; nothing is tuned on the validation images. Sized for a
CPU: the images are area-averaged to 64 x 64 (Recipe.input; the findings and the anatomy that
identify a patient are coarse), four conv blocks, global average pooling. Deterministic for a given
seed and thread count (every random choice comes from one torch.Generator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glow_engine.data import augment

__all__ = ["Backbone", "Network", "Recipe", "apply", "build", "fit", "to_input", "train_view"]


@dataclass(frozen=True)
class Recipe:
    """How a network is trained (part of the cache fingerprint)."""

    input: int = 64  # side of the network's input images
    epochs: int = 20  # AUC 0.88 after 10, 0.90 after 20 on the NIH training split
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment_strength: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def to_input(pixels: np.ndarray, size: int) -> torch.Tensor:
    """(N, R, R) [0, 1] -> (N, 1, size, size) float32, area-averaged, still in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[:, None]
    return F.adaptive_avg_pool2d(x, size) if x.shape[-1] != size else x


def standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.25


def train_view(x: torch.Tensor, gen: torch.Generator, recipe: Recipe) -> torch.Tensor:
    """A batch as the network sees it in training: augmented (never flipped), standardised."""
    return standardise(augment(x, gen, recipe.augment_strength))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """(B, 1, S, S) standardised -> (B, FEATURES) features (any S the pooling allows)."""

    FEATURES = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(1, 16), nn.MaxPool2d(2), _block(16, 32), nn.MaxPool2d(2),
                                  _block(32, 64), nn.MaxPool2d(2), _block(64, self.FEATURES),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Network(nn.Module):
    """The backbone and one linear logit on its features, for images of side `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.backbone = Backbone()
        self.head = nn.Linear(Backbone.FEATURES, 1)

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)[:, 0]


def build(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A fresh network with initial weights from `seed` (the global torch generator is
    seeded only inside, so nothing else in the process is affected)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def fit(model: nn.Module, recipe: Recipe, seed: int,
        epoch_items: Callable[[torch.Generator], torch.Tensor],
        batch_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> nn.Module:
    """Train `model` for recipe.epochs: each epoch, `epoch_items(gen)` gives the shuffled items
    (image indices, or pairs) and `batch_loss(items, gen)` the loss of a batch of them."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                            weight_decay=recipe.weight_decay)
    model.train()
    for _ in range(recipe.epochs):
        items = epoch_items(gen)
        for start in range(0, len(items), recipe.batch_size):
            batch = items[start:start + recipe.batch_size]
            if len(batch) < 2:  # batch norm needs two
                continue
            loss = batch_loss(batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.inference_mode()
def apply(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
          batch_size: int = 128) -> torch.Tensor:
    """`net` on standardised inputs in batches (evaluation mode, no augmentation)."""
    return torch.cat([net(standardise(x[i:i + batch_size]))
                      for i in range(0, len(x), batch_size)])
