"""What the released latent says about the original one: the posterior mean of each element.

A released DP-GLOW element is y = clip(clip(e) + Laplace(b)) on the box [lo, hi] (box.py),
where e is a standardised latent element, a priori N(0, 1) under the model (flow.glow). The
box, the noise scale b and the prior are public, so anything computed from y and them is
post-processing: it costs no privacy. Given y, the likelihood of e depends on e only through
c = clip(e): exp(-|y - c| / b) where y is inside the box, the probability
exp(-(c - lo) / b) / 2 (or exp(-(hi - c) / b) / 2) that the noise took it to an edge. Both have
the same shape in e, so one formula covers them: on each of the four pieces e < lo,
lo < e < y, y < e < hi, e > hi the prior times the likelihood is a shifted, truncated normal,
whose mass and mean are closed-form (normal CDFs). The posterior mean is their mixture,
computed in log space in float64, so budgets from 0.1 to 1e9 per pixel stay exact.

Without noise (b = 0, e_px = inf) the same reasoning gives y inside the box and the prior's
mean beyond the edge (E[e | e < lo]) where y sits on it: only the clip is undone.
"""

from __future__ import annotations

import math

import torch
from torch.special import erfcx

__all__ = ["posterior_mean"]

_SQRT_HALF = math.sqrt(0.5)
_LAMBDA = math.sqrt(2 / math.pi)  # phi(x) / Phi(x) = _LAMBDA / erfcx(-x / sqrt 2)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)),
                       torch.log1p(-torch.exp(x)))


def _tail(upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For u ~ N(0, 1) below `upper`: log Phi(upper) + upper^2 / 2 and E[u | u < upper],
    written with erfcx (Phi(x) = erfcx(-x / sqrt 2) exp(-x^2 / 2) / 2), which keeps full
    precision however far out the interval lies."""
    ex = erfcx(-upper * _SQRT_HALF)
    return math.log(0.5) + torch.log(ex), -_LAMBDA / ex


def _interval(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """_tail for u truncated to (lower, upper), lower + upper <= 0 (pieces lying right of zero
    are mirrored), -inf for an empty interval."""
    log_tail, tail_mean = _tail(upper)
    ex_lower = erfcx(-lower * _SQRT_HALF)
    # log(Phi(lower) / Phi(upper)) without forming either
    log_r = torch.clamp(-0.5 * (lower - upper) * (lower + upper) + torch.log(ex_lower)
                        + math.log(0.5) - log_tail, max=0.0)
    r = torch.exp(log_r)
    mean = (_LAMBDA / ex_lower * r + tail_mean) / -torch.expm1(log_r)
    mean = torch.minimum(torch.maximum(torch.nan_to_num(mean, 0.0, 0.0, 0.0), lower), upper)
    return torch.where(upper > lower, log_tail + _log1mexp(log_r), -math.inf), mean


def posterior_mean(y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   scale: torch.Tensor | float) -> torch.Tensor:
    """E[e | y] per element for e ~ N(0, 1), y = clip(clip(e, lo, hi) + Laplace(scale)).

    y (B, N) and the box lo, hi (N,): tensors (y is clamped into the box); scale: the Laplace
    scale per element (N,) or one number (>= 0; 0 for no noise). Computed in float64 on the
    CPU; returns y's dtype and device."""
    yy, a, h = (t.detach().to("cpu", torch.float64) for t in (y, lo, hi))
    b = torch.as_tensor(scale).to("cpu", torch.float64).expand_as(a)
    yy = torch.minimum(torch.maximum(yy, a), h)
    noiseless = b <= 0
    k = torch.where(noiseless, 0.0, 1 / torch.where(noiseless, 1.0, b))
    # Each piece of e's line: the prior times the likelihood is exp(log_weight) times the
    # normal density truncated to (lower, upper) and shifted; written mirrored where the
    # interval lies right of zero, with log_weight net of the mirrored upper end's u^2/2
    # (the large terms k^2/2 cancel exactly in these forms).
    below, above = _tail(a), _tail(-h)  # e < lo; e > hi, mirrored
    p2_mirror = a + yy > 2 * k
    p3_mirror = yy + h + 2 * k > 0
    inner = (  # lo < e < y and y < e < hi: (interval's log mass, mean), mirrored, shift, weight
        (_interval(torch.where(p2_mirror, k - yy, a - k), torch.where(p2_mirror, k - a, yy - k)),
         p2_mirror, k, torch.where(p2_mirror, k * (a - yy) - 0.5 * a * a, -0.5 * yy * yy)),
        (_interval(torch.where(p3_mirror, -h - k, yy + k), torch.where(p3_mirror, -yy - k, h + k)),
         p3_mirror, -k, torch.where(p3_mirror, -0.5 * yy * yy, k * (yy - h) - 0.5 * h * h)))
    log_w = [below[0] - (yy - a) * k - 0.5 * a * a]
    means = [below[1].expand_as(yy)]
    for (scaled, mean), mirrored, shift, log_weight in inner:
        log_w.append(log_weight + scaled)
        means.append(shift + torch.where(mirrored, -mean, mean))
    log_w.append(above[0] - (h - yy) * k - 0.5 * h * h)
    means.append((-above[1]).expand_as(yy))
    w = torch.softmax(torch.stack(log_w), dim=0)
    noisy = (w * torch.stack(means)).sum(dim=0)
    # no noise: y is e inside the box; on an edge, e is the prior beyond it
    exact = torch.where(yy <= a, means[0], torch.where(yy >= h, means[3], yy))
    return torch.where(noiseless, exact, noisy).to(y.device, y.dtype)
