"""The engine's refusals in the window's words: each command-line flag they name becomes the
window's box for the same choice (Qt-free)."""

from __future__ import annotations

import pytest

from app.core.option_words import (
    BURNED_IN_BOX,
    FORCE_BOX,
    LEDGER_BOXES,
    RAISE_BOX,
    in_window_words,
)
from glow_engine.errors import UserError
from glow_engine.release.deid import check_burned_in
from glow_engine.release.ledger import Ledger, Release


def _refusal(call) -> str:
    with pytest.raises(UserError) as caught:
        call()
    return str(caught.value)


def test_the_release_paths_refusals_name_the_windows_boxes(tmp_path) -> None:
    declared = _refusal(lambda: check_burned_in(True, True))
    unknown = _refusal(lambda: check_burned_in(None, True))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.set_patient_budget(10.0)
        over = _refusal(lambda: ledger.reserve(Release("a" * 64, "P1", "dpglow", "paper",
                                                       1.0, 100.0, "b" * 64, "x.png")))
        raising = _refusal(lambda: ledger.set_patient_budget(20.0))
    for message, box in ((declared, BURNED_IN_BOX), (unknown, BURNED_IN_BOX),
                         (over, FORCE_BOX)):
        said = in_window_words(message)
        assert "--" in message and "--" not in said, said
        assert f"“{box}”" in said
    said = in_window_words(raising, LEDGER_BOXES)
    assert "--force" not in said and f"“{RAISE_BOX}”" in said
    assert in_window_words("use --unknown-flag") == "use --unknown-flag"  # left as it is
    assert in_window_words("Use --force to go on").startswith(f"Tick “{FORCE_BOX}”")
