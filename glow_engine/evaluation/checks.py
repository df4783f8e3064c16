"""The paper's section 4.2 checks, measured: does a block marker survive privatisation, and can
a left-right flip (simulated situs inversus) still be told apart?

Marker: two ratios per image.
  * ``contrast_kept``  = C(privatised marked) / C(original marked), C = marker_contrast. Simple,
    but anatomy under the marker keeps some contrast even when the marker is gone.
  * ``marker_kept`` = [C(priv marked) - C(priv plain)] / [C(orig marked) - C(orig plain)]: the
    *added* contrast only. The plain and marked images are privatised with the same noise
    draw, so the difference isolates what the marker changed (0 = erased, 1 = intact).

Flip: an attacker holding the original x decides whether a privatised image came from x or
from its mirror image by which of the two it correlates with better (pixel attacker features).
Accuracy over the privatised plain and the privatised flipped images: 0.5 = chance.
"""

from __future__ import annotations

import math

import numpy as np

from glow_engine.evaluation.reid import pixel_features
from glow_engine.overlays import BlockMarker, apply_overlays, marker_contrast

__all__ = ["flip_check", "flipped", "marked", "marker_check"]


def marked(pixels: np.ndarray, marker: BlockMarker) -> np.ndarray:
    return np.stack([apply_overlays(p, [marker]) for p in pixels])


def flipped(pixels: np.ndarray) -> np.ndarray:
    return np.stack([apply_overlays(p, flip=True) for p in pixels])


def _ratio(num: float, den: float) -> float:
    return num / den if abs(den) > 1e-6 else math.nan


def marker_check(orig_plain: np.ndarray, orig_marked: np.ndarray, priv_plain: np.ndarray,
                 priv_marked: np.ndarray, marker: BlockMarker) -> dict:
    """Per-image contrast ratios (see module doc), their mean and median."""
    c = [[marker_contrast(img, marker) for img in stack]
         for stack in (orig_plain, orig_marked, priv_plain, priv_marked)]
    op, om, pp, pm = (np.array(v) for v in c)
    kept = np.array([_ratio(a, b) for a, b in zip(pm, om, strict=True)])
    added = np.array([_ratio(a, b) for a, b in zip(pm - pp, om - op, strict=True)])
    return {"contrast_kept_mean": _nanmean(kept), "contrast_kept_median": _nanmedian(kept),
            "marker_kept_mean": _nanmean(added), "marker_kept_median": _nanmedian(added),
            "images": len(kept), "per_image_marker_kept": added.tolist()}


def flip_check(originals: np.ndarray, priv_plain: np.ndarray, priv_flipped: np.ndarray) -> dict:
    """Accuracy of the 'which orientation does it match better' detector."""
    f_orig, f_mirror = pixel_features(originals), pixel_features(flipped(originals))

    def prefers_mirror(priv: np.ndarray) -> np.ndarray:
        q = pixel_features(priv)
        return (q * f_mirror).sum(1) > (q * f_orig).sum(1)

    detected = prefers_mirror(priv_flipped)
    false_alarm = prefers_mirror(priv_plain)
    accuracy = (detected.sum() + (~false_alarm).sum()) / (len(detected) + len(false_alarm))
    return {"accuracy": float(accuracy), "flipped_detected": float(detected.mean()),
            "plain_called_flipped": float(false_alarm.mean()), "images": len(detected)}


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _nanmedian(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan
