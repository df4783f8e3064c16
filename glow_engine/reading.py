"""The one guarded way to read a file the program did not write: images, CSV lists, model
files, ledgers and their key files, PACS node files.

A path is opened without blocking and checked before anything is read: only a regular file
of at most the caller's size cap is read. A named pipe would block for ever (even one named
`weights.safetensors`), a device such as /dev/zero never ends, and a file of many gigabytes
would exhaust memory; each is one clear `ReadError` instead.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from glow_engine.errors import UserError

MiB = 1 << 20
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class ReadError(UserError, OSError):
    """A file that is not read; `reason` says why in words a user can act on. An OSError too,
    so every caller that already handles a file it cannot read handles this one."""

    def __init__(self, path: Path, what: str, reason: str) -> None:
        self.path, self.what, self.reason = path, what, reason
        super().__init__(f"cannot read the {what} {path}: {reason}")


def read_bytes(path: str | os.PathLike[str], *, what: str, limit: int) -> bytes:
    """The whole of `path` if it is a regular file of at most `limit` bytes."""
    path = Path(path)
    fd = _open(path, what, limit)
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise ReadError(path, what, exc.strerror or str(exc)) from None
    if len(data) > limit:  # it grew while we read
        raise ReadError(path, what, f"it is larger than {_size(limit)}")
    return data


def read_text(path: str | os.PathLike[str], *, what: str, limit: int,
              encoding: str = "utf-8") -> str:
    data = read_bytes(path, what=what, limit=limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise ReadError(Path(path), what, "it is not text (UTF-8)") from None


def check_file(path: str | os.PathLike[str], *, what: str, limit: int | None = None) -> None:
    """That `path` is a regular file (of at most `limit` bytes) before a library that takes a
    file name (SQLite, safetensors) opens it."""
    os.close(_open(Path(path), what, limit))


def _open(path: Path, what: str, limit: int | None) -> int:
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        raise ReadError(path, what, _open_failure(exc)) from None
    except ValueError:  # an embedded NUL
        raise ReadError(path, what, "the name holds a NUL character") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ReadError(path, what, "it is a folder, not a file" if stat.S_ISDIR(info.st_mode)
                        else "it is not a regular file (a named pipe, device or socket); "
                        "nothing was read")
    if limit is not None and info.st_size > limit:
        os.close(fd)
        raise ReadError(path, what, f"it is larger than {_size(limit)}")
    return fd


def _size(limit: int) -> str:
    return f"{limit // MiB:,} MiB" if limit >= MiB else f"{limit:,} bytes"


def _open_failure(exc: OSError) -> str:
    reasons = {errno.ENOENT: "file not found", errno.EISDIR: "it is a folder, not a file",
               errno.EACCES: "permission denied", errno.ELOOP: "a symbolic link loop",
               errno.ENAMETOOLONG: "the file name is too long"}
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))
