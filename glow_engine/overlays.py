"""Re-identification features added on purpose (paper section 4.2): block markers and a flip.

Shared by the desktop viewer (one click each) and `dpglow evaluate` (marker and flip checks).
Pure NumPy: no torch, no Qt.

Conventions
    Images are float (H, W) arrays in [0, 1]. A :class:`BlockMarker` is a filled square whose
    *centre* (``row``, ``col``) is given as a fraction of the image height and width and whose
    side (``size``) is a fraction of the image's **long** side. With these units a marker placed
    on a 1024x1024 original lands on the same anatomy in the 256x256 model frame, and for a
    non-square original :func:`marker_in_frame` maps it through the frame's
    :class:`~glow_engine.imaging.frame.Placement` (the side stays the same fraction, because
    ``to_square`` maps the long side onto the frame side).

Order of operations in :func:`apply_overlays`
    The flip (left-right mirror, a simulated situs inversus) is applied **first**, then the
    markers. Markers are therefore positioned in the coordinates of the image the user sees
    (already flipped), which is what someone clicking on the displayed image expects; a marker
    is never mirrored along with the anatomy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from glow_engine.imaging.frame import Placement

__all__ = [
    "BlockMarker",
    "apply_overlays",
    "contrast_kept",
    "marker_contrast",
    "marker_in_frame",
    "marker_mask",
    "similarity",
]


@dataclass(frozen=True)
class BlockMarker:
    """A filled square of constant ``intensity`` (0 = black, 1 = white), centred at
    (``row``, ``col``) in fractions of height/width, side ``size`` x the long side."""

    row: float
    col: float
    size: float
    intensity: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.row <= 1.0 and 0.0 <= self.col <= 1.0):
            raise ValueError(f"marker centre must lie in the image, got ({self.row}, {self.col})")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"marker size must be in (0, 1], got {self.size}")
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"marker intensity must be in [0, 1], got {self.intensity}")


def _square(shape: tuple[int, int], row: float, col: float, side: int) -> tuple[slice, slice]:
    """Pixel slices of a side x side square centred at fractional (row, col), clipped."""
    h, w = shape
    top = round(row * h - side / 2)
    left = round(col * w - side / 2)
    return (slice(max(top, 0), max(min(top + side, h), 0)),
            slice(max(left, 0), max(min(left + side, w), 0)))


def _side_px(shape: tuple[int, int], size: float) -> int:
    return max(1, round(size * max(shape)))


def marker_mask(shape: tuple[int, int], marker: BlockMarker) -> np.ndarray:
    """Boolean (H, W) mask of the pixels the marker covers."""
    mask = np.zeros(shape, dtype=bool)
    mask[_square(shape, marker.row, marker.col, _side_px(shape, marker.size))] = True
    return mask


def _ring_mask(shape: tuple[int, int], marker: BlockMarker) -> np.ndarray:
    """The band around the marker whose area equals the marker's (outer side = side * sqrt 2),
    clipped at the image border."""
    side = _side_px(shape, marker.size)
    outer = max(side + 2, round(side * math.sqrt(2)))  # at least one pixel wide
    ring = np.zeros(shape, dtype=bool)
    ring[_square(shape, marker.row, marker.col, outer)] = True
    return ring & ~marker_mask(shape, marker)


def apply_overlays(pixels: np.ndarray, markers: Sequence[BlockMarker] = (),
                   flip: bool = False) -> np.ndarray:
    """A new float32 image: left-right flipped if ``flip``, then every marker painted on."""
    out = np.array(pixels, dtype=np.float32, copy=True)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {out.shape}")
    if flip:
        out = np.ascontiguousarray(out[:, ::-1])
    for m in markers:
        out[marker_mask(out.shape, m)] = m.intensity
    return out


def marker_contrast(pixels: np.ndarray, marker: BlockMarker) -> float:
    """Mean inside the marker minus mean of the surrounding ring of equal area
    (0.0 when the ring is empty, i.e. the marker covers the whole image)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    ring = _ring_mask(pixels.shape, marker)
    if not ring.any():
        return 0.0
    return float(pixels[marker_mask(pixels.shape, marker)].mean() - pixels[ring].mean())


def contrast_kept(original_with_marker: np.ndarray, privatised: np.ndarray,
                  marker: BlockMarker) -> float:
    """Marker-region contrast after / before privatisation (1 = intact, 0 = gone).

    NaN when the marker had no contrast to begin with. The ratio can exceed 1 or go negative
    when noise happens to brighten the square or its ring.
    """
    before = marker_contrast(original_with_marker, marker)
    if abs(before) < 1e-6:
        return math.nan
    return marker_contrast(privatised, marker) / before


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images' pixels (0.0 when either is constant)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {np.shape(a)} vs {np.shape(b)}")
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denom if denom > 0 else 0.0


def marker_in_frame(marker: BlockMarker, placement: Placement, frame_size: int) -> BlockMarker:
    """The same marker in the square model frame that imaging.frame.to_square produced.

    ``size`` is a fraction of the long side, which to_square maps onto the frame side, so only
    the centre moves (into the rectangle the image occupies inside the padding).
    """
    p = placement
    return BlockMarker(row=(p.top + marker.row * p.height) / frame_size,
                       col=(p.left + marker.col * p.width) / frame_size,
                       size=marker.size, intensity=marker.intensity)
