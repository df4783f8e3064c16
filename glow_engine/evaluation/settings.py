"""What the evaluation runs: privacy budgets (per-pixel e_px, with or without the clip) and
mechanisms, named the way the CLI takes them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from glow_engine.choices import DPGLOW_MODES, MECHANISM_TITLES
from glow_engine.errors import UserError
from glow_engine.mechanisms import IDLDP, DPGlow, DPPix, Mechanism
from glow_engine.mechanisms.base import format_number
from glow_engine.mechanisms.dppix import DEFAULT_BLOCK
from glow_engine.modelfile import LoadedModel

__all__ = ["DEFAULT_MECHANISMS", "DEFAULT_SETTINGS", "MECHANISMS", "Setting",
           "build_mechanism", "encode_group", "parse_mechanisms", "parse_settings"]

DEFAULT_SETTINGS = "inf-noclip,inf,1000,100,10"
# The evaluation's mechanism keys (DP-GLOW once per sensitivity mode) and their labels.
# dppix-m1 is DP-Pix calibrated to Fan's 1-pixel neighbourhood: a comparison, not local DP.
MECHANISMS = {**{f"dpglow-{mode}": f"{MECHANISM_TITLES['dpglow']} ({mode})"
                 for mode in DPGLOW_MODES},
              "idldp": MECHANISM_TITLES["idldp"], "dppix": MECHANISM_TITLES["dppix"],
              "dppix-m1": f"{MECHANISM_TITLES['dppix']} (m = 1, not local DP)"}
DEFAULT_MECHANISMS = ",".join(k for k in MECHANISMS if k != "dppix-m1")
NOCLIP = "-noclip"


@dataclass(frozen=True)
class Setting:
    """One privacy budget: e_px per pixel (total epsilon e_px * R * R) and whether to clip."""

    e_px: float
    clip: bool = True

    @property
    def key(self) -> str:
        return format_number(self.e_px) + ("" if self.clip else NOCLIP)

    @property
    def label(self) -> str:
        if math.isinf(self.e_px):
            return "∞ (no clip)" if not self.clip else "∞ (clip)"
        return format_number(self.e_px)

    @property
    def noisy(self) -> bool:
        return not math.isinf(self.e_px)


def _parse_one(token: str) -> Setting:
    text = token.strip().lower()
    clip = not text.endswith(NOCLIP)
    number = text.removesuffix(NOCLIP)
    try:
        e_px = float(number)
    except ValueError:
        raise UserError(f"cannot read the budget {token!r} (examples: inf-noclip, inf, 100)") \
            from None
    if math.isnan(e_px) or e_px <= 0:
        raise UserError(f"a per-pixel budget must be positive or inf, got {token!r}")
    if not clip and not math.isinf(e_px):
        raise UserError(f"{token!r}: only inf may skip the clip (without it a finite budget "
                        "has no privacy guarantee)")
    return Setting(e_px, clip)


def parse_settings(text: str) -> list[Setting]:
    """"inf-noclip,inf,1000,100,10" -> Settings, duplicates removed, order kept."""
    out: list[Setting] = []
    for token in text.split(","):
        if token.strip() and (s := _parse_one(token)) not in out:
            out.append(s)
    if not out:
        raise UserError("no privacy budgets given")
    return out


def parse_mechanisms(text: str) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown or not names:
        raise UserError(f"unknown mechanism(s) {', '.join(unknown) or '(none)'}; "
                        f"choose from {', '.join(MECHANISMS)}")
    return list(dict.fromkeys(names))


def build_mechanism(key: str, mixture: LoadedModel, alpha: float,
                    block: int = DEFAULT_BLOCK) -> Mechanism:
    if key == "idldp":
        return IDLDP(mixture.resolution)
    if key.startswith("dppix"):
        return DPPix(mixture.resolution, block, m=1 if key == "dppix-m1" else None)
    return DPGlow(mixture, alpha=alpha, mode=key.removeprefix("dpglow-"))


def encode_group(key: str, alpha: float, block: int = DEFAULT_BLOCK) -> str:
    """Mechanisms in one group encode identically (the clip box depends on alpha, not on the
    sensitivity mode; DP-Pix's block means not on the neighbourhood), so the evaluation
    encodes once per group."""
    if key.startswith("dppix"):
        return f"dppix-b{block}"
    return "idldp" if key == "idldp" else f"dpglow-alpha{alpha:g}"
