"""The three layers of one flow step, each with forward() and its mirror reverse().

Every forward returns (output, log|det J|) per sample; reverse takes the output back exactly
(up to float32 rounding).

Two paths compute the same function. The reference path (training, or whenever autograd is
on) uses the parameters as they are. The fused inference path (eval mode with autograd off)
uses weights folded once and cached: actnorm and the 1x1 conv merged into one 1x1 conv per
direction, the zero-conv gain folded into its conv, the interleaved (log-scale, shift)
channels regrouped into two contiguous halves, channels_last on CPU. Caches are keyed on the
parameters' version counters and storage, so an optimiser step, load_state_dict or .to()
invalidates them.
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

    def get(self, tensors: Iterable[torch.Tensor], compute: Callable):
        # callers list their tensors explicitly: walking module.parameters() costs ~20 us
        key = _version_key(tensors)
        if key is None or key != self.key:
            with torch.no_grad():
                self.value = compute()
            self.key = key
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
    """3x3 conv initialised to output zero, so every new coupling/prior starts as identity.

    Its output channels come in interleaved pairs (log-scale, shift) or (mean, log-sd).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_gain = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self._folded = _Cache()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two interleaved halves: (channels 0, 2, 4, ...), (channels 1, 3, 5, ...)."""
        if fused_path(self):
            return self._fused(x).tensor_split(2, dim=1)
        h = self.conv(x) * torch.exp(self.log_gain * 3)
        return h[:, 0::2], h[:, 1::2]

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        tensors = self.conv.weight, self.conv.bias, self.log_gain
        weight, bias, taps = self._folded.get(tensors, self._fold)
        if x.device.type == "cpu" and weight.shape[0] < 8 and weight.shape[1] >= 32:
            return _conv3x3_by_taps(x, taps, bias)
        return fast_conv(x, weight, bias, padding=1)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # gain folded into weight and bias; even channels first so the halves are contiguous
        gain = torch.exp(self.log_gain * 3).flatten()
        n = gain.numel()
        order = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)]).to(gain.device)
        weight = (self.conv.weight * gain[:, None, None, None])[order]
        taps = weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[1])  # row: (ky, kx, out)
        return fused_layout(weight), (self.conv.bias * gain)[order], taps.contiguous()


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
        self._weights = _Cache()

    def _hidden(self, x_a: torch.Tensor) -> torch.Tensor:
        if not fused_path(self):
            return self.net[:4](x_a)
        convs = self.net[0], self.net[2]
        (w1, b1), (w2, b2) = self._weights.get(
            [t for c in convs for t in (c.weight, c.bias)],
            lambda: [(fused_layout(c.weight), c.bias) for c in convs])
        h = F.relu_(fast_conv(x_a, w1, b1, padding=1))
        return F.relu_(fast_conv(h, w2, b2, padding=0))

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_s, t = self.net[4](self._hidden(x_a))
        return soft_clamp(log_s, self.scale_bound), t

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
        self._mix = _Cache()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if fused_path(self):
            mix = self._mixing()
            x, ld = self.coupling(F.conv2d(x, mix.enc_w, mix.enc_b))
            return x, ld + x.shape[2] * x.shape[3] * mix.logdet_px
        x, ld1 = self.actnorm(x)
        x, ld2 = self.invconv(x)
        x, ld3 = self.coupling(x)
        return x, ld1 + ld2 + ld3

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        if fused_path(self):
            mix = self._mixing()
            return F.conv2d(self.coupling.reverse(y), mix.dec_w, mix.dec_b)
        return self.actnorm.reverse(self.invconv.reverse(self.coupling.reverse(y)))

    def _mixing(self) -> _Mixing:
        tensors = self.actnorm.loc, self.actnorm.log_scale, *self.invconv._tensors()
        return self._mix.get(tensors, self._fold_mixing)

    def _fold_mixing(self) -> _Mixing:
        """actnorm + 1x1 conv as one 1x1 conv with bias, each way, folded in float64:
        encode W((x + loc) e^s) = (W diag(e^s)) x + W (loc e^s)
        decode e^-s (W^-1 y) - loc."""
        loc, log_s = (p.to("cpu", torch.float64).flatten()
                      for p in (self.actnorm.loc, self.actnorm.log_scale))
        w = self.invconv.weight64()
        enc_w, enc_b = w * log_s.exp()[None, :], w @ (loc * log_s.exp())
        dec_w, dec_b = torch.linalg.inv(w) * (-log_s).exp()[:, None], -loc
        like = self.invconv.lower
        return _Mixing(*(t.to(like.device, like.dtype) for t in
                         (enc_w[:, :, None, None], enc_b, dec_w[:, :, None, None], dec_b)),
                       logdet_px=self.actnorm.log_scale.sum() + self.invconv.log_s.sum())


class _Mixing(NamedTuple):
    """A flow step's actnorm + 1x1 conv folded into one 1x1 conv per direction."""

    enc_w: torch.Tensor
    enc_b: torch.Tensor
    dec_w: torch.Tensor
    dec_b: torch.Tensor
    logdet_px: torch.Tensor  # log|det| per pixel
