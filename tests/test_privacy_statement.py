"""The one privacy statement (glow_engine.privacy_statement): what a total epsilon means
formally, and what the model pair's risk card measured nearest to the budget."""

from __future__ import annotations

import math

import pytest

from glow_engine.privacy_statement import (
    Level,
    formal_meaning,
    level_of,
    measured,
    odds_factor,
    scientific,
    statement,
)
from glow_engine.risk_card import RiskCard


def card() -> RiskCard:
    row = {"reid_top1": 1.0, "ssim": 0.9, "auc_bpd": 0.81}
    low = {"reid_top1": 0.03, "ssim": 0.13, "auc_bpd": 0.64}
    return RiskCard({
        "models": {"mixture": {"sha256": "m"}, "normal": {"sha256": "n"}},
        "images": 117, "patients": 78, "chance": {"reid_top1": 0.009},
        "original": {"auc_bpd": 0.843},
        "identities": {"dpglow-paper": {"mechanism": "dpglow", "mode": "paper"}},
        "mechanisms": {"dpglow-paper": {"inf": row, "10": row, "0.1": low}}})


@pytest.mark.parametrize(("total", "level"), [
    (0.5, Level.STRONG), (1.0, Level.STRONG), (10.0, Level.FORMAL), (10.01, Level.NO_FORMAL),
    (1.6e6, Level.NO_FORMAL), (math.inf, Level.NONE)])
def test_levels_follow_the_total_epsilon(total, level) -> None:
    assert level_of(total) is level


def test_the_paper_budget_is_no_formal_protection() -> None:
    said = statement("dpglow", "paper", 100, 128, card())
    assert said.level is Level.NO_FORMAL and said.headline.startswith("No formal protection")
    assert "1.64 × 10⁶" in said.formal and "711,549 digits" in said.formal
    assert "recognising the patient" in said.formal and "still holds" not in said.text
    assert "nearest measured ε per pixel 10" in said.measured and "100%" in said.measured


def test_a_formal_budget_states_its_odds_factor() -> None:
    said = statement("dpglow", "paper", 1 / 128**2, 128)
    assert said.level is Level.STRONG and "a factor of 2.72" in said.formal
    assert odds_factor(2.0) == "a factor of 7.39"
    assert "not measured for DP-GLOW" in said.measured


def test_infinity_is_no_privacy_and_promises_no_noise() -> None:
    said = statement("dpglow", "paper", math.inf, 128, card())
    assert said.level is Level.NONE and said.measured == ""
    assert "no noise" in said.text and "secure" not in said.text
    assert formal_meaning(math.inf) == said.formal


def test_measurements_are_the_exact_or_the_nearest_budgets() -> None:
    assert "at ε per pixel 10)" in measured("dpglow", "paper", 10, card())
    between = measured("dpglow", "paper", 1, card())
    assert "nearest measured ε per pixel 0.1 and ε per pixel 10" in between
    assert "3% / 100%" in between
    assert "nearest measured ε per pixel 0.1)" in measured("dpglow", "paper", 0.001, card())
    assert "not measured for ID-LDP" in measured("idldp", "", 10, card())


def test_one_number_format() -> None:
    assert [scientific(x) for x in (1638400, 8192, 0.5, 16.384, math.inf)] == [
        "1.64 × 10⁶", "8192", "0.5", "16.4", "∞"]
