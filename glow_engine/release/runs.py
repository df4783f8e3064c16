"""Which release runs are still running: each rank of a run holds an exclusive lock on a file
of its own beside the ledger (`<ledger name>.runs/<run>.<rank>.lock`) while it runs.

The operating system drops a lock when its process ends, however it ends (a SIGKILL, a power
cut), so a run whose files can all be locked by someone else is over, and what it left
unfinished can be settled (glow_engine.release.batch); the settler keeps those locks while it
settles, so two runs never settle the same thing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class RunLocks:
    """Lock files held open (and locked) by this process."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, IO[bytes]]] = []

    def release(self, *, remove: bool) -> None:
        for path, fh in self.files:
            if remove:
                with contextlib.suppress(OSError):
                    path.unlink()
            fh.close()  # closing drops the lock
        self.files = []


def runs_folder(ledger_path: Path) -> Path:
    return ledger_path.with_name(f"{ledger_path.stem}.runs")


def hold(ledger_path: Path, run: str, rank: int) -> RunLocks:
    """Mark this rank of `run` as running until the returned locks are released."""
    folder = runs_folder(ledger_path)
    folder.mkdir(exist_ok=True)
    locks = RunLocks()
    path = folder / f"{run}.{rank}.lock"
    if not _lock(path, locks):
        raise OSError(f"the run lock {path} is held by another process")
    return locks


def claim_finished(ledger_path: Path, run: str) -> RunLocks | None:
    """The locks of every rank of `run` if none of them is running (its lock files are then
    held by us until released); None while any rank still runs."""
    locks = RunLocks()
    for path in sorted(runs_folder(ledger_path).glob(f"{run}.*.lock")):
        if not _lock(path, locks):
            locks.release(remove=False)
            return None
    return locks


def _lock(path: Path, locks: RunLocks) -> bool:
    fh = open(path, "a+b")  # noqa: SIM115 - kept open: the lock lives as long as the file
    try:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        fh.close()
        return False
    locks.files.append((path, fh))
    return True

