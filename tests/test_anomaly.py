"""glow_engine.anomaly on a tiny synthetic normal/mixture model pair (tests/conftest.py), and
on two flows whose densities are known in closed form."""

from __future__ import annotations

import math
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
from glow_engine.flow.layers import ActNorm
from glow_engine.modelfile import LoadedModel
from glow_engine.scores import ScoreKind


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

