"""glow_engine.anomaly on a tiny synthetic normal/mixture model pair (tests/conftest.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import synthetic_cxr

from glow_engine.anomaly import AnomalyScorer
from glow_engine.errors import UserError
from glow_engine.evaluation.metrics import auc
from glow_engine.modelfile import LoadedModel
from glow_engine.scores import DEFAULT_SCORE_KIND, ScoreKind


@pytest.fixture(scope="module")
def scorer(anomaly_model_pair) -> AnomalyScorer:
    return AnomalyScorer(*anomaly_model_pair, batch_size=5)


def test_fields_are_consistent(scorer: AnomalyScorer) -> None:
    s = scorer.score(synthetic_cxr(3, False, 5))
    assert len(s) == 3
    d = 32 * 32
    for x in s:
        assert x.ratio_nats == pytest.approx(x.log_p_normal - x.log_p_mixture)
        assert x.ratio_bits_per_pixel == pytest.approx(x.ratio_nats / (d * math.log(2)))
        assert x.bpd_mixture == pytest.approx(-x.log_p_mixture / (d * math.log(2)))
        assert x.bpd_normal == pytest.approx(-x.log_p_normal / (d * math.log(2)))
        assert 0 < x.bpd_mixture < 8  # a log-probability of an 8-bit image: 0..8 bits/dim
        assert x.abnormality(ScoreKind.RATIO) == -x.ratio_nats
        assert x.abnormality(ScoreKind.BPD_MIXTURE) == x.bpd_mixture
        assert set(x.to_dict()) >= {"ratio_nats", "bpd_mixture", "out_of_distribution"}
    assert DEFAULT_SCORE_KIND in ScoreKind


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

