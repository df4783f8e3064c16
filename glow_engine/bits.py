"""Nats to bits per pixel: the one conversion behind every bits/dim DP-GLOW reports.

Torch-free arithmetic that works on floats, NumPy arrays and torch tensors alike, so the flow,
the scorer and the torch-free score values share it.
"""

from __future__ import annotations

import math
from typing import TypeVar

T = TypeVar("T")

__all__ = ["bits_per_pixel"]


def bits_per_pixel(nats: T, num_pixels: int) -> T:
    """A log-probability of an image of ``num_pixels`` pixels (or a difference of two), in
    nats -> bits per pixel. Bits/dim is the negative of this for the 8-bit image's log p."""
    return nats / (num_pixels * math.log(2))  # type: ignore[operator]
