"""Noise sources: a fast seedable Laplace for previews, an exact discrete Laplace for releases.

Release noise follows Canonne, Kamath & Steinke (2020), "The Discrete Gaussian for
Differential Privacy", Algorithms 1 and 2: a discrete Laplace with scale t/s
(P(y) proportional to exp(-|y| s / t)) built only from exact uniform integers and exact
Bernoulli(exp(-gamma)) trials, so no floating-point rounding can make the output distribution
depend on the input (Mironov 2012). Every random bit comes from `os.urandom` (the OS CSPRNG);
nothing here can be seeded. Each rejection loop runs on all still-pending elements at once in
NumPy integer arithmetic, which is what makes 65,536 samples fit inside 100 ms.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch

from glow_engine.budget import power_of_ten

# t (the numerator of the scale) is kept in [2^24, 2^25) where possible: rounding the scale
# up to t/s then costs at most 2^-24 relative, and t * k stays below 2^32 in the Bernoulli
# trials, so 32-bit random words suffice. Scales up to 2^50 keep every value inside uint64;
# below 2^-39 the denominator s would pass 2^63. (Noise that small is nonzero with probability
# about 2 exp(-2^39): such budgets are refused rather than silently released without noise.)
_SCALE_PRECISION_BITS = 24
MAX_SCALE = 2**50
MIN_SCALE = Fraction(1, 2**39)
_U32 = 1 << 32
# One uniform integer below 12! = 2*3*...*12 gives, as mixed-radix digits, eleven independent
# uniform digits d_k in [0, k): the Bernoulli(1/k) trials of exp(-1) for k = 2..12 at once.
_FACT_K = 12
_FACT = math.factorial(_FACT_K)


class OsEntropy:
    """os.urandom read in blocks for one sampling call. It is never kept across calls, so
    processes forked later (torchrun ranks, data workers) can never share buffered bytes."""

    def __init__(self, block: int = 1 << 16) -> None:
        self.block = block
        self.buf = b""
        self.pos = 0

    def words(self, n: int, bits: int) -> np.ndarray:
        """n uniform words of 32 or 64 bits, as uint64."""
        size = n * bits // 8
        if self.pos + size > len(self.buf):
            self.buf, self.pos = os.urandom(max(size, self.block)), 0
        dtype = np.uint32 if bits == 32 else np.uint64
        out = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos)
        self.pos += size
        return out.astype(np.uint64)

    def bits(self, n: int) -> np.ndarray:
        return (self.words((n + 31) // 32, 32)[:, None] >> np.arange(32, dtype=np.uint64)
                & np.uint64(1)).ravel()[:n] == 1


def preview_noise(batch: int, n: int, seed: int | None = None) -> torch.Tensor:
    """Standard Laplace (b = 1), float32 (batch, n): the difference of two Exp(1) draws."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    e = torch.empty(2 * batch, n).exponential_(generator=gen)
    return e[:batch] - e[batch:]


