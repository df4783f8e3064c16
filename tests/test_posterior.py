"""DP-GLOW's post-processing (issue 22): the posterior mean of a latent element given its
release, against a brute-force posterior, and in the mechanism (one path for preview and
release, the privacy accounting untouched)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_images

from glow_engine.mechanisms import create_mechanism, preview_noise
from glow_engine.mechanisms.box import release_scale
from glow_engine.mechanisms.posterior import posterior_mean
from glow_engine.modelfile import LoadedModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_force(y: float, lo: float, hi: float, b: float) -> float:
    """E[e | y] by quadrature on a fine grid: the N(0, 1) prior times the probability of the
    release, a Laplace density inside the box and the noise's tail mass on an edge."""
    e = np.linspace(-12, 12, 400_001)
    c = np.clip(e, lo, hi)
    if y <= lo:
        likelihood = 0.5 * np.exp(-(c - lo) / b)
    elif y >= hi:
        likelihood = 0.5 * np.exp(-(hi - c) / b)
    else:
        likelihood = np.exp(-np.abs(y - c) / b) / (2 * b)
    w = np.exp(-0.5 * e * e) * likelihood
    return float((e * w).sum() / w.sum())


def test_posterior_mean_matches_a_brute_force_posterior() -> None:
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(200):
        lo = rng.uniform(-3, 0.5)
        hi = lo + rng.uniform(0.05, 4)
        b = 10 ** rng.uniform(-2.5, 1.5)
        cases.append((rng.choice([lo, hi, rng.uniform(lo, hi)]), lo, hi, b))
    y, lo, hi, b = (torch.tensor(v, dtype=torch.float64) for v in zip(*cases, strict=True))
    got = posterior_mean(y[None], lo, hi, b)[0].numpy()
    want = np.array([brute_force(*case) for case in cases])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_posterior_mean_limits() -> None:
    lo, hi = torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([1.0, 1.0, 1.0])
    tail = float(math.exp(-0.5) / math.sqrt(2 * math.pi) / (0.5 * math.erfc(1 / math.sqrt(2))))
    y = torch.tensor([[1.0, 0.3, -1.0]])
    # no noise: the clip alone is undone (the prior's mean beyond an edge), inside kept
    np.testing.assert_allclose(posterior_mean(y, lo, hi, 0.0)[0], [tail, 0.3, -tail], rtol=1e-5)
    # next to no noise (e_px of 1e9): the same, with no overflow or cancellation
    np.testing.assert_allclose(posterior_mean(y, lo, hi, 1e-9)[0], [tail, 0.3, -tail],
                               rtol=1e-5)
    # overwhelming noise: the prior's mean, 0, whatever was released
    assert posterior_mean(y, lo, hi, 1e6).abs().max() < 1e-5
    assert posterior_mean(y, lo, hi, 0.1).dtype == torch.float32


def mechanisms(model: LoadedModel, mode: str = "paper"):
    return (create_mechanism("dpglow", model, mode=mode, estimate="plain"),
            create_mechanism("dpglow", model, mode=mode, estimate="posterior-mean"))


@pytest.mark.parametrize("mode", ["paper", "tight"])
def test_post_processing_leaves_the_privacy_accounting_unchanged(tiny_model, mode) -> None:
    plain, posterior = mechanisms(tiny_model, mode)
    assert posterior.ratio == plain.ratio
    np.testing.assert_array_equal(posterior.lo, plain.lo)
    np.testing.assert_array_equal(posterior.width, plain.width)
    for e_px in (0.1, 1, 10, 100, 1000):
        assert release_scale(e_px, posterior.ratio) == release_scale(e_px, plain.ratio)
        assert torch.equal(posterior.scale_vector(e_px), plain.scale_vector(e_px))
        assert posterior.noise_scale(e_px) == plain.noise_scale(e_px)
    # its releases are recorded, and their measured figures looked up, as a variant of their own
    assert (plain.mode, posterior.mode) == (mode, f"{mode}-posterior")
    assert f"DP-GLOW {mode}-posterior alpha=0.4" in posterior.describe(10)
    assert posterior.label == f"DP-GLOW ({mode}, α=0.4, posterior mean)"
    assert plain.label == f"DP-GLOW ({mode}, α=0.4)"
    spec_options = {"mode": mode, "estimate": "posterior-mean"}
    assert posterior.spec.mode(spec_options) == posterior.mode
    assert posterior.spec.label(spec_options) == posterior.label


def test_preview_and_release_decode_through_the_same_estimate(tiny_model, monkeypatch) -> None:
    _, mech = mechanisms(tiny_model)
    enc = mech.encode(tiny_images(2, seed=3))
    seen = []
    estimate = mech.estimate

    def spy(noisy, e_px, clip=True):
        seen.append((e_px, clip))
        return estimate(noisy, e_px, clip)

    monkeypatch.setattr(mech, "estimate", spy)
    r = mech.resolution
    mech.preview(enc, 100, preview_noise(2, r * r, seed=0))
    mech.release(enc, 100)
    assert seen == [(100, True), (100, True)]
    # without noise both are the same picture, and it is the estimate's, not the plain one's
    preview, release = (mech.preview(enc, math.inf, preview_noise(2, r * r)),
                        mech.release(enc, math.inf))
    np.testing.assert_array_equal(preview, release)
    lo, hi, _ = mech._box_tensors()
    np.testing.assert_array_equal(release, mech.decode(posterior_mean(enc.clipped, lo, hi, 0.0)))
    assert not np.array_equal(release, mechanisms(tiny_model)[0].release(enc, math.inf))


@pytest.mark.parametrize(("mode", "e_px", "posterior"), [
    ("paper", 100, True), ("paper", 99, False), ("paper", 10, False),
    ("tight", 40, True), ("tight", 39, False), ("tight", 1, False)])
def test_posterior_mean_only_where_the_noise_is_small(tiny_model, mode, e_px, posterior):
    plain, mech = mechanisms(tiny_model, mode)
    enc = mech.encode(tiny_images(2, seed=5))
    r = mech.resolution
    noisy = mech.perturb_preview(enc, e_px, preview_noise(2, r * r, seed=2))
    lo, hi, _ = mech._box_tensors()
    want = posterior_mean(noisy, lo, hi, mech.scale_vector(e_px)) if posterior else noisy
    assert torch.equal(mech.estimate(noisy, e_px), want)
    assert torch.equal(plain.estimate(noisy, e_px), noisy)


def test_post_processing_changes_nothing_without_the_clip(tiny_model) -> None:
    plain, posterior = mechanisms(tiny_model)
    enc = plain.encode(tiny_images(2, seed=4))
    r = plain.resolution
    noise = preview_noise(2, r * r)
    np.testing.assert_array_equal(posterior.preview(enc, math.inf, noise, clip=False),
                                  plain.preview(enc, math.inf, noise, clip=False))
