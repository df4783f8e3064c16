"""The budget module: the total epsilon, reading a typed budget (an overflowing number is an
error, infinity only when written as such), the window's refusals and the number formats."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import pytest

from glow_engine.budget import (
    E_PX_MAX,
    E_PX_MIN,
    BudgetError,
    e_px_for_total,
    format_e_px,
    format_number,
    parse_e_px,
    power_of_ten,
    refusal,
    total_epsilon,
)
from glow_engine.errors import UserError
from glow_engine.evaluation.settings import parse_settings


def test_total_epsilon_and_its_inverse() -> None:
    assert total_epsilon(100, 128) == 1_638_400
    assert total_epsilon(math.inf, 32) == math.inf
    assert e_px_for_total(1.0, 32) * 32 * 32 == pytest.approx(1.0)
    for bad in (0, -1, math.nan):
        with pytest.raises(BudgetError):
            total_epsilon(bad, 32)


@pytest.mark.parametrize(("text", "value"), [
    ("100", 100.0), (" 1e3 ", 1000.0), ("inf", math.inf), ("Infinity", math.inf),
    ("∞", math.inf), ("+inf", math.inf), ("5e-324", 5e-324), ("1e308", 1e308)])
def test_numbers_and_written_infinity_are_read(text, value) -> None:
    assert parse_e_px(text) == value


@pytest.mark.parametrize(("text", "why"), [
    ("1e400", "too large"), ("-1e400", "not positive"), ("1e-400", "too small"),
    ("0", "not positive"), ("0e5", "not positive"), ("-5", "not positive"),
    ("nan", "not a number"), ("abc", "not a number"), ("", "not a number"),
    ("-inf", "not positive")])
def test_anything_else_is_refused_in_one_line(text, why) -> None:
    with pytest.raises(BudgetError, match=why) as caught:
        parse_e_px(text)
    assert "\n" not in str(caught.value) and isinstance(caught.value, UserError)


def test_the_window_refusal_names_the_range_and_no_flag() -> None:
    assert refusal("100") is None and refusal("inf") is None
    assert refusal(format_e_px(E_PX_MIN)) is None and refusal(format_e_px(E_PX_MAX)) is None
    for text, why in (("1e400", "too large"), ("1e9", "outside the range"),
                      ("abc", "not a budget"), ("1e-7", "outside the range")):
        said = refusal(text)
        assert why in said and "1e-06 to 10000, or inf" in said and "--" not in said


def test_formats() -> None:
    assert format_e_px(math.inf) == "∞" and format_e_px(6.1e-05) == "6.1e-05"
    assert format_e_px(2500.0) == "2500" and parse_e_px(format_e_px(6.1e-05)) == 6.1e-05
    assert format_number(math.inf) == "inf" and format_number(102400.0) == "102400"
    assert format_number(5e-324) == "4.94066e-324"
    huge = Fraction(2**20) / Fraction(5e-324)  # beyond a float: float(huge) overflows
    with pytest.raises(OverflowError):
        float(huge)
    assert power_of_ten(huge) == "about 10^329"


def test_evaluation_budgets_refuse_an_overflowing_number() -> None:
    assert math.isinf(parse_settings("inf")[0].e_px)
    with pytest.raises(UserError, match="too large"):
        parse_settings("100,1e400")


def test_budget_and_mechanism_descriptions_load_without_torch() -> None:
    """The viewer's window reads both before torch is imported (on the engine thread)."""
    code = ("import sys, glow_engine.budget, glow_engine.mechanism_specs; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
