"""The privacy budget: the per-pixel e_px, the whole image's total epsilon, and how a budget is
read from text, written back and refused.

Every mechanism here spends e_px on each of the R x R pixels of the model frame, so an image's
total epsilon is e_px * R * R (docs/method.md, "Budgets"); `total_epsilon` is the one place
that says so. A typed budget is a positive number or an explicit infinity ("inf", "∞": no
noise, no privacy); a number too large for a float ("1e400") is an error, never infinity.

Torch-free and Qt-free: the CLI, the reports and the viewer's window all use it.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from glow_engine.errors import UserError

__all__ = ["E_PX_MAX", "E_PX_MIN", "BudgetError", "check_e_px", "e_px_for_total",
           "format_e_px", "format_number", "out_of_range", "parse_e_px", "power_of_ten",
           "refusal", "total_epsilon"]

# The range the viewer offers (slider and typed field): down to a total epsilon of about 1 at
# 512 x 512 (formal protection), up to where the noise is invisible at any resolution.
E_PX_MIN = 1e-6
E_PX_MAX = 1e4
INFINITY_WORDS = ("inf", "+inf", "infinity", "+infinity", "∞")
_NONZERO_DIGIT = re.compile(r"[1-9]")


class BudgetError(UserError, ValueError):
    """An unusable privacy budget or an unprotected release request."""


def check_e_px(e_px: float) -> float:
    """e_px as a float; BudgetError unless it is positive (inf included)."""
    e_px = float(e_px)
    if math.isnan(e_px) or e_px <= 0:
        raise BudgetError(f"the per-pixel epsilon must be positive or inf, got {e_px}")
    return e_px


def total_epsilon(e_px: float, resolution: int) -> float:
    """The whole image's budget: e_px per pixel times R * R pixels (inf stays inf)."""
    return check_e_px(e_px) * resolution * resolution


def e_px_for_total(total: float, resolution: int) -> float:
    """The per-pixel budget whose total over R * R pixels is `total`."""
    return check_e_px(total) / (resolution * resolution)


# --------------------------------------------------------------------------- reading


def parse_e_px(text: str) -> float:
    """"100", "1e3", "inf", "∞" -> e_px. BudgetError, with one line saying why, for anything
    else: not a number, NaN, zero or negative, or a number beyond a float's range (1e400 or
    1e-400 would otherwise read as inf or 0)."""
    word = text.strip().lower()
    if word in INFINITY_WORDS:
        return math.inf
    shown = text.strip() or "an empty text"
    try:
        value = float(word)
    except ValueError:
        raise BudgetError(f"“{shown}” is not a number") from None
    if math.isnan(value):
        raise BudgetError(f"“{shown}” is not a number")
    if math.isinf(value) and value > 0:
        raise BudgetError(f"“{shown}” is too large to be represented (write inf for no noise)")
    if value == 0 and _NONZERO_DIGIT.search(word.split("e")[0]):
        raise BudgetError(f"“{shown}” is too small to be represented")
    if value <= 0:
        raise BudgetError(f"“{shown}” is not positive")
    return value


def refusal(text: str, low: float = E_PX_MIN, high: float = E_PX_MAX) -> str | None:
    """Why a typed budget cannot be applied in the window, or None if it can (parse_e_px
    gives the value): unreadable, or finite and outside [low, high]."""
    allowed = f"type a number from {format_e_px(low)} to {format_e_px(high)}, or inf"
    try:
        value = parse_e_px(text)
    except BudgetError as exc:
        return f"{exc}, so it is not a budget: {allowed}."
    if not math.isinf(value) and not low <= value <= high:
        return f"{format_e_px(value)} is outside the range: {allowed}."
    return None


def out_of_range(e_px: float, low: float, high: float, why: str) -> str:
    """The refusal of a budget outside what a mechanism can release."""
    return (f"e_px = {format_number(e_px)} cannot be released: {why} (usable e_px "
            f"{low:.3g} to {high:.3g}; inf releases without noise)")


# --------------------------------------------------------------------------- writing


def format_e_px(e_px: float) -> str:
    """Every digit that matters: a field shows the budget that is applied, not a rounding."""
    return "∞" if math.isinf(e_px) else f"{e_px:.15g}"


def format_number(x: float) -> str:
    """For files and descriptions: inf -> "inf", whole numbers without exponent, others
    compactly (6 significant digits)."""
    if math.isinf(x):
        return "inf"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


def power_of_ten(x: Fraction) -> str:
    """A positive rational of any size as "about 10^k", without passing through a float
    (which overflows past 1.8e308: a refusal must never fail on its own number)."""
    exponent = math.log10(x.numerator) - math.log10(x.denominator)  # exact ints: no overflow
    return f"about 10^{round(exponent)}"
