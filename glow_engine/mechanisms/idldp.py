"""Image-domain LDP baseline (docs/method.md section 5): Laplace noise on [0, 1] pixels.

The box is [0, 1] for every pixel and the sensitivity is 1 = the box width, so it is the
clip-box core with ratio 1 and the identity as representation.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch

from glow_engine.budget import format_number, total_epsilon
from glow_engine.mechanisms.box import BoxMechanism


class IDLDP(BoxMechanism):
    name = "idldp"

    def __init__(self, resolution: int) -> None:
        self.label = self.spec.label({})
        self.resolution = int(resolution)
        n = self.resolution**2
        self.lo, self.width = np.zeros(n), np.ones(n)
        self.ratio = Fraction(1)
        self.device = torch.device("cpu")

    @classmethod
    def from_options(cls, model: Any, **options: Any) -> IDLDP:
        resolution = options.get("resolution") or (model.resolution if model else None)
        if resolution is None:
            raise ValueError("ID-LDP needs a resolution (or a model to take it from)")
        mech = cls(resolution)
        mech.model = model
        return mech

    def to_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.flatten(1)

    def to_image(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.reshape(-1, self.resolution, self.resolution)

    def quantise(self, image: torch.Tensor) -> torch.Tensor:
        return torch.round(image.clamp(0, 1) * 255) / 255

    def describe(self, e_px: float, clip: bool = True) -> str:
        total = format_number(total_epsilon(e_px, self.resolution))
        clipping = "" if clip else " without clip (no privacy guarantee)"
        return f"{self.title} e_px={format_number(e_px)} (total epsilon {total}){clipping}"
