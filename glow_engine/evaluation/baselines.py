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
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, features

from glow_engine.data import ImageSet
from glow_engine.evaluation.metrics import auc_with_ci

__all__ = ["COMPRESSORS", "compressor_aucs", "compressor_bpp", "view_auc"]


def _png(image: Image.Image, out: io.BytesIO) -> None:
    image.save(out, format="PNG", compress_level=9)


def _jpeg2000(image: Image.Image, out: io.BytesIO) -> None:
    image.save(out, format="JPEG2000", irreversible=False)  # lossless


# name -> (title, writer); JPEG 2000 only where Pillow was built with OpenJPEG (its wheels are)
COMPRESSORS: dict[str, tuple[str, Callable[[Image.Image, io.BytesIO], None]]] = {
    "png": ("PNG", _png),
    **({"jpeg2000": ("JPEG 2000", _jpeg2000)} if features.check("jpg_2000") else {}),
}


def compressor_bpp(pixels: np.ndarray, name: str) -> np.ndarray:
    """Bits per pixel of each (R, R) [0, 1] image, 8-bit, losslessly coded by `name`."""
    write = COMPRESSORS[name][1]
    u8 = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    out = np.empty(len(u8))
    for i, img in enumerate(u8):
        buf = io.BytesIO()
        write(Image.fromarray(img), buf)
        out[i] = 8 * buf.tell() / img.size
    return out


def compressor_aucs(pixels: np.ndarray, data: ImageSet, n_boot: int, seed: int) -> dict:
    """{compressor: {"all": AUC dict, "pa": AUC dict on PA views, "bpp_mean"}}."""
    pa = data.views == "PA"
    out = {}
    for name in COMPRESSORS:
        bpp = compressor_bpp(pixels, name)
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
