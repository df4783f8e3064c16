"""Finding the image files in a folder tree, before anything is decoded."""

from __future__ import annotations

import os
from pathlib import Path

from glow_engine.imaging.dicom import is_dicom_like_name
from glow_engine.imaging.load import SUPPORTED_SUFFIXES


def find_images(root: str | Path) -> list[Path]:
    """All loadable-looking files under ``root`` (recursive, sorted).

    Files with a supported suffix, plus files without a suffix (or with a numeric one, as in
    UID-named DICOM files) that start with the DICOM "DICM" preamble. Hidden files and folders
    are skipped, as is the DICOMDIR index (it has no image).
    """
    root = Path(root)
    if root.is_file():
        return [root] if _is_candidate(root) else []
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and _is_candidate(path):
                found.append(path)
    return sorted(found)


def _is_candidate(path: Path) -> bool:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    if path.name.upper() == "DICOMDIR" or not is_dicom_like_name(path):
        return False
    return _has_dicm_preamble(path)


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False  # unreadable: load_image will explain why if asked
    return head[128:132] == b"DICM"
