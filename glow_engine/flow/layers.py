"""The three layers of one flow step, each with forward() and its mirror reverse().

Every forward returns (output, log|det J|) per sample; reverse takes the output back exactly
(up to float32 rounding).

A flow step computes its function one of two ways. The layers themselves (training, or
whenever autograd is on) use the parameters as they are. The fused inference path (eval mode
with autograd off) runs the whole step from weights folded once and cached: actnorm and the
1x1 conv merged into one 1x1 conv per direction, the zero-conv gain folded into its conv, the
interleaved (log-scale, shift) channels regrouped into two contiguous halves, channels_last
and oneDNN on CPU, in a handful of tensor operations. The cache is keyed on the version
counters and storage of every tensor of the step, so an optimiser step, load_state_dict or
.to() refreshes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ACTNORM_STD_FLOOR = 1e-2  # a near-constant channel would otherwise get a huge initial scale

# PyTorch's conv2d sends batch-1 3x3 convs on small inputs to an im2col path that is 2-3x
# slower than oneDNN on channels_last tensors, but oneDNN costs ~75 us a call here, which only
# pays off on large outputs: the fused path calls it directly above this many output elements.
_ONEDNN = torch.backends.mkldnn.is_available()
_ONEDNN_MIN_OUTPUT = 1 << 16


def soft_clamp(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly bound x to (-bound, bound); identity near zero, so training is unaffected."""
    return bound * torch.tanh(x / bound)


_fused_enabled = True  # see reference_path()


def fused_path(module: nn.Module) -> bool:
    """Whether `module` runs the fused inference path (eval mode, autograd off)."""
    return _fused_enabled and not module.training and not torch.is_grad_enabled()


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Run the plain training layers even in eval mode without autograd (for comparisons in
    tests and benchmarks)."""
    global _fused_enabled
    saved, _fused_enabled = _fused_enabled, False
    try:
        yield
    finally:
        _fused_enabled = saved


def _version_key(tensors: Iterable[torch.Tensor]) -> tuple | None:
    """Identity of the tensors' current values (in-place changes bump the version; .to() and
    load_state_dict(assign=True) give new storage); None when it cannot be tracked (tensors
    made under inference_mode have no version counter), which disables caching."""
    try:
        return tuple((t._version, t.data_ptr()) for t in tensors)
    except RuntimeError:
        return None


class _Cache:
    """One value derived from some tensors, recomputed whenever any of them changes."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value = None
        self.sources: tuple[torch.Tensor, ...] = ()

    def get(self, tensors: Iterable[torch.Tensor], compute: Callable):
        tensors = tuple(tensors)
        key = _version_key(tensors)
        if key is None or key != self.key:
            with torch.no_grad():
                self.value = compute()
            # holding the source tensors keeps their memory from going to a replacement, so
            # an equal key always means the very same tensors
            self.key, self.sources = key, tensors
        return self.value


def fused_layout(x: torch.Tensor) -> torch.Tensor:
    """The fused path's memory layout: channels_last on CPU, where oneDNN is fastest with it;
    the device's default elsewhere (no measurement says otherwise for cuDNN float32)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def fast_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              padding: int) -> torch.Tensor:
    """conv2d (stride 1) for the fused path: oneDNN directly for large float32 CPU convs."""
    large = x.shape[0] * weight.shape[0] * x.shape[2] * x.shape[3] >= _ONEDNN_MIN_OUTPUT
    cpu32 = x.device.type == "cpu" and x.dtype == torch.float32
    if _ONEDNN and large and cpu32 and not torch.compiler.is_compiling():  # dynamo can't trace it
        return torch.mkldnn_convolution(x, weight, bias, (padding, padding), (1, 1), (1, 1), 1)
    return F.conv2d(x, weight, bias, padding=padding)


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
    float64 once and cached until the weights change.
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
        self._inverse = _Cache()

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.lower, self.upper, self.log_s, self.perm, self.sign_s, self.lower_mask

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.lower.shape[0], device=self.lower.device, dtype=self.lower.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def weight64(self) -> torch.Tensor:
        """W in float64 on the CPU (MPS has no float64), for computing inverses and folds."""
        return self.weight().detach().to("cpu", torch.float64)

    def inverse_weight(self) -> torch.Tensor:
        return self._inverse.get(
            self._tensors(),
            lambda: torch.linalg.inv(self.weight64()).to(self.lower.device, self.lower.dtype))

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

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias with the gain folded in and the output channels regrouped: the
        even ones (log-scale / mean) first, then the odd ones (shift / log-sd)."""
        gain = torch.exp(self.log_gain * 3).flatten()
        n = gain.numel()
        order = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)]).to(gain.device)
        return (self.conv.weight * gain[:, None, None, None])[order], (self.conv.bias * gain)[order]


