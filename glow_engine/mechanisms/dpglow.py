"""DP-GLOW (docs/method.md section 3): the clip-box Laplace mechanism in a GLOW model's latent.

Box: c_k +- w_k / 2 with w_k = alpha * Delta_k from the model's calibration. Sensitivity
S_k = Delta_k ("paper", as published) or S_k = w_k ("tight": after the first clip two
inputs' latents differ by at most w_k in element k, so this is also epsilon-LDP, with
1/alpha times less noise). "fitted": the box the model file holds for the budget
(fitted_box.py; chosen on training images by box_fitting.py), with S_k = w_k as in tight mode;
alpha plays no part.

Decoding ("estimate"): the released latent as published ("plain"), or the posterior mean of
the original latent given it under the model's N(0, 1) prior, with the box and the noise scale
(mechanisms/posterior.py): computed from the release and public facts only, so the privacy
guarantee and its accounting are the same; preview and release both decode through it. The
posterior mean is used where the noise is small against the box (b_k <= w_k / 40: paper mode
at alpha 0.4 from e_px 100, tight from 40); with more noise the shrunk latent decodes to an
over-smooth picture (lower PSNR, every release flagged too simple on the training split at
e_px 10, docs/evaluation.md), so the released latent is decoded there.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from glow_engine.budget import format_number, total_epsilon
from glow_engine.choices import (
    DEFAULT_ALPHA,
    DPGLOW_ESTIMATES,
    DPGLOW_MODES,
    dpglow_variant,
)
from glow_engine.errors import UserError
from glow_engine.fitted_box import FittedBox
from glow_engine.flow.glow import model_to_pixels, pixels_to_model
from glow_engine.mechanism_specs import spec_of
from glow_engine.mechanisms.box import BoxMechanism
from glow_engine.mechanisms.posterior import posterior_mean
from glow_engine.modelfile import LoadedModel

# The largest noise scale, in box widths (b_k / w_k), at which the posterior mean is decoded.
POSTERIOR_MAX_NOISE = Fraction(1, 40)


class DPGlow(BoxMechanism):
    name = "dpglow"

    def __init__(self, model: LoadedModel, alpha: float = DEFAULT_ALPHA,
                 mode: str = "paper", estimate: str = "plain") -> None:
        """Built directly, the published mechanism; the product's defaults are the
        description's (mechanism_specs), which `from_options` resolves."""
        if model.calibration is None:
            raise UserError("this model has no latent calibration; run `dpglow calibrate` "
                            "on its training images first")
        if mode not in DPGLOW_MODES:
            raise UserError(f"mode must be one of {', '.join(DPGLOW_MODES)}, got {mode!r}")
        if not 0 < alpha <= 1:
            raise UserError(f"alpha must be in (0, 1], got {alpha}")
        if estimate not in DPGLOW_ESTIMATES:
            raise UserError(f"estimate must be one of {', '.join(DPGLOW_ESTIMATES)}, "
                            f"got {estimate!r}")
        self.model, self.alpha = model, float(alpha)
        self.mode = dpglow_variant(mode, estimate)
        self.estimate_rule = estimate
        if mode == "fitted" and model.fitted_box is None:
            raise UserError("this model has no fitted clip box; run `dpglow fit-box` on its "
                            "training images, or choose the paper or tight mode")
        self.model_sha256 = model.sha256
        self.resolution = model.resolution
        self.device = next(model.flow.parameters()).device
        cal = model.calibration
        self.width = cal.width(self.alpha)
        self.lo = cal.centre - self.width / 2
        # S_k / w_k: exact rationals, so the release scale is rounded in the safe direction
        self.ratio = 1 / Fraction(self.alpha) if mode == "paper" else Fraction(1)
        self.label = self.spec.label({"alpha": self.alpha, "mode": mode, "estimate": estimate})

    def fitted_box(self, e_px: float) -> FittedBox | None:
        """The model's box for this budget in fitted mode; None in the published modes."""
        boxes = self.model.fitted_box
        return None if boxes is None or not self.mode.startswith("fitted") \
            else boxes.for_budget(e_px)

    def box_at(self, e_px: float) -> tuple[np.ndarray, np.ndarray]:
        box = self.fitted_box(e_px)
        return (self.lo, self.width) if box is None else (box.lower, box.width)

    @classmethod
    def from_options(cls, model: Any, **options: Any) -> DPGlow:
        if model is None:
            raise UserError("DP-GLOW needs a model")
        return cls(model, **spec_of(cls.name).resolve(options))

    def to_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.flow.encode(pixels_to_model(pixels[:, None]))

    def to_image(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.flow.decode(latent)[:, 0]

    def quantise(self, image: torch.Tensor) -> torch.Tensor:
        return model_to_pixels(image)

    def estimate(self, noisy: torch.Tensor, e_px: float, clip: bool = True) -> torch.Tensor:
        if self.estimate_rule == "plain" or not clip:  # without the clip there is no box
            return noisy
        if math.isfinite(e_px) and self.ratio / Fraction(e_px) > POSTERIOR_MAX_NOISE:
            return noisy
        lo, hi, _ = self._box_tensors(e_px)
        scale = self.scale_vector(e_px) if math.isfinite(e_px) else 0.0
        return posterior_mean(noisy, lo, hi, scale)

    def describe(self, e_px: float, clip: bool = True) -> str:
        budget = (f"e_px={format_number(e_px)} "
                  f"(total epsilon {format_number(total_epsilon(e_px, self.resolution))})")
        clipping = "" if clip else " without clip (no privacy guarantee)"
        box = self.fitted_box(e_px)
        shape = f"alpha={self.alpha:g}" if box is None else box.describe()
        return (f"{self.title} {self.mode} {shape} {budget}{clipping} "
                f"model sha256:{self.model.short_hash}")
