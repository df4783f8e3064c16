"""Finding the image files in a folder tree, before anything is decoded.

Only regular files are candidates: a named pipe (FIFO), device, socket, broken link or symlink
loop is skipped with a reason instead of being opened, because opening a FIFO blocks until
someone writes to it and a device such as /dev/zero never ends.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from glow_engine.imaging.dicom import is_dicom_like_name
from glow_engine.imaging.load import SUPPORTED_SUFFIXES


@dataclass
class Scan:
    """What a folder holds: image candidates, entries skipped (with why) and how many other
    files were not images."""

    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    other_files: int = 0


def find_images(root: str | Path) -> list[Path]:
    """All loadable-looking files under ``root`` (recursive, sorted); see :func:`scan_images`."""
    return scan_images(root).images


def scan_images(root: str | Path) -> Scan:
    """The image candidates under ``root`` (recursive, sorted) and what was skipped.

    Candidates are regular files with a supported suffix, plus files without a suffix (or
    with a numeric one, as in UID-named DICOM files) that start with the DICOM "DICM"
    preamble. Hidden files and folders are ignored, as is the DICOMDIR index (it has no
    image). Symbolic links to folders are not followed.
    """
    root = Path(root)
    scan = Scan()
    if not root.is_dir():
        _consider(root, scan)
        return scan

    def unreadable(error: OSError) -> None:
        scan.skipped.append((Path(error.filename or root), _reason(error)))

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # prune hidden folders
        for name in files:
            if not name.startswith("."):
                _consider(Path(folder) / name, scan)
    scan.images.sort()
    scan.skipped.sort()
    return scan


def _consider(path: Path, scan: Scan) -> None:
    try:
        mode = os.stat(path).st_mode  # follows links: a link to /dev/zero is a device
    except OSError as error:
        scan.skipped.append((path, _reason(error)))
        return
    if not stat.S_ISREG(mode):
        scan.skipped.append((path, f"not a regular file ({_kind(mode)}); not opened"))
    elif _is_candidate(path):
        scan.images.append(path)
    else:
        scan.other_files += 1


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a folder" if stat.S_ISDIR(mode) else "not a file"


def _reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    if error.errno == errno.ENOENT:
        return "not found (a broken link?)"
    return f"cannot be read ({error.strerror or error})"


def _is_candidate(path: Path) -> bool:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    if path.name.upper() == "DICOMDIR" or not is_dicom_like_name(path):
        return False
    return _has_dicm_preamble(path)


def _has_dicm_preamble(path: Path) -> bool:
    try:  # a regular file (checked by the caller): reading 132 bytes cannot block
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False  # unreadable: load_image will explain why if asked
    return head[128:132] == b"DICM"
