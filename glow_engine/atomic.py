"""Writing a file atomically: the one way DP-GLOW puts a file on disk.

The content goes to a temporary file in the destination's folder (same filesystem, so the
move is atomic), is flushed to disk, and is then moved into place. A reader, or a crash, never
sees a half-written file, and the temporary file is removed when anything fails. An existing
file is replaced only with ``overwrite=True``; without it a file that appears while we write
is not clobbered either.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic", "write_bytes_atomic", "write_text_atomic"]


def write_atomic(path: str | Path, write: Callable[[Path], object], *,
                 overwrite: bool = False) -> None:
    """Let ``write(tmp)`` fill a temporary file (for writers that want a file name, such as
    safetensors), then fsync it and move it to ``path``.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    os.close(os.open(tmp, flags, 0o666))  # 0o666 & umask: the permissions of a normal new file
    try:
        write(tmp)
        _fsync(tmp)
        _move_into_place(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows fsyncs writable fds only
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and fails if path exists: no check-then-replace race
    except FileExistsError:
        raise FileExistsError(f"{path} already exists") from None
    except OSError:  # filesystem without hard links: best effort
        if path.exists():
            raise FileExistsError(f"{path} already exists") from None
        os.replace(tmp, path)
