"""Pixel value scaling: to ``[0, 1]`` floats and back to 8- or 16-bit integers."""

from __future__ import annotations

import numpy as np


def minmax(arr: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant image becomes all zeros rather than dividing by zero."""
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float64)
    return (arr - lo) / (hi - lo)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255, round half to even, clipped; NaN becomes 0."""
    return _quantise(pixels, 255, np.uint8)


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..65535, round half to even, clipped; NaN becomes 0."""
    return _quantise(pixels, 65535, np.uint16)


def _quantise(pixels: np.ndarray, top: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    arr = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=0.0)
    return np.rint(np.clip(arr, 0.0, 1.0) * top).astype(dtype)  # np.rint rounds half to even