def rational_scale(scale: Fraction) -> tuple[int, int]:
    """(t, s) with t / s >= scale, t as small as possible for s a power of two: the noise is
    rounded up, never down, so the privacy loss is at most that of the requested scale."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"noise scale {power_of_ten(scale)} grid steps is outside "
                         "[2^-39, 2^50]")
    shift = max(0, _SCALE_PRECISION_BITS - math.floor(math.log2(scale)))
    s = 1 << shift
    return math.ceil(scale * s), s


def discrete_laplace(n: int, t: int, s: int) -> np.ndarray:
    """n iid samples, int64, with P(y) proportional to exp(-|y| * s / t) (CKS Algorithm 2)."""
    if t < 1 or s < 1:
        raise ValueError("t and s must be positive integers")
    ent = OsEntropy(block=max(1 << 16, 32 * n))
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        u = uniform_below(np.full(todo.size, t, dtype=np.uint64), ent)
        keep = bernoulli_exp(u, t, ent)  # accept U with probability exp(-U/t)
        idx, u = todo[keep], u[keep]
        x = u + np.uint64(t) * _geometric_exp1(idx.size, ent)  # X ~ Geometric(1 - e^(-1/t))
        y = (x // np.uint64(s)).astype(np.int64)
        negative = ent.bits(idx.size)
        accepted = ~(negative & (y == 0))  # "-0" is rejected so that 0 is not counted twice
        out[idx[accepted]] = np.where(negative, -y, y)[accepted]
        todo = np.concatenate([todo[~keep], idx[~accepted]])
    return out


def bernoulli_exp(num: np.ndarray, den: int, ent: OsEntropy | None = None) -> np.ndarray:
    """Exact Bernoulli(exp(-num/den)) per element, num/den in [0, 1] (CKS Algorithm 1):
    draw Bernoulli(gamma/k) for k = 1, 2, ... until the first 0; the answer is [k odd]."""
    ent = ent or OsEntropy()
    num = np.asarray(num, dtype=np.uint64)
    k = np.ones(num.shape, dtype=np.uint64)
    return _odd_first_miss(  # Bernoulli(gamma/k)
        k, lambda active, k: uniform_below(np.uint64(den) * k, ent) < num[active])


def _odd_first_miss(k: np.ndarray, hit: Callable[[np.ndarray, np.ndarray], np.ndarray]
                    ) -> np.ndarray:
    """Run trials hit(indices, k) for k = k0, k0+1, ... per element until the first miss;
    True where that k is odd (the common loop of CKS Algorithm 1)."""
    result = np.empty(k.shape, dtype=bool)
    active = np.arange(k.size)
    while active.size:
        hits = hit(active, k[active])
        done = active[~hits]
        result[done] = (k[done] & np.uint64(1)) == 1
        active = active[hits]
        k[active] += np.uint64(1)
    return result


def bernoulli_exp1(n: int, ent: OsEntropy) -> np.ndarray:
    """Exact Bernoulli(exp(-1)): Algorithm 1 with gamma = 1, where Bernoulli(1/1) always hits
    and the trials for k = 2..12 are the mixed-radix digits of one uniform integer below 12!."""
    r = uniform_below(np.full(n, _FACT, dtype=np.uint64), ent)
    first_miss = np.zeros(n, dtype=np.int64)  # 0: every trial so far hit
    for k in range(2, _FACT_K + 1):
        digit, r = r % np.uint64(k), r // np.uint64(k)
        first_miss[(first_miss == 0) & (digit != 0)] = k  # hit (prob 1/k) iff digit == 0
        if first_miss.all():
            break
    result = first_miss % 2 == 1
    rest = np.flatnonzero(first_miss == 0)  # probability 1/12! each: continue from k = 13
    if rest.size:
        result[rest] = _continue_exp1(rest.size, ent)
    return result


def _continue_exp1(n: int, ent: OsEntropy) -> np.ndarray:
    k = np.full(n, _FACT_K + 1, dtype=np.uint64)
    return _odd_first_miss(k, lambda _, k: uniform_below(k, ent) == 0)  # Bernoulli(1/k)


def _geometric_exp1(n: int, ent: OsEntropy) -> np.ndarray:
    """Successes before the first failure of Bernoulli(exp(-1)) trials (uint64)."""
    v = np.zeros(n, dtype=np.uint64)
    active = np.arange(n)
    while active.size:
        active = active[bernoulli_exp1(active.size, ent)]
        v[active] += np.uint64(1)
    return v


def uniform_below(m: np.ndarray, ent: OsEntropy | None = None) -> np.ndarray:
    """Exact uniform integers in [0, m) per element (uint64 m >= 1) by rejection: a word x of
    W bits is used only if x < 2^W - (2^W mod m), so x mod m has no bias."""
    ent = ent or OsEntropy()
    m = np.asarray(m, dtype=np.uint64)
    bits = 32 if m.size == 0 or int(m.max()) <= _U32 else 64
    out = np.empty(m.shape, dtype=np.uint64)
    todo = np.arange(m.size)
    while todo.size:
        mm = m[todo]
        x = ent.words(todo.size, bits)
        if bits == 32:
            limit = np.uint64(_U32) - np.uint64(_U32) % mm
        else:  # 2^64 - (2^64 mod m) in wrapping uint64 arithmetic; 0 stands for 2^64
            limit = np.uint64(0) - (np.uint64(0) - mm) % mm
        ok = (limit == 0) | (x < limit)
        out[todo[ok]] = x[ok] % mm[ok]
        todo = todo[~ok]
    return out
