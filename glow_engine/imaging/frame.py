"""The square model frame: where an image of any aspect ratio sits in the ``size x size``
input of the model, and how to crop a model output back to the image.

The image is resized *preserving its aspect ratio* so that its **long side equals the model
resolution** (antialiased: box filter when shrinking, bicubic when enlarging, clipped to
``[0, 1]``), **centred**, and the remaining rows or columns are **padded with 0 (black)**;
nothing is cropped or stretched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Placement:
    """Where the resized image sits inside the square model frame."""

    scale: float  # frame pixels per original pixel
    top: int
    left: int
    height: int  # size of the resized image inside the frame
    width: int


def to_square(pixels: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """Aspect-preserving resize (long side -> ``size``), centred, black-padded to size x size."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D image, got shape {pixels.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = pixels.shape
    scale = size / max(h, w)
    new_h, new_w = _scaled_side(h, scale, size), _scaled_side(w, scale, size)
    resized = _resize(pixels.astype(np.float32, copy=False), new_h, new_w, scale)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top : top + new_h, left : left + new_w] = resized
    return frame, Placement(scale, top, left, new_h, new_w)


def _scaled_side(side: int, scale: float, size: int) -> int:
    return min(size, max(1, round(side * scale)))


def _resize(pixels: np.ndarray, new_h: int, new_w: int, scale: float) -> np.ndarray:
    """Antialiased resize in float: BOX averages when shrinking, BICUBIC when enlarging."""
    if (new_h, new_w) == pixels.shape:
        return np.clip(pixels, 0.0, 1.0)
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))  # mode "F"
    out = np.asarray(img.resize((new_w, new_h), resample=resample), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)  # bicubic overshoots at edges


def from_square(frame: np.ndarray, placement: Placement) -> np.ndarray:
    """Crop the padding off a model frame (leading axes such as channels are kept)."""
    frame = np.asarray(frame)
    p = placement
    if frame.ndim < 2 or frame.shape[-2] < p.top + p.height or frame.shape[-1] < p.left + p.width:
        raise ValueError(f"frame of shape {frame.shape} does not contain {placement}")
    return frame[..., p.top : p.top + p.height, p.left : p.left + p.width]
