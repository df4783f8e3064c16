"""Files that describe one pair of models (the validation scores, the risk card): each records
both models' sha256, and is used only with the models it records, so a user's own model never
shows another model's figures. Torch-free."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["load_for_models"]

T = TypeVar("T")


def load_for_models(path: str | Path | None, read: Callable[[Path], T],
                    recorded: Callable[[T], tuple[str, str]], mixture_sha256: str | None,
                    normal_sha256: str | None, what: str, log: logging.Logger) -> T | None:
    """`read(path)` if the file exists, reads and records these (mixture, normal) hashes, else
    None with the reason in `log`: no file, unreadable (OSError, ValueError), other models. A
    hash of None matches any model."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        log.info("no %s: %s does not exist", what, path)
        return None
    try:
        value = read(path)
    except (OSError, ValueError) as exc:
        log.warning("no %s: cannot read %s (%s)", what, path, exc)
        return None
    have = recorded(value)
    if any(want is not None and want != got
           for want, got in zip((mixture_sha256, normal_sha256), have, strict=True)):
        log.info("no %s: %s was made with other models (mixture %s, normal %s)", what, path,
                 have[0][:12], have[1][:12])
        return None
    return value
