"""The risk card states the stronger attacker's figure for every rate (never the weaker's)."""

from __future__ import annotations

from glow_engine.risk_card import _row


def _run(pixel: dict, latent: dict) -> dict:
    return {"reid": {"pixel": pixel, "latent": latent}, "e_px": 100.0,
            "marker": {"marker_kept_mean": 0.5}, "flip": {"accuracy": 0.75},
            "ssim": [0.8, 0.9], "auc": {"bpd_mixture": {"auc": 0.8, "ci95": [0.7, 0.9]},
                                        "ratio": None}}


def test_each_rate_is_the_worse_case_over_the_correlation_attackers():
    pixel = {"top1": 0.9, "top5": 0.95, "same_patient_top1": 0.25, "same_patient_top5": 0.4}
    latent = {"top1": 0.8, "top5": 0.97, "same_patient_top1": 0.32, "same_patient_top5": 0.5}
    row = _row(_run(pixel, latent), None, 128)
    assert (row["reid_top1"], row["reid_top5"]) == (0.9, 0.97)
    assert (row["same_patient_top1"], row["same_patient_top5"]) == (0.32, 0.5)
    assert (row["reid_attacker"], row["same_patient_attacker"]) == ("pixel", "latent")
    assert row["total_epsilon"] == 100.0 * 128**2


def test_a_rate_no_attacker_could_measure_stays_unmeasured():
    rates = {"top1": 0.5, "top5": 0.9, "same_patient_top1": None, "same_patient_top5": None}
    row = _row(_run(dict(rates), dict(rates)), None, 32)
    assert row["same_patient_top1"] is None and row["same_patient_attacker"] is None
    assert row["reid_top1"] == 0.5
