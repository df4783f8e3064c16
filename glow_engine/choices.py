"""The choices a user makes, named and defaulted once: the mechanisms' titles, DP-GLOW's
sensitivity modes and clip width, DP-Pix's block size, and the release file formats.

Torch-free and Qt-free, so the CLI, the reports and the viewer's window (which shows before
torch is loaded) all take their words from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_ALPHA", "DEFAULT_BLOCK", "DPGLOW_MODES", "MECHANISM_TITLES",
           "RELEASE_FORMATS", "ReleaseFormat", "dppix_mode"]

# Registry name (glow_engine.mechanisms) -> the name people know the mechanism by.
MECHANISM_TITLES = {"dpglow": "DP-GLOW", "idldp": "ID-LDP", "dppix": "DP-Pix"}

# DP-GLOW's sensitivity: S = Delta as published ("paper"), or S = w ("tight"; METHOD.md 3).
DPGLOW_MODES = ("paper", "tight")
DEFAULT_ALPHA = 0.4  # the clip width w = alpha * Delta of the paper
DEFAULT_BLOCK = 8  # DP-Pix's block side b in pixels: Fan's and PriCheXy-Net's choice


def dppix_mode(block: int, m: int | None = None) -> str:
    """DP-Pix's variant as a release records it (Mechanism.mode): "b8", or "b8-m1" for the
    m-neighbourhood comparison setting."""
    return f"b{block}" + ("" if m is None else f"-m{m}")


@dataclass(frozen=True)
class ReleaseFormat:
    suffix: str  # of the released file
    title: str  # what the viewer's export dialog offers


RELEASE_FORMATS = {
    "png": ReleaseFormat(".png", "PNG (8-bit)"),
    "dicom": ReleaseFormat(".dcm", "DICOM, de-identified (PS3.15 Annex E)"),
}
