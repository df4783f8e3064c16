"""Multi-scale GLOW for one-channel images, with the standardised latent DP-GLOW perturbs.

Encoding x (1 x H x W) runs L levels of: squeeze (2x2 space -> channels), K flow steps, then
(except at the top) a split: half the channels leave as z_l, whose prior N(mu_l, sigma_l) is
predicted from the half that stays. The latent handed to the privacy mechanism is the
concatenation of every level's *standardised* eps_l = (z_l - mu_l) / sigma_l (the top's prior
is N(0, I), so eps_top = z_top): H*W elements in all, each a priori N(0, 1). Decoding takes
exactly that vector back and never resamples anything.

Input scale: pixels quantised to 8 bits, x = k/256 - 0.5 (+ 1/512 at inference, the bin
centre; + U(0, 1/256) in training, uniform dequantisation). log p of the discrete image is
log p(x) - D log 256, and bits/dim = -that / (D ln 2).

Scores use that flow with an escape (log_p_8bit): an image the flow cannot explain is coded
raw. The coupling shifts and the priors' means are unbounded functions of their input (only
the scales are soft-clamped), so a picture unlike every training image, such as a privatised
one at a small budget, grows by orders of magnitude at each flow step, to latents of 1e9 or
more (float64 gives the same values: it is the flow's function, not an overflow) and bits/dim
of 1e17. Under the escape no 8-bit image scores more than 8 + ESCAPE_BITS / D bits/dim, and an
image the flow explains scores exactly what the flow gives it (see log_p_8bit).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from glow_engine.bits import bits_per_pixel
from glow_engine.flow.inference import FoldedSteps, layout
from glow_engine.flow.layers import FlowStep, ZeroConv2d, soft_clamp

N_BINS = 256
# The escape's weight is 2^-ESCAPE_BITS: it costs an image the flow explains log2(1/(1 - 2^-20))
# = 1.4e-6 bits in all (2e-11 bits/dim at 256x256, below float32's resolution of a bits/dim).
ESCAPE_BITS = 20
PRIOR_LOG_SCALE_BOUND = 5.0  # sigma_l in (e^-5, e^5): decoding stays finite for any eps


@dataclass(frozen=True)
class GlowConfig:
    resolution: int = 128
    levels: int = 4
    depth: int = 8
    width: int = 128
    scale_bound: float = 2.0
    seed: int = 0
    # one coupling width per level, finest first; None: `width` at every level (files written
    # before per-level widths have none). The finest level holds most of the pixels, so a
    # narrow net there keeps a 256x256 model near the cost of a 128x128 one.
    widths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 32 or r > 1024 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in [32, 1024], got {r}")
        if not 1 <= self.levels <= int(math.log2(r)) - 1:
            raise ValueError(f"levels must be in [1, {int(math.log2(r)) - 1}] at {r}x{r}")
        if self.depth < 1 or min(self.level_widths()) < 4:
            raise ValueError("depth must be >= 1 and every width >= 4")
        if self.widths is not None and len(self.widths) != self.levels:
            raise ValueError(f"widths needs one value per level ({self.levels}), "
                             f"got {len(self.widths)}")

    def level_widths(self) -> tuple[int, ...]:
        """The coupling width of each level, finest first."""
        return tuple(self.widths) if self.widths is not None else (self.width,) * self.levels

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["widths"] is None:  # one width throughout: written as before per-level widths
            del d["widths"]
        else:
            d["widths"] = list(d["widths"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GlowConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if known.get("widths") is not None:
            known["widths"] = tuple(int(w) for w in known["widths"])
        return cls(**known)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


def _no_grad_unless_asked(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """encode/decode are inference calls: no autograd graph (so, in eval mode, the folded fast
    path) unless the caller asks for gradients with respect to their input."""
    return contextlib.nullcontext() if x.requires_grad else torch.no_grad()


def _standard_normal_logp(eps: torch.Tensor) -> torch.Tensor:
    return -0.5 * (eps.square().sum(dim=(1, 2, 3)) + eps[0].numel() * math.log(2 * math.pi))


class Level(nn.Module):
    """squeeze -> K flow steps -> (split with a learned conditional prior | top)."""

    def __init__(self, in_channels: int, cfg: GlowConfig, width: int, top: bool,
                 gen: torch.Generator):
        super().__init__()
        channels = in_channels * 4
        self.top = top
        self.steps = nn.ModuleList(
            FlowStep(channels, width, cfg.scale_bound, gen) for _ in range(cfg.depth)
        )
        self.prior = None if top else ZeroConv2d(channels // 2, channels)
        self.out_channels = channels if top else channels // 2

    def _prior(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.prior(kept)
        return h[:, 0::2], soft_clamp(h[:, 1::2], PRIOR_LOG_SCALE_BOUND)

    def forward(self, x: torch.Tensor, folded: FoldedSteps | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (kept half for the next level or None-like empty, eps, log-density); with
        `folded`, each step runs folded (inference only)."""
        x = squeeze(x)
        x = layout(x) if folded else x
        logdet = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for step in self.steps:
            x, ld = folded.of(step).forward(x) if folded else step(x)
            logdet = logdet + ld
        if self.top:
            return x[:, :0], x, logdet + _standard_normal_logp(x)
        kept, z = x.chunk(2, dim=1)
        mean, log_sd = self._prior(kept)
        eps = (z - mean) * torch.exp(-log_sd)
        logp = _standard_normal_logp(eps) - log_sd.sum(dim=(1, 2, 3))
        return kept, eps, logdet + logp

    def reverse(self, kept: torch.Tensor | None, eps: torch.Tensor,
                folded: FoldedSteps | None = None) -> torch.Tensor:
        arrange = layout if folded else (lambda t: t)
        if self.top:
            x = arrange(eps)
        else:
            kept = arrange(kept)
            mean, log_sd = self._prior(kept)
            x = arrange(torch.cat([kept, mean + torch.exp(log_sd) * eps], dim=1))
        for step in reversed(self.steps):
            x = folded.of(step).reverse(x) if folded else step.reverse(x)
        return unsqueeze(x)


