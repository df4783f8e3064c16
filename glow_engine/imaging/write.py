"""Writing a ``[0, 1]`` grayscale image as an 8- or 16-bit PNG, atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from glow_engine.atomic import write_bytes_atomic
from glow_engine.imaging.pixels import to_uint8, to_uint16


def save_png(
    pixels: np.ndarray, path: str | Path, *, bits: int = 8, overwrite: bool = False
) -> None:
    """Write a [0, 1] grayscale image as an 8- or 16-bit PNG, atomically.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    quantised = to_uint8(arr) if bits == 8 else to_uint16(arr)
    buffer = io.BytesIO()
    Image.fromarray(quantised).save(buffer, format="PNG")  # mode "L" or "I;16"
    write_bytes_atomic(path, buffer.getvalue(), overwrite=overwrite)
