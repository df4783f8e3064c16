"""How loading an image fails: one :class:`ImageLoadError` whose message names the file and
gives a reason a user can act on, and the size limits every decoder checks before decoding."""

from __future__ import annotations

import os
from pathlib import Path

from glow_engine.errors import UserError

MIN_SIDE = 8


class ImageLoadError(UserError, ValueError):
    """An image could not be loaded; ``str()`` is a message fit to show to a user."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot open {self.path.name}: {reason}")


def describe(exc: BaseException, limit: int = 200) -> str:
    """One short line for a user: the exception type and its message with lines joined.

    Lines are joined because pydicom lists each decoder plugin's failure on its own line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(line if line.endswith(":") else f"{line};" for line in lines).rstrip(";")
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_size(path: Path, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageLoadError(
            path, f"image too large ({width}x{height} pixels, limit {max_pixels:,} pixels)"
        )
    if min(height, width) < MIN_SIDE:
        raise ImageLoadError(
            path, f"image too small ({width}x{height} pixels, need at least {MIN_SIDE} a side)"
        )
