"""The private folder retrieved originals wait in: mode 0700, beside the ledger by default,
never inside an output folder, deleted when the run ends (success or not) unless the
operator asked to keep them (`--keep-retrieved DIR`)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from glow_engine.pacs.errors import PacsError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_outside(private: Path, out: Path, what: str) -> None:
    """Refuse a private folder (retrieved originals) inside the output folder, links resolved:
    the output is what gets published."""
    if Path(os.path.realpath(private)).is_relative_to(Path(os.path.realpath(out))):
        raise PacsError(f"the {what} {private} would be inside the output folder {out}, which "
                        "is what gets published: choose a folder outside it")


def make_staging(parent: Path, out: Path | None = None) -> Path:
    """A fresh folder `parent/.dpglow-retrieved-<random>`, mode 0700, outside `out`."""
    folder = (parent / f".dpglow-retrieved-{secrets.token_hex(6)}").resolve()
    if out is not None:
        check_outside(folder, out, "staging folder for retrieved originals (--staging)")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)  # whatever the umask
    except OSError as e:
        raise PacsError(f"cannot make the staging folder in {parent}: {e.strerror or e}; "
                        "give --staging DIR") from None
    return folder


def staged_path(folder: Path, study_uid: str, instance_uid: str) -> Path:
    """Where one retrieved instance goes: folder/<study>/<instance>.dcm (a private folder:
    the UIDs are the operator's to see). Anything that is not a UID becomes a random name."""
    path = folder / _safe(study_uid) / f"{_safe(instance_uid)}.dcm"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return path


def finish_staging(folder: Path, keep: Path | None) -> str:
    """Delete the staging folder, or move its instances to `keep` first; says what happened."""
    moved = 0
    try:
        if keep is not None:
            keep.mkdir(mode=0o700, parents=True, exist_ok=True)
            for path in sorted(folder.rglob("*.dcm")):
                target = keep / path.relative_to(folder)
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                shutil.move(path, target)
                moved += 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        return f"could NOT delete the staging folder {folder}: delete it by hand"
    if keep is not None:
        return f"{moved} retrieved original(s) kept in {keep}; staging folder deleted"
    return f"retrieved originals deleted (staging folder {folder} removed)"


def _safe(uid: str) -> str:
    uid = str(uid or "").strip("\0 ")
    return uid if _UID.match(uid) and len(uid) <= 64 else secrets.token_hex(8)
