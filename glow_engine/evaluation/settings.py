"""What the evaluation runs: privacy budgets (per-pixel e_px, with or without the clip) and
mechanisms, named the way the CLI takes them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from glow_engine.budget import BudgetError, format_number, parse_e_px
from glow_engine.choices import DEFAULT_BLOCK, DPGLOW_MODES
from glow_engine.errors import UserError
from glow_engine.mechanism_specs import spec_of
from glow_engine.mechanisms import Mechanism, create_mechanism
from glow_engine.modelfile import LoadedModel

__all__ = ["DEFAULT_MECHANISMS", "DEFAULT_SETTINGS", "MECHANISMS", "Setting",
           "build_mechanism", "encode_group", "parse_mechanisms", "parse_settings"]

DEFAULT_SETTINGS = "inf-noclip,inf,1000,100,10"
# The evaluation's mechanism keys: a registered mechanism (glow_engine.mechanism_specs) with
# the options that set the variant apart (DP-GLOW once per sensitivity mode), and the label
# the tables and plots give it. dppix-m1 is DP-Pix calibrated to Fan's 1-pixel neighbourhood:
# a comparison, not local DP.
# dpglow-MODE decodes the released latent as published; dpglow-MODE-posterior decodes the
# posterior mean of the original latent given it (post-processing, the same release).
VARIANTS: dict[str, tuple[str, dict]] = {
    **{f"dpglow-{mode}": ("dpglow", {"mode": mode, "estimate": "plain"})
       for mode in DPGLOW_MODES},
    **{f"dpglow-{mode}-posterior": ("dpglow", {"mode": mode, "estimate": "posterior-mean"})
       for mode in DPGLOW_MODES},
    "idldp": ("idldp", {}), "dppix": ("dppix", {}), "dppix-m1": ("dppix", {"m": 1})}
_SUFFIXES = {**{f"dpglow-{mode}": f" ({mode})" for mode in DPGLOW_MODES},
             **{f"dpglow-{mode}-posterior": f" ({mode}, posterior mean)"
                for mode in DPGLOW_MODES},
             "dppix-m1": " (m = 1, not local DP)"}
MECHANISMS = {key: spec_of(name).title + _SUFFIXES.get(key, "")
              for key, (name, _) in VARIANTS.items()}
# The published DP-GLOW (paper mode, the earlier default), the tight calibration, the fitted
# box decoded as released and with the posterior mean (the default; it needs a model with
# fitted boxes, `dpglow fit-box`) and the baselines.
DEFAULT_MECHANISMS = "dpglow-paper,dpglow-tight,dpglow-fitted,dpglow-fitted-posterior,idldp,dppix"
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
        e_px = parse_e_px(number)
    except BudgetError as exc:
        raise UserError(f"cannot read the budget {token!r}: {exc} (examples: inf-noclip, "
                        "inf, 100)") from None
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


def _variant(key: str, alpha: float, block: int) -> tuple[str, dict]:
    """The registered mechanism of an evaluation key and every option it is built with;
    UserError for an unknown key."""
    if key not in VARIANTS:
        raise UserError(f"unknown mechanism {key!r}; choose from {', '.join(VARIANTS)}")
    name, fixed = VARIANTS[key]
    return name, spec_of(name).resolve({"alpha": alpha, "block": block, **fixed})


def build_mechanism(key: str, mixture: LoadedModel, alpha: float,
                    block: int = DEFAULT_BLOCK) -> Mechanism:
    name, options = _variant(key, alpha, block)
    return create_mechanism(name, mixture, **options)


def encode_group(key: str, alpha: float, block: int = DEFAULT_BLOCK) -> str:
    """Mechanisms in one group encode identically (MechanismSpec.encoding_key: the clip box
    depends on alpha, not on the sensitivity mode; DP-Pix's block means not on the
    neighbourhood), so the evaluation encodes once per group."""
    name, options = _variant(key, alpha, block)
    return spec_of(name).encoding_key(options)