class Glow(nn.Module):
    """The flow. forward(x) gives log p(x) per sample (nats, continuous density of x).

    Without autograd and in eval mode, forward, encode and decode run each step folded
    (flow.inference) unless called with `folded=False`; both compute the same function.
    Exactness on CUDA needs true float32 convolutions, not cuDNN's default TF32:
    glow_engine.device.pick_device sets that once for the process.
    """

    def __init__(self, cfg: GlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        levels, channels = [], 1
        for i, width in enumerate(cfg.level_widths()):
            level = Level(channels, cfg, width, top=i == cfg.levels - 1, gen=gen)
            levels.append(level)
            channels = level.out_channels
        self.levels = nn.ModuleList(levels)
        self.eps_shapes = self._eps_shapes()
        self._folded = FoldedSteps()

    @property
    def num_pixels(self) -> int:
        return self.cfg.resolution**2

    def _eps_shapes(self) -> list[tuple[int, int, int]]:
        shapes, c, r = [], 1, self.cfg.resolution
        for level in self.levels:
            c, r = c * 4, r // 2
            shapes.append((c, r, r) if level.top else (c // 2, r, r))
            c = c if level.top else c // 2
        return shapes

    def _path(self, folded: bool) -> FoldedSteps | None:
        return self._folded if folded and not self.training and not torch.is_grad_enabled() \
            else None

    def _encode_levels(self, x: torch.Tensor, folded: bool
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each level's eps and log-density contribution, (B, L) nats."""
        path = self._path(folded)
        eps_list, logps = [], []
        for level in self.levels:
            x, eps, lp = level(x, path)
            eps_list.append(eps)
            logps.append(lp)
        return eps_list, torch.stack(logps, dim=1)

    def forward(self, x: torch.Tensor, folded: bool = True) -> torch.Tensor:
        return self._encode_levels(x, folded)[1].sum(dim=1)

    def encode(self, x: torch.Tensor, folded: bool = True) -> torch.Tensor:
        """x (B, 1, H, W) in model scale -> standardised latent (B, H*W)."""
        return self.encode_with_logp(x, folded)[0]

    def encode_with_logp(self, x: torch.Tensor, folded: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        z, level_logp = self.encode_with_level_logp(x, folded)
        return z, level_logp.sum(dim=1)

    def encode_with_level_logp(self, x: torch.Tensor, folded: bool = True
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent and each level's share of log p(x), (B, L) nats, finest level first:
        the shares say where in scale an image is (a)typical (the out-of-distribution check)."""
        with _no_grad_unless_asked(x):
            eps_list, level_logp = self._encode_levels(x, folded)
        return torch.cat([e.flatten(1) for e in eps_list], dim=1), level_logp

    def decode(self, eps: torch.Tensor, folded: bool = True) -> torch.Tensor:
        """Standardised latent (B, H*W) -> x (B, 1, H, W). Deterministic: nothing is resampled."""
        if eps.shape[1] != self.num_pixels:
            raise ValueError(f"latent has {eps.shape[1]} elements, model needs {self.num_pixels}")
        parts = [eps[:, part].reshape(-1, *shape)
                 for part, shape in zip(self.level_slices(), self.eps_shapes, strict=True)]
        x = None
        with _no_grad_unless_asked(eps):
            path = self._path(folded)
            for level, part in zip(reversed(self.levels), reversed(parts), strict=True):
                x = level.reverse(x, part, path)
        return x

    def level_slices(self) -> list[slice]:
        """Where each level's part lies in the flat latent, finest level first."""
        out, start = [], 0
        for c, h, w in self.eps_shapes:
            out.append(slice(start, start + c * h * w))
            start += c * h * w
        return out

    def multiply_adds(self) -> int:
        """Multiply-adds of one encode (or decode) of one image: the convolutions and 1x1
        mixing; the elementwise work is not counted."""
        return sum(self.level_multiply_adds())

    def level_multiply_adds(self) -> list[int]:
        """multiply_adds() per level, finest first."""
        out, channels, res = [], 1, self.cfg.resolution
        for level, width in zip(self.levels, self.cfg.level_widths(), strict=True):
            c, res = channels * 4, res // 2
            half = c // 2
            step = c * c + 9 * half * width + width * width + 9 * width * 2 * (c - half)
            prior = 0 if level.top else 9 * half * c
            out.append(res * res * (self.cfg.depth * step + prior))
            channels = half
        return out

    @torch.no_grad()
    def initialize_actnorm(self, x: torch.Tensor) -> None:
        """Data-dependent init of every actnorm from one batch (>= 256 images recommended)."""
        was_training = self.training
        self.train()
        self(x)
        self.train(was_training)

    def is_initialized(self) -> bool:
        return all(bool(m.initialized) for m in self.modules() if hasattr(m, "initialized"))

    def sample(self, n: int, temperature: float = 0.7,
               generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        eps = torch.randn(n, self.num_pixels, generator=generator).to(device) * temperature
        return self.decode(eps)


def pixels_to_model(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> model scale at the 8-bit bin centre (the deterministic inference input)."""
    k = torch.round(pixels.clamp(0, 1) * (N_BINS - 1))
    return k / N_BINS - 0.5 + 0.5 / N_BINS


def model_to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Model scale -> [0, 1] pixels quantised to 8 bits (post-processing of a decoded image)."""
    k = torch.floor((x + 0.5) * N_BINS).clamp(0, N_BINS - 1)
    return k / (N_BINS - 1)


def dequantize(pixels_uint8: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (0..255) -> model scale with uniform dequantisation noise, for training."""
    # drawn on the CPU so one seeded CPU generator serves every device
    u = torch.rand(pixels_uint8.shape, generator=generator).to(pixels_uint8.device)
    return (pixels_uint8.float() + u) / N_BINS - 0.5


def log_p_8bit(logp: np.ndarray, num_pixels: int) -> np.ndarray:
    """The flow's continuous log-density at the bin centres (nats, float64) -> log-probability
    of the 8-bit image under the scored model: the flow (density times the bin volume
    N_BINS^-D) with weight 1 - 2^-ESCAPE_BITS, mixed with the uniform law over 8-bit images
    (N_BINS^-D each) with weight 2^-ESCAPE_BITS. A sum of two probability laws, so still one;
    a NaN from a flow that broke on its input counts as probability 0 under the flow."""
    raw = -num_pixels * math.log(N_BINS)
    flow = np.asarray(logp, dtype=np.float64) + raw
    flow = np.where(np.isnan(flow), -np.inf, flow)
    escape = -ESCAPE_BITS * math.log(2)
    return np.logaddexp(flow + math.log1p(-math.exp(escape)), raw + escape)


def bits_per_dim(logp: torch.Tensor, num_pixels: int) -> torch.Tensor:
    """Continuous log-density (nats) -> the flow's own bits/dim of the 8-bit discrete image,
    without the escape: the training objective (under the escape an untrained flow, above 8
    bits/dim, would get no gradient) and the calibration's statistics of training images."""
    return -bits_per_pixel(logp - num_pixels * math.log(N_BINS), num_pixels)
