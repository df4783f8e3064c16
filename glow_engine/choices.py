"""The choices a user makes, named and defaulted once: the mechanisms' titles, DP-GLOW's
sensitivity modes and clip width, and the release file formats.

Torch-free and Qt-free, so the CLI, the reports and the viewer's window (which shows before
torch is loaded) all take their words from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_ALPHA", "DPGLOW_MODES", "MECHANISM_TITLES", "RELEASE_FORMATS",
           "ReleaseFormat"]

# Registry name (glow_engine.mechanisms) -> the name people know the mechanism by.
MECHANISM_TITLES = {"dpglow": "DP-GLOW", "idldp": "ID-LDP", "dppix": "DP-Pix"}

# DP-GLOW's sensitivity: S = Delta as published ("paper"), or S = w ("tight"; METHOD.md 3).
DPGLOW_MODES = ("paper", "tight")
DEFAULT_ALPHA = 0.4  # the clip width w = alpha * Delta of the paper


@dataclass(frozen=True)
class ReleaseFormat:
    suffix: str  # of the released file
    title: str  # what the viewer's export dialog offers


RELEASE_FORMATS = {
    "png": ReleaseFormat(".png", "PNG (8-bit)"),
    "dicom": ReleaseFormat(".dcm", "DICOM, de-identified (PS3.15 Annex E)"),
}
