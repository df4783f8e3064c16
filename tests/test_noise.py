"""The release sampler against exact distributions, and the preview noise."""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from glow_engine.mechanisms.noise import (
    MAX_SCALE,
    OsEntropy,
    bernoulli_exp,
    bernoulli_exp1,
    discrete_laplace,
    preview_noise,
    rational_scale,
    uniform_below,
)

P_MIN = 1e-6  # a correct sampler fails a test at most about once in a million runs


def discrete_laplace_pmf(y: np.ndarray, scale: float) -> np.ndarray:
    q = math.exp(-1 / scale)
    return (1 - q) / (1 + q) * q ** np.abs(y)


def binomial_ok(hits: int, n: int, p: float) -> bool:
    return stats.binomtest(hits, n, p).pvalue > P_MIN


@pytest.mark.parametrize(("t", "s"), [(3, 2), (1, 1), (7, 1), (1, 3)])
def test_discrete_laplace_matches_the_exact_pmf(t: int, s: int) -> None:
    n = 200_000
    y = discrete_laplace(n, t, s)
    scale = t / s
    # cells: each value with >= 20 expected counts, one cell for the rest (both tails)
    cut = max(0, int(scale * math.log(n / 20)) - 1)
    support = np.arange(-cut, cut + 1)
    expected = discrete_laplace_pmf(support, scale) * n
    observed = np.array([(y == v).sum() for v in support])
    obs = np.append(observed, n - observed.sum())
    exp = np.append(expected, n - expected.sum())
    assert exp[-1] > 5
    assert stats.chisquare(obs, exp).pvalue > P_MIN
    assert 0.5 * np.abs(obs - exp).sum() / n < 0.01  # total variation distance



def test_large_scales_use_64_bit_words() -> None:
    t, s = rational_scale(Fraction(2**45))
    assert t / s >= 2**45
    y = discrete_laplace(20_000, t, s).astype(float) / 2**45
    assert stats.kstest(y, "laplace").pvalue > P_MIN


def test_bernoulli_exp_is_exact_in_frequency() -> None:
    n = 100_000
    for num, den in ((0, 5), (1, 3), (2, 3), (7, 7)):
        hits = int(bernoulli_exp(np.full(n, num, np.uint64), den).sum())
        assert binomial_ok(hits, n, math.exp(-num / den))
    assert binomial_ok(int(bernoulli_exp1(n, OsEntropy()).sum()), n, math.exp(-1))


@pytest.mark.parametrize("m", [1, 2, 7, 1000, 2**32, 2**40 + 3])
def test_uniform_below(m: int) -> None:
    n = 60_000
    x = uniform_below(np.full(n, m, np.uint64))
    assert x.max() < m
    if m <= 1000:
        counts = np.bincount(x.astype(np.int64), minlength=m)
        assert m == 1 or stats.chisquare(counts).pvalue > P_MIN
    else:
        assert stats.kstest(x.astype(float) / m, "uniform").pvalue > P_MIN


def test_rational_scale_rounds_up_only() -> None:
    for scale in (Fraction(1, 3), Fraction(2**20, 100), Fraction(2**20 * 5, 2 * 7),
                  Fraction(10**9, 7), Fraction(2**20) / Fraction(0.1)):
        t, s = rational_scale(scale)
        assert Fraction(t, s) >= scale
        assert Fraction(t, s) - scale <= Fraction(1, s)  # the smallest t for this s
        assert Fraction(t, s) / scale - 1 < Fraction(1, 2**23)
    for bad in (Fraction(0), Fraction(-1), Fraction(MAX_SCALE) * 2):
        with pytest.raises(ValueError):
            rational_scale(bad)


def test_only_os_urandom_feeds_the_release_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not np.array_equal(discrete_laplace(1000, 100, 1), discrete_laplace(1000, 100, 1))
    drawn: list[int] = []

    def fixed(n: int) -> bytes:
        drawn.append(n)
        return np.random.default_rng(len(drawn)).bytes(n)

    monkeypatch.setattr(os, "urandom", fixed)
    first = discrete_laplace(1000, 100, 1)
    drawn.clear()
    torch.manual_seed(123)
    np.random.seed(123)
    assert np.array_equal(first, discrete_laplace(1000, 100, 1)) and drawn


def test_preview_noise_is_standard_laplace_and_seedable() -> None:
    a = preview_noise(2, 50_000, seed=3)
    assert a.shape == (2, 50_000) and a.dtype == torch.float32
    assert torch.equal(a, preview_noise(2, 50_000, seed=3))
    assert not torch.equal(a, preview_noise(2, 50_000))
    assert stats.kstest(a.flatten().numpy(), "laplace").pvalue > P_MIN
