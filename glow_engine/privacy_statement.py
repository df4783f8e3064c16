"""What a budget means, in one set of words for the viewer, the CLI and the reports.

Given the mechanism, the per-pixel budget e_px and the model's resolution, :func:`statement`
says, plainly first:

* what the total epsilon promises formally: seeing the released image changes the odds
  between any two guesses about the original by at most e^epsilon, whatever else is known
  (docs/privacy.md section 1); above a total of 10 that factor rules nothing out, and the
  statement says there is no formal protection;
* what was measured for these models: how often the evaluation's better attacker, who holds
  every original, matched a privatised image to its own original, and how much of the
  picture survived (the model pair's risk card, glow_engine.risk_card; the nearest measured
  budgets, said to be such).

Qt-free and torch-free: the window shows it before the engine has loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from glow_engine.budget import total_epsilon
from glow_engine.mechanism_specs import title_of
from glow_engine.risk_card import RiskCard

__all__ = ["FORMAL_LIMIT", "STRONG_LIMIT", "Level", "Statement", "formal_meaning", "level_of",
           "odds_factor", "scientific", "statement"]

# A total epsilon up to 10 is formal protection in the usual sense (docs/privacy.md 1);
# up to 1 it is strong. Above 10 the odds factor (e^10 = 22,026 and up) excludes nothing.
STRONG_LIMIT = 1.0
FORMAL_LIMIT = 10.0
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class Level(Enum):
    """How much formal protection a total epsilon gives; the value is its headline."""

    NONE = "No privacy: no noise is added"
    NO_FORMAL = "No formal protection at this budget"
    FORMAL = "Formal protection (total ε up to 10)"
    STRONG = "Strong formal protection (total ε up to 1)"


def level_of(total: float) -> Level:
    if math.isinf(total):
        return Level.NONE
    if total <= STRONG_LIMIT:
        return Level.STRONG
    return Level.FORMAL if total <= FORMAL_LIMIT else Level.NO_FORMAL


def scientific(x: float) -> str:
    """1638400 -> "1.64 × 10⁶": one number format for budgets wherever they are shown."""
    if math.isinf(x):
        return "∞"
    if x == 0:
        return "0"
    exponent = math.floor(math.log10(abs(x)))
    if -2 <= exponent <= 3:
        return f"{x:.{max(3, exponent + 1)}g}"  # 8192, not 8.19e+03
    return f"{x / 10**exponent:.3g} × 10{str(exponent).translate(_SUPERSCRIPT)}"


def odds_factor(total: float) -> str:
    """The factor e^total in words: "a factor of 2.72", "a factor with 711,549 digits"."""
    if total < 700:  # math.exp overflows past ~709
        return f"a factor of {scientific(math.exp(total))}"
    return f"a factor with {math.floor(total / math.log(10)) + 1:,} digits"


# --------------------------------------------------------------------------- the statement


@dataclass(frozen=True)
class Statement:
    level: Level
    total: float  # the image's total epsilon (glow_engine.budget.total_epsilon)
    formal: str  # what the total epsilon promises, in plain words
    measured: str  # the measured risk and utility, or why there is none ("" at no privacy)

    @property
    def headline(self) -> str:
        return self.level.value

    @property
    def text(self) -> str:
        """Headline, formal meaning and measurement as one paragraph (plain text)."""
        return " ".join(part for part in (f"{self.headline}.", self.formal, self.measured)
                        if part)


def formal_meaning(total: float) -> str:
    """What a total epsilon promises, in plain words (docs/privacy.md section 1)."""
    if math.isinf(total):
        return "ε = ∞: no noise is added, so nothing in the image is hidden."
    if level_of(total) is Level.NO_FORMAL:
        return (f"Total ε = {scientific(total)}: the odds between any two guesses about the "
                f"original may change by {odds_factor(total)}, which does not rule out "
                "recognising the patient (formal protection needs a total ε of about 1 to 10).")
    return (f"Total ε = {scientific(total)}: whatever else is known, the odds between any two "
            f"guesses about the original change by at most {odds_factor(total)}.")


def statement(mechanism: str, mode: str, e_px: float, resolution: int,
              card: RiskCard | None = None) -> Statement:
    total = total_epsilon(e_px, resolution)
    level = level_of(total)
    return Statement(level, total, formal_meaning(total),
                     "" if level is Level.NONE else measured(mechanism, mode, e_px, card))


def measured(mechanism: str, mode: str, e_px: float, card: RiskCard | None) -> str:
    """The evaluation's re-identification and utility figures nearest to this setting."""
    title = title_of(mechanism)
    key = card.key_of(mechanism, mode) if card is not None else None
    points = card.nearest(key, e_px) if key is not None else []
    if not points:
        return f"Re-identification: not measured for {title} with these models."
    exact = len(points) == 1 and math.isclose(points[0][0], e_px, rel_tol=1e-9)
    at = " and ".join(f"ε per pixel {budget:g}" for budget, _ in points)
    where = f"at {at}" if exact else f"at the nearest measured {at}"
    matched = " / ".join(f"{row['reid_top1']:.0%}" for _, row in points)
    picture = " / ".join(f"{row['ssim']:.2f}" for _, row in points)
    auc = " / ".join(f"{row['auc_bpd']:.2f}" for _, row in points)
    original = card.body["original"].get("auc_bpd")
    return (f"Measured ({card.body['images']} X-rays, {where}): {matched} of {title} images "
            f"matched to their own original by an attacker holding the originals (chance "
            f"{card.body['chance']['reid_top1']:.1%}); similarity {picture}, pneumonia AUC "
            f"{auc}" + (f" (originals {original:.2f})." if original is not None else "."))
