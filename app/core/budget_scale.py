"""The budget controls' scale and choices, Qt-free: where each e_px sits on the log slider
(with its infinity stop), the budgets a privacy review asks about, and DP-Pix's block sides
on offer."""

from __future__ import annotations

import math

from glow_engine.budget import E_PX_MAX, E_PX_MIN, e_px_for_total

STEPS_PER_DECADE = 100
SLIDER_MAX = round(STEPS_PER_DECADE * math.log10(E_PX_MAX / E_PX_MIN))  # e_px = 10^4
SLIDER_INF = SLIDER_MAX + 45  # the infinity end stop, set apart from the finite axis
TICKS = {0: "10⁻⁶", 200: "10⁻⁴", 400: "0.01", 600: "1", 800: "100", SLIDER_INF: "∞"}
BLOCK_SIDES = (2, 4, 8, 16, 32)  # DP-Pix's block sides on offer, where they divide R


def position_to_e_px(position: int) -> float:
    """Slider position -> e_px, rounded to 3 significant digits so the field reads well."""
    if position > SLIDER_MAX:
        return math.inf
    return float(f"{E_PX_MIN * 10 ** (position / STEPS_PER_DECADE):.3g}")


def e_px_to_position(e_px: float) -> int:
    if math.isinf(e_px):
        return SLIDER_INF
    return round(STEPS_PER_DECADE * math.log10(min(max(e_px, E_PX_MIN), E_PX_MAX) / E_PX_MIN))


def block_sides(resolution: int | None) -> list[int]:
    """DP-Pix's block sides on offer: those that divide the model's resolution."""
    return [b for b in BLOCK_SIDES if resolution is None or resolution % b == 0]


def budget_presets(resolution: int | None) -> list[tuple[str, float]]:
    """The budgets a privacy review asks about, as (menu text, e_px)."""
    presets = []
    if resolution:
        for total in (1.0, 10.0):
            presets.append((f"Total ε = {total:g} for the whole image",
                            e_px_for_total(total, resolution)))
    presets += [(f"ε per pixel = {e_px:g}", e_px) for e_px in (0.1, 1.0, 10.0, 100.0, 1000.0)]
    presets.append(("∞: no noise (no privacy)", math.inf))
    return presets
