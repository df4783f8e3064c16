"""DP-Pix (Fan, DBSec 2018): Laplace noise on the means of b x b pixel blocks, then upsampled.

The representation is the (R/b)^2 block means of the [0, 1] pixels, each in the box [0, 1].
For local DP any two images are neighbours, so each block mean can change by the full range 1:
sensitivity 1 per block. The image's budget is e_px * R * R, as for every mechanism here
(glow_engine.budget.total_epsilon), split evenly over the (R/b)^2 blocks: e_px * b^2 per
block, i.e. noise of scale 1 / (b^2 * e_px) per block mean. In the clip-box core that is
ratio = S / w = 1 / b^2.

Fan's own neighbourhood (`m`, a comparison setting only) calls two images neighbours when at
most m pixels differ. A block mean then moves by at most m / b^2 in all (255 m / b^2 in 8-bit
units), and Fan's epsilon for the whole image, on our axis e_px * R * R, needs noise of scale
m / (b^2 * e_px * R * R): R * R / m times less than local DP at the same nominal epsilon. It
promises nothing about images that differ in more than m pixels (every real pair of different
patients), so it is never released and never enters the ledger. Note the coincidence that makes
the literature comparable: local-DP DP-Pix at e_px has the noise of Fan's m = 1 at epsilon =
e_px, so PriCheXy-Net's b = 8, m = 1, epsilon = 0.1 is this mechanism at e_px = 0.1.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch

from glow_engine.budget import BudgetError, format_number, total_epsilon
from glow_engine.choices import DEFAULT_BLOCK
from glow_engine.errors import UserError
from glow_engine.mechanism_specs import spec_of
from glow_engine.mechanisms.base import Encoded
from glow_engine.mechanisms.box import BoxMechanism

__all__ = ["DPPix"]


class DPPix(BoxMechanism):
    name = "dppix"

    def __init__(self, resolution: int, block: int = DEFAULT_BLOCK,
                 m: int | None = None) -> None:
        self.resolution, self.block = int(resolution), int(block)
        if self.block < 1 or self.resolution % self.block:
            raise UserError(f"the DP-Pix block size must divide the resolution "
                            f"{self.resolution}, got {block}")
        if m is not None and m < 1:
            raise UserError(f"the m-neighbourhood needs m >= 1, got {m}")
        self.m = m
        self.side = self.resolution // self.block  # blocks per row
        n = self.side**2
        self.lo, self.width = np.zeros(n), np.ones(n)
        b2 = self.block**2
        self.ratio = Fraction(1, b2) if m is None else Fraction(m, b2 * self.resolution**2)
        self.device = torch.device("cpu")
        options = {"block": self.block, "m": m}
        self.mode, self.label = self.spec.mode(options), self.spec.label(options)

    @classmethod
    def from_options(cls, model: Any, **options: Any) -> DPPix:
        resolution = options.get("resolution") or (model.resolution if model else None)
        if resolution is None:
            raise ValueError("DP-Pix needs a resolution (or a model to take it from)")
        mech = cls(resolution, **spec_of(cls.name).resolve(options))
        mech.model = model
        return mech

    def to_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        s, b = self.side, self.block
        return pixels.reshape(-1, s, b, s, b).mean(dim=(2, 4)).flatten(1)

    def to_image(self, latent: torch.Tensor) -> torch.Tensor:
        blocks = latent.reshape(-1, self.side, self.side)
        b = self.block
        return blocks.repeat_interleave(b, dim=1).repeat_interleave(b, dim=2)

    def quantise(self, image: torch.Tensor) -> torch.Tensor:
        return torch.round(image.clamp(0, 1) * 255) / 255

    def perturb_preview(self, enc: Encoded, e_px: float, unit_noise: torch.Tensor, *,
                        clip: bool = True) -> torch.Tensor:
        # callers pass one draw per pixel (B, R*R); the blocks take the first (R/b)^2 of them
        blocks = unit_noise.reshape(enc.batch, -1)[:, :enc.clipped.shape[1]]
        return super().perturb_preview(enc, e_px, blocks, clip=clip)

    def check_budget(self, e_px: float) -> None:
        if self.m is not None:
            raise BudgetError(f"{self.label} is a comparison setting for the evaluation: it "
                              "protects only images that differ in at most "
                              f"{self.m} pixel(s), which is not local DP; it is never released")
        super().check_budget(e_px)

    def perturb_release(self, enc: Encoded, e_px: float, *, clip: bool = True) -> torch.Tensor:
        self.check_budget(e_px)
        return super().perturb_release(enc, e_px, clip=clip)

    def describe(self, e_px: float, clip: bool = True) -> str:
        total = format_number(total_epsilon(e_px, self.resolution))
        relation = "" if self.m is None else \
            f" under the {self.m}-pixel neighbourhood (not local DP)"
        clipping = "" if clip else " without clip (no privacy guarantee)"
        return (f"{self.title} block {self.block} e_px={format_number(e_px)} "
                f"(total epsilon {total}{relation}){clipping}")
