"""The fast inference path: each flow step folded from its layers' parameters into a handful of
tensor operations.

flow.layers states the maths; this module only re-arranges it for speed, once per set of
weights: actnorm and the 1x1 conv merged into one 1x1 conv per direction (folded in float64),
the zero-conv gain folded into its conv, the interleaved (log-scale, shift) output channels
regrouped into two contiguous halves, channels_last and oneDNN on CPU. A Glow owns one
`FoldedSteps`; its cache is keyed on the version counters and storage of every tensor of a
step, so an optimiser step, load_state_dict or .to() refreshes it. tests/test_flow.py checks
that both paths agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from glow_engine.flow.layers import FlowStep, ZeroConv2d, soft_clamp

# PyTorch's conv2d sends batch-1 3x3 convs on small inputs to an im2col path that is 2-3x
# slower than oneDNN on channels_last tensors, but oneDNN costs ~75 us a call here, which only
# pays off on large outputs: the folded path calls it directly above this many output elements.
_ONEDNN = torch.backends.mkldnn.is_available()
_ONEDNN_MIN_OUTPUT = 1 << 16


def layout(x: torch.Tensor) -> torch.Tensor:
    """The folded path's memory layout: channels_last on CPU, where oneDNN is fastest with it;
    the device's default elsewhere (no measurement says otherwise for cuDNN float32)."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
          padding: int) -> torch.Tensor:
    """conv2d (stride 1): oneDNN directly for large float32 CPU convs."""
    large = x.shape[0] * weight.shape[0] * x.shape[2] * x.shape[3] >= _ONEDNN_MIN_OUTPUT
    cpu32 = x.device.type == "cpu" and x.dtype == torch.float32
    if _ONEDNN and large and cpu32 and not torch.compiler.is_compiling():  # dynamo can't trace it
        return torch.mkldnn_convolution(x, weight, bias, (padding, padding), (1, 1), (1, 1), 1)
    return F.conv2d(x, weight, bias, padding=padding)


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


class FoldedStep(NamedTuple):
    """One flow step folded for inference."""

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
        h = F.relu_(_conv(x_a, self.w1, self.b1, padding=1))
        h = F.relu_(_conv(h, self.w2, self.b2, padding=0))
        h = _conv(h, self.w3, self.b3, padding=1) if self.taps is None \
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


def _zero_conv_folded(zc: ZeroConv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias with the gain folded in and the output channels regrouped: the even ones
    (log-scale) first, then the odd ones (shift), as AffineCoupling reads them."""
    gain = torch.exp(zc.log_gain * 3).flatten()
    n = gain.numel()
    order = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)]).to(gain.device)
    return (zc.conv.weight * gain[:, None, None, None])[order], (zc.conv.bias * gain)[order]


def fold(step: FlowStep) -> FoldedStep:
    """actnorm + 1x1 conv as one 1x1 conv with bias, each way, folded in float64:
    encode W((x + loc) e^s) = (W diag(e^s)) x + W (loc e^s)
    decode e^-s (W^-1 y) - loc."""
    loc, log_s = (p.detach().to("cpu", torch.float64).flatten()
                  for p in (step.actnorm.loc, step.actnorm.log_scale))
    w = step.invconv.weight64()
    like = step.invconv.lower
    enc_w, enc_b, dec_w, dec_b = (
        t.to(like.device, like.dtype) for t in
        (w * log_s.exp()[None, :], w @ (loc * log_s.exp()),
         torch.linalg.inv(w) * (-log_s).exp()[:, None], -loc))
    net = step.coupling.net
    w3, b3 = _zero_conv_folded(net[4])
    # oneDNN pads output channels to a 16-wide vector: few outputs go by taps
    taps = w3.permute(2, 3, 0, 1).reshape(-1, w3.shape[1]).contiguous() \
        if w3.device.type == "cpu" and w3.shape[0] < 8 and w3.shape[1] >= 32 else None
    return FoldedStep(
        enc_w[:, :, None, None], enc_b, dec_w[:, :, None, None], dec_b,
        step.actnorm.log_scale.sum() + step.invconv.log_s.sum(),
        layout(net[0].weight), net[0].bias, layout(net[2].weight), net[2].bias,
        layout(w3), b3, taps, step.coupling.scale_bound)


def _version_key(tensors: Iterable[torch.Tensor]) -> tuple | None:
    """Identity of the tensors' current values (in-place changes bump the version; .to() and
    load_state_dict(assign=True) give new storage); None when it cannot be tracked (tensors
    made under inference_mode have no version counter), which disables caching."""
    try:
        return tuple((t._version, t.data_ptr()) for t in tensors)
    except RuntimeError:
        return None


def _all_tensors(module: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers of a module tree, read from its dicts (module.parameters() and
    attribute access cost ~1 us an item, which adds up over hundreds of steps a decode)."""
    out = [*module._parameters.values(), *module._buffers.values()]
    for child in module._modules.values():
        out += _all_tensors(child)
    return out


class _Cached:
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


class FoldedSteps:
    """The folded form of each flow step of one flow, kept up to date with its weights."""

    def __init__(self) -> None:
        self._cache: dict[FlowStep, _Cached] = {}

    def of(self, step: FlowStep) -> FoldedStep:
        return self._cache.setdefault(step, _Cached()).get(
            _all_tensors(step), lambda: fold(step))