def _conv3x3_by_taps(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """3x3 conv (padding 1) with few output channels: one matrix product gives each tap's
    contribution at every pixel, then the nine tap planes are added, each shifted by its
    offset. On CPU ~2x faster than oneDNN for fewer than 8 outputs, which oneDNN pads to a
    16-wide vector."""
    b, c, h, w = x.shape
    cols = taps @ x.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)
    planes = cols.view(b, 3, 3, bias.numel(), h, w)
    out = planes[:, 1, 1] + bias[:, None, None]  # the centre tap covers every pixel
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
        # out[y, x] += plane[y + dy, x + dx] wherever that pixel exists (zero padding)
        out[:, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] += \
            planes[:, dy + 1, dx + 1, :, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


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
        self._fused = _Cache()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if fused_path(self):
            return self._folded().forward(x)
        x, ld1 = self.actnorm(x)
        x, ld2 = self.invconv(x)
        x, ld3 = self.coupling(x)
        return x, ld1 + ld2 + ld3

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        if fused_path(self):
            return self._folded().reverse(y)
        return self.actnorm.reverse(self.invconv.reverse(self.coupling.reverse(y)))

    def _folded(self) -> FusedStep:
        return self._fused.get(_all_tensors(self), self._fold)

    def _fold(self) -> FusedStep:
        """actnorm + 1x1 conv as one 1x1 conv with bias, each way, folded in float64:
        encode W((x + loc) e^s) = (W diag(e^s)) x + W (loc e^s)
        decode e^-s (W^-1 y) - loc."""
        loc, log_s = (p.to("cpu", torch.float64).flatten()
                      for p in (self.actnorm.loc, self.actnorm.log_scale))
        w = self.invconv.weight64()
        like = self.invconv.lower
        enc_w, enc_b, dec_w, dec_b = (
            t.to(like.device, like.dtype) for t in
            (w * log_s.exp()[None, :], w @ (loc * log_s.exp()),
             torch.linalg.inv(w) * (-log_s).exp()[:, None], -loc))
        net = self.coupling.net
        w3, b3 = net[4].folded()
        # oneDNN pads output channels to a 16-wide vector: few outputs go by taps (below)
        taps = w3.permute(2, 3, 0, 1).reshape(-1, w3.shape[1]).contiguous() \
            if w3.device.type == "cpu" and w3.shape[0] < 8 and w3.shape[1] >= 32 else None
        return FusedStep(
            enc_w[:, :, None, None], enc_b, dec_w[:, :, None, None], dec_b,
            self.actnorm.log_scale.sum() + self.invconv.log_s.sum(),
            fused_layout(net[0].weight), net[0].bias, fused_layout(net[2].weight), net[2].bias,
            fused_layout(w3), b3, taps, self.coupling.scale_bound)


def _all_tensors(module: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers of a module tree, read from its dicts (module.parameters() and
    attribute access cost ~1 us an item, which adds up over hundreds of steps a decode)."""
    out = [*module._parameters.values(), *module._buffers.values()]
    for child in module._modules.values():
        out += _all_tensors(child)
    return out


class FusedStep(NamedTuple):
    """A flow step folded for inference (see the module docstring)."""

    enc_w: torch.Tensor  # actnorm then 1x1 conv, as one 1x1 conv
    enc_b: torch.Tensor
    dec_w: torch.Tensor  # inverse 1x1 conv then inverse actnorm
    dec_b: torch.Tensor
    logdet_px: torch.Tensor  # their log|det| per pixel
    w1: torch.Tensor  # coupling net: 3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv (w3, b3)
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    w3: torch.Tensor  # gain folded in; outputs: log-scale channels, then shift channels
    b3: torch.Tensor
    taps: torch.Tensor | None  # w3 as a (9 * out, in) matrix, when taken by taps
    scale_bound: float

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu_(fast_conv(x_a, self.w1, self.b1, padding=1))
        h = F.relu_(fast_conv(h, self.w2, self.b2, padding=0))
        h = fast_conv(h, self.w3, self.b3, padding=1) if self.taps is None \
            else _conv3x3_by_taps(h, self.taps, self.b3)
        log_s, t = h.tensor_split(2, dim=1)
        return soft_clamp(log_s, self.scale_bound), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = F.conv2d(x, self.enc_w, self.enc_b).chunk(2, dim=1)
        log_s, t = self._scale_shift(x_a)
        logdet = log_s.sum(dim=(1, 2, 3)) + x.shape[2] * x.shape[3] * self.logdet_px
        return torch.cat([x_a, torch.exp(log_s).mul_(x_b).add_(t)], dim=1), logdet

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y.chunk(2, dim=1)
        log_s, t = self._scale_shift(y_a)
        x = torch.cat([y_a, (y_b - t).mul_(log_s.neg_().exp_())], dim=1)
        return F.conv2d(x, self.dec_w, self.dec_b)
