"""One description per privacy mechanism, read by everything that names, builds or caches one.

A :class:`MechanismSpec` says what a mechanism is called (its registry name and its title),
what is chosen for it (its options, with defaults), whether it needs a model, the units of its
noise scale, what a release records as its mode (the ledger's and the risk card's), which
options its noise-free encoding depends on (the key under which the viewer and the evaluation
keep an encoding) and its label. The mechanism classes (glow_engine.mechanisms), the viewer's
PrivacyParams and caches, the evaluation's mechanism keys, the CLI and the viewer's labels all
read it. A new mechanism is a description here and a class registered under the same name; a
new option is one `Option` here, the keyword its class accepts and, unless it is
evaluation-only, a field of the same name in the viewer's PrivacyParams (which `chosen` reads).

Torch-free and Qt-free: the viewer's window reads it before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from glow_engine.choices import (
    DEFAULT_ALPHA,
    DEFAULT_BLOCK,
    DEFAULT_ESTIMATE,
    DEFAULT_MODE,
    DPGLOW_ESTIMATES,
    DPGLOW_MODES,
    dpglow_variant,
)
from glow_engine.errors import UserError

__all__ = ["MECHANISM_SPECS", "MechanismSpec", "Option", "spec_of", "title_of"]


@dataclass(frozen=True)
class Option:
    """One thing chosen for a mechanism: a keyword of its class (`create_mechanism`) and a
    field of the viewer's PrivacyParams of the same name."""

    name: str
    default: Any
    # Whether the noise-free encoding depends on it: two settings that differ only in options
    # that do not encode share one encoding (DP-GLOW's clip width does; its noise rule not).
    encodes: bool
    # An evaluation-only comparison setting: never offered by the viewer or the CLI.
    evaluation_only: bool = False
    choices: tuple = ()  # the values allowed, where there is a fixed list


@dataclass(frozen=True)
class MechanismSpec:
    name: str  # the registry key (glow_engine.mechanisms.create_mechanism)
    title: str  # the name people know it by
    options: tuple[Option, ...]
    needs_model: bool  # False: it works on pixels and needs only a resolution
    noise_units: str  # of its Laplace scale b (Mechanism.noise_scale)
    _mode: Callable[[Mapping[str, Any]], str]
    _label: Callable[[Mapping[str, Any]], str]

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option of this mechanism: the given value, or the default where it is
        missing or None. Keys of other mechanisms' options are ignored."""
        out = {}
        for option in self.options:
            value = given.get(option.name)
            out[option.name] = option.default if value is None else value
        return out

    def chosen(self, source: object) -> dict[str, Any]:
        """The options a user can choose, read from `source`'s attributes of the same names
        (the viewer's PrivacyParams)."""
        return {o.name: getattr(source, o.name) for o in self.options if not o.evaluation_only}

    def mode(self, options: Mapping[str, Any]) -> str:
        """The variant a release records (Mechanism.mode), "" where there is one."""
        return self._mode(self.resolve(options))

    def label(self, options: Mapping[str, Any]) -> str:
        """The title with the options that tell variants apart: "DP-GLOW (paper, α=0.4)"."""
        return self._label(self.resolve(options))

    def encoding_key(self, options: Mapping[str, Any]) -> str:
        """Equal for two settings exactly when their noise-free encodings are equal (e.g.
        "dpglow-alpha0.4"): a cache key for encodings, never shared across mechanisms."""
        resolved = self.resolve(options)
        return "-".join([self.name, *(f"{o.name}{_word(resolved[o.name])}"
                                      for o in self.options if o.encodes)])


def _word(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _dpglow_label(o: Mapping[str, Any]) -> str:
    """"DP-GLOW (paper, α=0.4)", "DP-GLOW (fitted box, posterior mean)": a fitted box has no
    alpha."""
    shape = "fitted box" if o["mode"] == "fitted" else f"{o['mode']}, α={float(o['alpha']):g}"
    return f"DP-GLOW ({shape}" + ("" if o["estimate"] == "plain" else ", posterior mean") + ")"


def _dppix_mode(o: Mapping[str, Any]) -> str:
    """"b8", or "b8-m1" for the m-neighbourhood comparison setting."""
    return f"b{o['block']}" + ("" if o["m"] is None else f"-m{o['m']}")


def _dppix_label(o: Mapping[str, Any]) -> str:
    if o["m"] is None:
        return f"DP-Pix (b={o['block']})"
    return f"DP-Pix (b={o['block']}, m={o['m']} neighbourhood, not local DP)"


MECHANISM_SPECS: dict[str, MechanismSpec] = {spec.name: spec for spec in (
    MechanismSpec(
        "dpglow", "DP-GLOW",
        (Option("alpha", DEFAULT_ALPHA, encodes=True),  # the clip box's width w = alpha * Delta
         Option("mode", DEFAULT_MODE, encodes=False, choices=DPGLOW_MODES),  # box and sensitivity
         # what is decoded from the noisy latent (post-processing, no privacy cost)
         Option("estimate", DEFAULT_ESTIMATE, encodes=False, choices=DPGLOW_ESTIMATES)),
        needs_model=True, noise_units="mean, latent units",
        _mode=lambda o: dpglow_variant(o["mode"], o["estimate"]),
        _label=_dpglow_label),
    MechanismSpec(
        "idldp", "ID-LDP", (), needs_model=False, noise_units="pixel units",
        _mode=lambda o: "", _label=lambda o: "ID-LDP"),
    MechanismSpec(
        "dppix", "DP-Pix",
        (Option("block", DEFAULT_BLOCK, encodes=True),  # the block means are the encoding
         # Fan's m-pixel neighbourhood: a comparison setting for the evaluation, not local DP
         Option("m", None, encodes=False, evaluation_only=True)),
        needs_model=False, noise_units="block means, pixel units",
        _mode=_dppix_mode, _label=_dppix_label),
)}


def spec_of(name: str) -> MechanismSpec:
    """The description of the mechanism registered as `name`; UserError for any other name,
    so that nothing unknown is ever treated as a known mechanism."""
    try:
        return MECHANISM_SPECS[name]
    except KeyError:
        raise UserError(f"unknown mechanism {name!r} (known: "
                        f"{', '.join(MECHANISM_SPECS)})") from None


def title_of(name: str) -> str:
    """The title of a mechanism as a record names it: the name itself where it has no
    description (a ledger row written by another version)."""
    spec = MECHANISM_SPECS.get(name)
    return name if spec is None else spec.title
