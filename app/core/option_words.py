"""The window's names for the release options, and the engine's messages in the window's
words. Qt-free.

The release path (glow_engine.release) is shared with `dpglow`, so its refusals tell the
command-line user which flag overrides them ("use --force to release anyway"). In the window
the same choice is a box: every message the window shows names the box instead, with the
same label the export dialog and the batch window give it.
"""

from __future__ import annotations

import re

BURNED_IN_BOX = "Release anyway: I have checked the pixels for burned-in text"
FORCE_BOX = "Release past the per-patient budget (recorded as forced)"
# Images without a patient ID are released only on this confirmation (the batch window; the
# export says it of its one image): the per-patient budget then counts each for itself.
ONE_PATIENT_BOX = "Count each image without a patient ID as a patient of its own"
ONE_IMAGE_BOX = "Count this image as a patient of its own (no other image of them is released)"
# The ledger window's override for raising or clearing the per-patient budget.
RAISE_BOX = "Allow raising or clearing it (recorded in the ledger's budget history)"

# Flag -> the box that makes the same choice, where releases are made (export, batch window).
RELEASE_BOXES = {"--allow-burned-in": BURNED_IN_BOX, "--allow-unknown-burned-in": BURNED_IN_BOX,
                 "--force": FORCE_BOX}
# Where the per-patient budget is set (the ledger window).
LEDGER_BOXES = {"--force": RAISE_BOX}

_USE_FLAG = re.compile(r"\b([Uu])se (--[a-z][a-z-]*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def in_window_words(message: str, boxes: dict[str, str] = RELEASE_BOXES) -> str:
    """`message` with "use --flag" said as "tick “box”" and any other flag named by its box
    ("needs --force" -> "needs “…”"); a flag without a box is left as it is."""
    def use(match: re.Match) -> str:
        box = boxes.get(match.group(2))
        if box is None:
            return match.group(0)
        return f"{'T' if match.group(1) == 'U' else 't'}ick “{box}”"

    said = _USE_FLAG.sub(use, message)
    return _FLAG.sub(lambda m: f"“{boxes[m.group(0)]}”" if m.group(0) in boxes
                     else m.group(0), said)
