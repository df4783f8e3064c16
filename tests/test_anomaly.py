"""glow_engine.anomaly on a tiny synthetic normal/mixture model pair (tests/conftest.py), and
on two flows whose densities are known in closed form."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import synthetic_cxr, tiny_images, to_uint8
from scipy.stats import norm

from glow_engine.anomaly import AnomalyScorer
from glow_engine.calibration import calibrate
from glow_engine.errors import UserError
from glow_engine.evaluation.metrics import auc
from glow_engine.flow import Glow, GlowConfig
from glow_engine.flow.glow import ESCAPE_BITS
from glow_engine.flow.layers import ActNorm
from glow_engine.modelfile import LoadedModel
from glow_engine.scores import ScoreKind

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def scorer(anomaly_model_pair) -> AnomalyScorer:
    return AnomalyScorer(*anomaly_model_pair, batch_size=5)


def test_fields_are_consistent(scorer: AnomalyScorer) -> None:
    s = scorer.score(synthetic_cxr(3, False, 5))
    assert len(s) == 3
    for x in s:
        assert x.ratio_nats == pytest.approx(x.log_p_normal - x.log_p_mixture)
        assert 0 < x.bpd_mixture < 8  # a log-probability of an 8-bit image: 0..8 bits/dim
        assert x.abnormality(ScoreKind.RATIO) == -x.ratio_nats
        assert x.abnormality(ScoreKind.BPD_MIXTURE) == x.bpd_mixture
        assert set(x.to_dict()) >= {"ratio_nats", "bpd_mixture", "out_of_distribution"}
        assert x.abnormality() == x.bpd_mixture  # the default: bits/dim under M (evaluation.md)


def gaussian_model(mean: float, std: float, name: str) -> LoadedModel:
    """A GLOW of density N(mean, std^2) per pixel (model scale): a fresh GLOW is a rotation of a
    standard normal (zero-initialised couplings and priors, orthogonal 1x1 convolutions), and
    its first actnorm standardises x."""
    flow = Glow(GlowConfig(32, 2, 2, 16)).eval()
    first = next(m for m in flow.modules() if isinstance(m, ActNorm))
    with torch.no_grad():
        first.loc.fill_(-mean)
        first.log_scale.fill_(-math.log(std))
        first.initialized.fill_(1)
    model = LoadedModel(flow, {"name": name}, None, name[0] * 64)
    model.calibration = calibrate(model, [to_uint8(tiny_images(16))], "synthetic",
                                  progress=False)
    return model


def bin_probabilities(pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
    """P(each 8-bit pixel value) under N(mean, std^2): the Gaussian mass of its bin, from the
    CDF (independent of the flow and of the scorer's arithmetic)."""
    k = np.rint(pixels * 255)
    lo, hi = k / 256 - 0.5, (k + 1) / 256 - 0.5
    return norm.cdf(hi, mean, std) - norm.cdf(lo, mean, std)


def test_scores_match_closed_form_densities() -> None:
    normal, mixture = (-0.1, 0.2), (0.05, 0.3)
    scorer = AnomalyScorer(gaussian_model(*normal, "normal"), gaussian_model(*mixture, "mix"))
    pixels = synthetic_cxr(3, True, 4)
    p_n, p_m = bin_probabilities(pixels, *normal), bin_probabilities(pixels, *mixture)
    ln_n, ln_m = np.log(p_n).sum(axis=(1, 2)), np.log(p_m).sum(axis=(1, 2))
    bits_n, bits_m = -np.log2(p_n).mean(axis=(1, 2)), -np.log2(p_m).mean(axis=(1, 2))
    for x, n, m, bn, bm in zip(scorer.score(pixels), ln_n, ln_m, bits_n, bits_m, strict=True):
        assert x.log_p_normal == pytest.approx(n, rel=1e-5)
        assert x.log_p_mixture == pytest.approx(m, rel=1e-5)
        assert x.ratio_nats == pytest.approx(n - m, rel=1e-4)
        assert x.bpd_normal == pytest.approx(bn, rel=1e-5)
        assert x.bpd_mixture == pytest.approx(bm, rel=1e-5)
        assert x.ratio_bits_per_pixel == pytest.approx(bm - bn, rel=1e-4)


def test_deterministic_and_batch_independent(scorer: AnomalyScorer) -> None:
    x = synthetic_cxr(7, True, 6)
    a = scorer.evaluate(x)
    b = scorer.evaluate(x[::-1].copy())
    np.testing.assert_allclose(a.log_p_mixture, b.log_p_mixture[::-1], rtol=1e-6)
    single = scorer.score(x[0])  # one (R, R) image
    assert single[0].log_p_normal == pytest.approx(a.log_p_normal[0], rel=1e-6)


def test_score_sign_separates_normal_from_abnormal(scorer: AnomalyScorer) -> None:
    normal, abnormal = synthetic_cxr(20, False, 7), synthetic_cxr(20, True, 8)
    batch = scorer.evaluate(np.concatenate([normal, abnormal]))
    labels = np.r_[np.zeros(20), np.ones(20)]
    # Higher ratio = more normal: the mean ratio of normals exceeds that of abnormals.
    assert batch.ratio_nats[:20].mean() > batch.ratio_nats[20:].mean()
    assert auc(batch.abnormality(ScoreKind.RATIO), labels) > 0.9
    assert auc(batch.abnormality(ScoreKind.BPD_MIXTURE), labels) > 0.9


def test_identical_models_give_zero_ratio(anomaly_model_pair) -> None:
    _, mixture = anomaly_model_pair
    s = AnomalyScorer(mixture, mixture).score(synthetic_cxr(2, True, 9))
    assert all(x.ratio_nats == 0.0 for x in s)


def test_out_of_distribution_flag(scorer: AnomalyScorer) -> None:
    rng = np.random.default_rng(0)
    noise = rng.random((2, 32, 32)).astype(np.float32)  # not a chest X-ray at all
    inside = synthetic_cxr(4, False, 10)
    flags = [s.out_of_distribution for s in scorer.score(np.concatenate([noise, inside]))]
    assert flags[:2] == [True, True]
    assert not any(flags[2:])


def test_a_picture_the_flow_cannot_explain_scores_finite_and_flagged(
        scorer: AnomalyScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow's own log-density of an unlike picture can be -1e25 nats (latents of 1e9, the
    shipped model on privatised images) or NaN: the score is the escape's, at most 8 + 20/D
    bits/dim, and the picture is flagged; the other images' scores do not move."""
    pixels = synthetic_cxr(4, False, 11)
    before = scorer.evaluate(pixels)
    flow = scorer.mixture.flow
    encode = flow.encode_with_level_logp

    def breaks_on_two(x, folded=True):
        z, shares = encode(x, folded)
        shares = shares.clone()
        shares[0] = -1e25
        shares[1] = float("nan")
        return z, shares

    monkeypatch.setattr(flow, "encode_with_level_logp", breaks_on_two)
    after = scorer.evaluate(pixels)
    d = scorer.resolution**2
    np.testing.assert_allclose(after.bpd_mixture[:2], 8 + ESCAPE_BITS / d, rtol=1e-12)
    assert after.out_of_distribution[:2].all()
    assert np.isfinite(after.ratio_nats).all()
    np.testing.assert_allclose(after.bpd_mixture[2:], before.bpd_mixture[2:], rtol=0, atol=0)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
def test_shipped_pair_scores_every_8bit_picture_finite(one_torch_thread) -> None:
    """Adversarial pictures and DP-GLOW at every budget, on the shipped pair: finite bits/dim
    of at most 8 + 20/D (before the escape: up to 2e18 bits/dim, latents of 1e12); training
    images score what the flow gives them."""
    from glow_engine.flow.glow import bits_per_dim, pixels_to_model
    from glow_engine.mechanisms import create_mechanism, preview_noise
    from glow_engine.modelfile import load_model
    from glow_engine.resources import default_model_dir

    pair = [load_model(default_model_dir(name)) for name in ("normal", "mixture")]
    scorer = AnomalyScorer(*pair)
    r = scorer.resolution
    with np.load(SHARED_DATA / "nih_cxr14_subset_256.npz") as data:
        train = data["images"][data["split"] == "train"][:3].astype(np.float32) / 255
    yy, xx = np.mgrid[:r, :r]
    rng = np.random.default_rng(0)
    made = np.stack([rng.integers(0, 256, (r, r)) / 255, np.zeros((r, r)), np.ones((r, r)),
                     ((yy + xx) % 2).astype(float), (rng.random((r, r)) < 0.5) * 1.0,
                     np.clip((train[0] - 0.5) * 8 + 0.5, 0, 1)]).astype(np.float32)
    pictures = [made]
    for mode in ("paper", "tight"):
        mech = create_mechanism("dpglow", pair[1], alpha=0.4, mode=mode)
        enc = mech.encode(train)
        for e_px in (math.inf, 1000, 100, 10, 3, 1, 0.1):
            pictures.append(mech.preview(enc, e_px, preview_noise(3, r * r, seed=1)))
    batch = scorer.evaluate(np.concatenate(pictures))
    cap = 8 + ESCAPE_BITS / r**2
    for bpd in (batch.bpd_mixture, batch.bpd_normal):
        assert np.isfinite(bpd).all() and bpd.max() <= cap + 1e-9
    assert np.isfinite(batch.ratio_nats).all()
    plain = scorer.evaluate(train)
    with torch.inference_mode():
        flow_own = bits_per_dim(pair[1].flow(pixels_to_model(torch.from_numpy(train)[:, None])),
                                r * r).double().numpy()
    np.testing.assert_allclose(plain.bpd_mixture, flow_own, rtol=0, atol=1e-6)


def test_rejects_wrong_size_and_uncalibrated_mixture(anomaly_model_pair) -> None:
    normal, mixture = anomaly_model_pair
    with pytest.raises(UserError, match="32x32"):
        AnomalyScorer(normal, mixture).score(np.zeros((1, 16, 16)))
    with pytest.raises(UserError, match="calibrate"):
        AnomalyScorer(normal, normal)
    flow64 = SimpleNamespace(cfg=SimpleNamespace(resolution=64))  # enough for the size check
    bigger = LoadedModel(flow64, {}, mixture.calibration, "x")
    with pytest.raises(UserError, match="64x64"):
        AnomalyScorer(bigger, mixture)

