"""The three layers of one flow step, each with forward() and its mirror reverse().

Every forward returns (output, log|det J|) per sample; reverse takes the output back exactly
(up to float32 rounding). These layers are the one statement of the flow's maths: training
runs them, and the fast inference path (flow.inference) is folded from their parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTNORM_STD_FLOOR = 1e-2  # a near-constant channel would otherwise get a huge initial scale


def soft_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly bound x to (-bound, bound); identity near zero, so training is unaffected."""
    return bound * torch.tanh(x / bound)


class ActNorm(nn.Module):
    """Per-channel affine y = (x + loc) * exp(log_scale), initialised from data.

    The "initialised" flag is a buffer so that it is saved with the weights: a loaded model
    must never re-initialise from whatever batch it sees first.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(ACTNORM_STD_FLOOR)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not self.initialized:
            self.initialize(x)
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return (x + self.loc) * torch.exp(self.log_scale), logdet.expand(x.shape[0])

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution, W = P L (U + diag(sign * exp(log_s))) (GLOW's LU form).

    log|det W| = sum(log_s) is exact and cheap; the inverse used for decoding is computed in
    float64.
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(diag))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(diag)))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.lower.shape[0], device=self.lower.device, dtype=self.lower.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def weight64(self) -> torch.Tensor:
        """W in float64 on the CPU (MPS has no float64), for computing inverses and folds."""
        return self.weight().detach().to("cpu", torch.float64)

    def inverse_weight(self) -> torch.Tensor:
        return torch.linalg.inv(self.weight64()).to(self.lower.device, self.lower.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight()
        logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return F.conv2d(x, w[:, :, None, None]), logdet.expand(x.shape[0])

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, self.inverse_weight()[:, :, None, None])


class ZeroConv2d(nn.Module):
    """3x3 conv initialised to output zero, so every new coupling/prior starts as identity."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_gain = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.exp(self.log_gain * 3)


class AffineCoupling(nn.Module):
    """y_b = x_b * exp(s(x_a)) + t(x_a) with s soft-clamped to (-scale_bound, scale_bound).

    The bound holds in both directions, so decoding a perturbed or clipped latent can shrink
    or grow a value by at most exp(scale_bound) per step: no inf/NaN from a near-zero scale.
    """

    def __init__(self, channels: int, width: int, scale_bound: float) -> None:
        super().__init__()
        half = channels // 2
        self.scale_bound = scale_bound
        self.net = nn.Sequential(
            nn.Conv2d(half, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1),
            nn.ReLU(inplace=True),
            ZeroConv2d(width, 2 * (channels - half)),
        )
        nn.init.normal_(self.net[0].weight, std=0.05)
        nn.init.zeros_(self.net[0].bias)
        nn.init.normal_(self.net[2].weight, std=0.05)
        nn.init.zeros_(self.net[2].bias)

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x_a)
        return soft_clamp(h[:, 0::2], self.scale_bound), h[:, 1::2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x.chunk(2, dim=1)
        log_s, t = self._scale_shift(x_a)
        y_b = x_b * torch.exp(log_s) + t
        return torch.cat([x_a, y_b], dim=1), log_s.sum(dim=(1, 2, 3))

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y.chunk(2, dim=1)
        log_s, t = self._scale_shift(y_a)
        return torch.cat([y_a, (y_b - t) * torch.exp(-log_s)], dim=1)


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> affine coupling."""

    def __init__(self, channels: int, width: int, scale_bound: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels, generator)
        self.coupling = AffineCoupling(channels, width, scale_bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, ld1 = self.actnorm(x)
        x, ld2 = self.invconv(x)
        x, ld3 = self.coupling(x)
        return x, ld1 + ld2 + ld3

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.actnorm.reverse(self.invconv.reverse(self.coupling.reverse(y)))
