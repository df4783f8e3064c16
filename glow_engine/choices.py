"""The choices a user makes, named and defaulted once: DP-GLOW's sensitivity modes and clip
width, DP-Pix's block size (each mechanism's options: glow_engine.mechanism_specs), and the
release file formats.

Torch-free and Qt-free, so the CLI, the reports and the viewer's window (which shows before
torch is loaded) all take their words from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_ALPHA", "DEFAULT_BLOCK", "DEFAULT_ESTIMATE", "DEFAULT_MODE", "DPGLOW_ESTIMATES",
           "DPGLOW_MODES", "RELEASE_FORMATS", "ReleaseFormat", "dpglow_variant"]

# DP-GLOW's box and sensitivity: the published box with S = Delta as published ("paper") or
# S = w ("tight"), or the model's box fitted per budget with S = w ("fitted"; docs/method.md).
DPGLOW_MODES = ("paper", "tight", "fitted")
# The fitted box: on the training split it never lost to the published default (paper, alpha
# 0.4) on PSNR, SSIM or the anomaly AUC at any budget (docs/evaluation.md, "Decisions").
DEFAULT_MODE = "fitted"
DEFAULT_ALPHA = 0.4  # the clip width w = alpha * Delta of the paper
# What DP-GLOW decodes: the released latent as published ("plain"), or the posterior mean of
# the original latent given it (mechanisms/posterior.py; post-processing, no privacy cost).
DPGLOW_ESTIMATES = ("plain", "posterior-mean")
# With the fitted box the posterior mean never lost to the released latent on training images
# judged by boxes fitted without their patients, and gained 0.3-3.3 dB from e_px 100 up; below,
# the rule decodes the released latent anyway (docs/evaluation.md, "Decisions").
DEFAULT_ESTIMATE = "posterior-mean"


def dpglow_variant(mode: str, estimate: str) -> str:
    """What a DP-GLOW release records as its mode (the ledger's, the risk card's and the
    validation references' key): the sensitivity rule, "-posterior" added for the posterior
    decode, whose figures are its own."""
    return mode if estimate == "plain" else f"{mode}-posterior"
DEFAULT_BLOCK = 8  # DP-Pix's block side b in pixels: Fan's and PriCheXy-Net's choice


@dataclass(frozen=True)
class ReleaseFormat:
    suffix: str  # of the released file
    title: str  # what the viewer's export dialog offers


RELEASE_FORMATS = {
    "png": ReleaseFormat(".png", "PNG (8-bit)"),
    "dicom": ReleaseFormat(".dcm", "DICOM, de-identified (PS3.15 Annex E)"),
}
