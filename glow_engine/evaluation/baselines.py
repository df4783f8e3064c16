"""Baselines that keep an AUC honest: what picture complexity and the view alone achieve.

* *Compressors*: the bits per pixel a lossless coder needs for the 8-bit image (PNG, and JPEG
  2000 in its reversible 5/3 wavelet mode, via Pillow's OpenJPEG), higher = abnormal, the
  direction of the flow's bits/dim. A score that does not beat these measures how complex a
  picture is (devices, exposure, noise), not pneumonia. Measured on the originals and on every
  privatised set.
* *View*: the AP/PA label itself as the score. In the NIH subset AP is far more common among
  normals, so a score that detected the view would look useful. The direction is taken from the
  evaluated set (the view more frequent among its abnormal images): the best a view-only rule
  can do there, an upper bound. It does not depend on the mechanism: reported once.
* *Complexity-corrected* flow scores (Serrà et al., ICLR 2020): bits/dim under a flow minus the
  PNG bits per pixel of the same image, i.e. how much worse the flow codes the picture than a
  generic compressor. It removes what the compressor already explains; if the AUC falls with
  it, the flow's score was mostly picture complexity. Reported on the originals.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, features

from glow_engine.data import ImageSet
from glow_engine.evaluation.metrics import auc_with_ci
from glow_engine.imaging.pixels import to_uint8
from glow_engine.ood import png_bits_per_pixel

__all__ = ["COMPRESSORS", "complexity_corrected_aucs", "compressor_aucs",
           "jpeg2000_bits_per_pixel", "view_auc"]


def jpeg2000_bits_per_pixel(pixels: np.ndarray) -> np.ndarray:
    """(B, H, W) [0, 1] -> the lossless JPEG 2000 size of each 8-bit image in bits per pixel
    (the PNG twin is the out-of-distribution check's, glow_engine.ood)."""
    out = []
    for p in to_uint8(pixels):
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, format="JPEG2000", irreversible=False)
        out.append(8 * buf.tell() / p.size)
    return np.asarray(out)


# name -> bits per pixel; JPEG 2000 only where Pillow was built with OpenJPEG (its wheels are)
COMPRESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "png": png_bits_per_pixel,
    **({"jpeg2000": jpeg2000_bits_per_pixel} if features.check("jpg_2000") else {}),
}


def compressor_aucs(pixels: np.ndarray, data: ImageSet, n_boot: int, seed: int) -> dict:
    """{compressor: {"all": AUC dict, "pa": AUC dict on PA views, "bpp_mean"}}."""
    pa = data.views == "PA"
    out = {}
    for name in COMPRESSORS:
        bpp = COMPRESSORS[name](pixels)
        out[name] = {
            "all": auc_with_ci(bpp, data.labels, data.patient_ids, n_boot, seed).to_dict(),
            "pa": auc_with_ci(bpp[pa], data.labels[pa], data.patient_ids[pa], n_boot,
                              seed).to_dict(),
            "bpp_mean": float(bpp.mean())}
    return out


def view_auc(data: ImageSet, n_boot: int, seed: int) -> dict:
    """AUC of "the image is the view more common among abnormals" (see module doc)."""
    labels, views = data.labels, data.views

    def excess(view: str) -> float:  # how much more often abnormals have this view
        if not ((labels == 0).any() and (labels == 1).any()):
            return 0.0
        return float(np.mean(views[labels == 1] == view) - np.mean(views[labels == 0] == view))

    abnormal_view = "AP" if excess("AP") > excess("PA") else "PA"
    score = (views == abnormal_view).astype(np.float64)
    result = auc_with_ci(score, labels, data.patient_ids, n_boot, seed).to_dict()
    return result | {"abnormal_view": abnormal_view}


def complexity_corrected_aucs(bpd: dict[str, np.ndarray], pixels: np.ndarray, data: ImageSet,
                              n_boot: int, seed: int) -> dict:
    """{score name: AUC dict} of each flow's bits/dim minus the PNG bits per pixel."""
    png = png_bits_per_pixel(pixels)
    return {name: auc_with_ci(np.asarray(b) - png, data.labels, data.patient_ids, n_boot,
                              seed).to_dict() for name, b in bpd.items()}
