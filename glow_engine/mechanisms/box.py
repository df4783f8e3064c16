"""The clip-box Laplace core shared by DP-GLOW and ID-LDP (docs/method.md sections 3 and 5).

Each element k of a representation (a flow latent, or pixels) has a box [lo_k, lo_k + w_k].
Privatising clips into the box, adds Laplace noise of scale b_k = S_k / e_px and clips again.
In every mechanism here S_k = ratio * w_k with one constant `ratio` (DP-GLOW tight: 1;
paper: 1/alpha; ID-LDP: 1), so in units of the box width all elements share one scale.

Release path: after the clip each element is snapped to a grid of 2^GRID_BITS steps on its
box, i.e. an integer in [0, 2^g]. Any two inputs differ by at most 2^g steps per element, so
discrete Laplace noise of scale 2^g * ratio / e_px steps (the same for every element) gives
e_px / ratio <= e_px per element and e_px * N in all. The noise scale is rounded up to a
rational t/s (noise.rational_scale), which only lowers the privacy loss. Clipping the noisy
integer and mapping back to the box are post-processing.

GRID_BITS = 20: at e_px = 1000 (the paper's largest finite value) the noise spans about 1,000
grid steps per unit scale, at e_px = 10,000 about 100, so the grid is far finer than the noise
and the picture is the continuous mechanism's to within its own 8-bit quantisation.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from fractions import Fraction

import numpy as np
import torch

from glow_engine.budget import BudgetError, check_e_px, out_of_range
from glow_engine.mechanisms.base import Encoded, Mechanism
from glow_engine.mechanisms.noise import MAX_SCALE, MIN_SCALE, discrete_laplace, rational_scale

GRID_BITS = 20
GRID_STEPS = 1 << GRID_BITS


class NonFiniteOutputError(BudgetError):
    """Decoding gave NaN or inf: the model is broken; nothing may be written."""


def release_scale(e_px: float, ratio: Fraction, grid_bits: int = GRID_BITS) -> tuple[int, int]:
    """Discrete Laplace scale (t, s), t/s >= 2^g * ratio / e_px grid steps; BudgetError for
    a finite e_px whose scale the exact sampler cannot represent."""
    steps = Fraction(1 << grid_bits) * ratio
    try:
        return rational_scale(steps / Fraction(e_px))
    except ValueError:
        low, high = float(steps / MAX_SCALE), float(steps / MIN_SCALE)
        raise BudgetError(out_of_range(e_px, low, high, "its noise scale is outside what the "
                                       "exact sampler represents")) from None


def to_grid(z: np.ndarray, lo: np.ndarray, width: np.ndarray,
            grid_bits: int = GRID_BITS) -> np.ndarray:
    """Clip into the box and snap to its integer grid [0, 2^g] (int64)."""
    if not np.isfinite(z).all():
        raise ValueError("non-finite values reached the release grid")
    u = np.clip((z - lo) / np.where(width > 0, width, 1.0), 0.0, 1.0)
    return np.rint(u * (1 << grid_bits)).astype(np.int64)


def from_grid(k: np.ndarray, lo: np.ndarray, width: np.ndarray,
              grid_bits: int = GRID_BITS) -> np.ndarray:
    return lo + k * (width / (1 << grid_bits))  # zero width: the box's single point


def release_grid(k: np.ndarray, e_px: float, ratio: Fraction,
                 grid_bits: int = GRID_BITS) -> np.ndarray:
    """The released integers: clip(k + discrete Laplace, 0, 2^g), noise from os.urandom."""
    t, s = release_scale(e_px, ratio, grid_bits)
    noise = discrete_laplace(k.size, t, s).reshape(k.shape)
    return np.clip(k + noise, 0, 1 << grid_bits)


class BoxMechanism(Mechanism):
    """A mechanism that privatises a representation with a per-element clip box.

    Subclasses give the box (`lo`, `width`: float64 numpy (N,), or `box_at` where the box
    depends on the budget), `ratio` = S_k / w_k, the representation (`to_latent`) and its
    inverse (`to_pixels`); everything random is here.
    """

    lo: np.ndarray
    width: np.ndarray
    ratio: Fraction
    device: torch.device

    def box_at(self, e_px: float) -> tuple[np.ndarray, np.ndarray]:
        """(lo, width) of the box used at this budget: one box for every budget here; a
        subclass may choose one per budget (the budget is public, so the box may be too)."""
        return self.lo, self.width

    def _box_tensors(self, e_px: float = math.inf
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lo, hi, width) as float32 on the device, made once per box (the preview runs per
        frame)."""
        lo, width = self.box_at(e_px)
        cache = self.__dict__.setdefault("_box_cache", {})
        if id(lo) not in cache:
            cache[id(lo)] = (lo, *(torch.as_tensor(a, dtype=torch.float32, device=self.device)
                                   for a in (lo, lo + width, width)))
        return cache[id(lo)][1:]

    @abstractmethod
    def to_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, R, R) [0, 1] on self.device -> (B, N) representation (may be non-finite)."""

    @abstractmethod
    def to_image(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, R, R) in the representation's own image scale, not yet quantised."""

    @abstractmethod
    def quantise(self, image: torch.Tensor) -> torch.Tensor:
        """to_image's output -> [0, 1] quantised to 8 bits (post-processing)."""

    # ----------------------------------------------------------------- deterministic part

    def encode(self, pixels: np.ndarray) -> Encoded:
        arr = np.asarray(pixels, dtype=np.float32)
        batched = arr.ndim == 3
        r = self.resolution
        if arr.shape[-2:] != (r, r) or arr.ndim not in (2, 3):
            raise ValueError(f"expected ({r}, {r}) or (B, {r}, {r}) pixels, got {arr.shape}")
        x = torch.from_numpy(arr.reshape(-1, r, r)).to(self.device)
        with torch.inference_mode():
            z = self.to_latent(x.clamp(0, 1))
            lo, hi, _ = self._box_tensors()
            bad = ~torch.isfinite(z)
            raw = torch.where(bad, ((lo + hi) / 2).expand_as(z), z)
            clipped = torch.minimum(torch.maximum(raw, lo), hi)
        return Encoded(clipped, raw, int(bad.sum()), batched)

    def clipped(self, enc: Encoded, e_px: float) -> torch.Tensor:
        """The private input at this budget: the encoding inside the budget's box."""
        lo, hi, _ = self._box_tensors(e_px)
        return torch.minimum(torch.maximum(enc.raw, lo), hi)

    # ----------------------------------------------------------------- noisy latents

    def check_budget(self, e_px: float) -> None:
        if not math.isinf(check_e_px(e_px)):
            release_scale(e_px, self.ratio)

    def scale_vector(self, e_px: float) -> torch.Tensor:
        """b_k = S_k / e_px per element (zeros at e_px = inf)."""
        _, _, width = self._box_tensors(e_px)
        return width * float(self.ratio) / check_e_px(e_px)

    def perturb_preview(self, enc: Encoded, e_px: float, unit_noise: torch.Tensor, *,
                        clip: bool = True) -> torch.Tensor:
        """The preview's noisy latent: base + unit_noise * b_k, clipped to the box if clip."""
        base = self.clipped(enc, e_px) if clip else enc.raw
        if math.isinf(check_e_px(e_px)):
            return base
        noise = unit_noise.to(self.device, torch.float32).reshape(base.shape)
        z = base + noise * self.scale_vector(e_px)
        if not clip:
            return z
        lo, hi, _ = self._box_tensors(e_px)
        return torch.minimum(torch.maximum(z, lo), hi)

    def perturb_release(self, enc: Encoded, e_px: float, *, clip: bool = True) -> torch.Tensor:
        """The released noisy latent (exact discrete Laplace on the box grid, OS CSPRNG)."""
        if math.isinf(check_e_px(e_px)):
            return self.clipped(enc, e_px) if clip else enc.raw
        if not clip:
            raise BudgetError("a release without the clip has unbounded sensitivity and no "
                              "privacy guarantee; only e_px = inf may skip the clip")
        lo, width = self.box_at(e_px)
        z = self.clipped(enc, e_px).detach().cpu().double().numpy()
        k = release_grid(to_grid(z, lo, width), e_px, self.ratio)
        noisy = from_grid(k, lo, width)
        return torch.from_numpy(noisy).to(self.device, torch.float32)

    # ----------------------------------------------------------------- pictures

    def decode(self, latent: torch.Tensor, batched: bool = True) -> np.ndarray:
        with torch.inference_mode():
            image = self.to_image(latent)
            # checked before quantising, which would silently clamp inf to black or white
            if not torch.isfinite(image).all():
                raise NonFiniteOutputError(f"{self.label}: decoding gave non-finite pixels; "
                                           "the model file is probably damaged. Nothing was "
                                           "written.")
            out = self.quantise(image).float().cpu().numpy()
        return out if batched else out[0]

    def estimate(self, noisy: torch.Tensor, e_px: float, clip: bool = True) -> torch.Tensor:
        """What is decoded from a noisy latent: the latent itself here; a subclass may return
        an estimate of the original from it and public facts (post-processing: it costs no
        privacy). Preview and release both go through it."""
        return noisy

    def preview(self, enc: Encoded, e_px: float, unit_noise: torch.Tensor, *,
                clip: bool = True) -> np.ndarray:
        noisy = self.perturb_preview(enc, e_px, unit_noise, clip=clip)
        return self.decode(self.estimate(noisy, e_px, clip), enc.batched)

    def release(self, enc: Encoded, e_px: float, *, clip: bool = True) -> np.ndarray:
        noisy = self.perturb_release(enc, e_px, clip=clip)
        return self.decode(self.estimate(noisy, e_px, clip), enc.batched)

    def noise_scale(self, e_px: float) -> float:
        width = self.box_at(e_px)[1]
        return float(self.ratio) * float(np.mean(width)) / check_e_px(e_px)
