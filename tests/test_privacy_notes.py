"""Help > Privacy notes is written for the privacy officer and the radiologist: the part the
window shows names the window's controls and holds none of the engineering notes (those
stay in docs/privacy.md, after the developers' marker)."""

from __future__ import annotations

import re

from app.core.option_words import BURNED_IN_BOX, FORCE_BOX
from glow_engine.resources import USER_DOCUMENTS, document_path, user_text


def test_the_privacy_notes_speak_to_the_officer_and_the_radiologist() -> None:
    path = document_path(USER_DOCUMENTS["Privacy notes"])
    shown = user_text(path)
    assert "## For the privacy officer" in shown and "## For the radiologist" in shown
    for word in ("torchrun", "WAL", "BEGIN IMMEDIATE", "SQLite", "HMAC", "os.urandom",
                 "PRAGMA", "rank"):
        assert word not in shown, word
    assert not re.search(r"(?<![\w-])--[a-z]", shown)  # no command-line flag
    flat = " ".join(shown.split())  # the labels as the window writes them, lines joined
    assert BURNED_IN_BOX in flat and FORCE_BOX in flat
    assert "DPGLOW_LEDGER" in shown  # a shared ledger for a workstation
    whole = path.read_text(encoding="utf-8")
    assert "torchrun" in whole  # the engineering notes are kept, for developers
