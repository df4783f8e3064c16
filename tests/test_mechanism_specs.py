"""One description per mechanism: the classes, the evaluation's keys and the encodings' cache
keys all read it, and a name without a description is refused everywhere."""

from __future__ import annotations

import pytest
from helpers import with_fitted_box

from glow_engine.errors import UserError
from glow_engine.evaluation.settings import MECHANISMS, VARIANTS, build_mechanism, encode_group
from glow_engine.mechanism_specs import MECHANISM_SPECS, spec_of, title_of
from glow_engine.mechanisms import Mechanism, create_mechanism
from glow_engine.modelfile import LoadedModel


def test_every_registered_mechanism_is_described_and_vice_versa() -> None:
    assert set(Mechanism.registry) == set(MECHANISM_SPECS)
    assert [s.title for s in MECHANISM_SPECS.values()] == ["DP-GLOW", "ID-LDP", "DP-Pix"]
    assert title_of("dppix") == "DP-Pix" and title_of("from-a-newer-version") == \
        "from-a-newer-version"
    with pytest.raises(UserError, match="unknown mechanism 'dp-glow'"):
        spec_of("dp-glow")


@pytest.mark.parametrize("options", [{}, {"alpha": 0.25, "mode": "tight", "block": 4}])
def test_the_classes_take_defaults_label_and_mode_from_the_description(
        tiny_model: LoadedModel, options: dict) -> None:
    for name, spec in MECHANISM_SPECS.items():
        mech = create_mechanism(name, tiny_model, **options)
        assert (mech.title, mech.label, mech.mode) == (
            spec.title, spec.label(options), spec.mode(options))
    assert spec_of("dpglow").label({}) == "DP-GLOW (fitted box, posterior mean)"
    assert spec_of("dpglow").mode({}) == "fitted-posterior"
    assert spec_of("dpglow").label({"mode": "paper", "estimate": "plain"}) == \
        "DP-GLOW (paper, α=0.4)"
    assert spec_of("dppix").mode({"block": 4, "m": 1}) == "b4-m1"


def test_encoding_keys_follow_only_the_options_that_encode() -> None:
    dpglow, dppix = spec_of("dpglow"), spec_of("dppix")
    assert dpglow.encoding_key({"mode": "paper"}) == dpglow.encoding_key({"mode": "tight"})
    assert dpglow.encoding_key({"alpha": 0.4}) != dpglow.encoding_key({"alpha": 0.5})
    assert dppix.encoding_key({"block": 4}) == dppix.encoding_key({"block": 4, "m": 1})
    keys = {spec.encoding_key({}) for spec in MECHANISM_SPECS.values()}
    assert len(keys) == len(MECHANISM_SPECS)  # never shared across mechanisms


def test_the_evaluation_keys_are_described_and_an_unknown_one_is_refused(
        tiny_model: LoadedModel) -> None:
    """encode_group once took any unknown name for DP-GLOW, so a new mechanism would have been
    handed DP-GLOW's cached encoding."""
    assert set(MECHANISMS) == set(VARIANTS)
    boxed = with_fitted_box(tiny_model)  # dpglow-fitted needs a model with a fitted box
    for key, (name, _) in VARIANTS.items():
        assert build_mechanism(key, boxed, 0.4, 4).name == name
        assert encode_group(key, 0.4, 4).startswith(name)
    assert MECHANISMS["dpglow-tight"] == "DP-GLOW (tight)"
    for unknown in ("dpglow", "fourth-mechanism", ""):
        with pytest.raises(UserError, match="unknown mechanism"):
            encode_group(unknown, 0.4, 4)
        with pytest.raises(UserError, match="unknown mechanism"):
            build_mechanism(unknown, tiny_model, 0.4, 4)
