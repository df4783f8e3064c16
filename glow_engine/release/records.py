"""What a release leaves besides the images, in two places that are never mixed:

* the **published manifest** `OUT/manifest.csv`: one row per released file (MANIFEST_FIELDS).
  Nothing in it comes from the source except what docs/privacy.md lists as published
  unprotected; it travels with the images.
* the **operator's record** beside the ledger (`<ledger name>.record.csv`): one row per input
  of every run (RECORD_FIELDS): the source path and hash, the patient key, the release's file
  name, what happened and why. It maps releases back to patients: keep it where the ledger
  is kept, never publish it. A re-run reads it to skip what it released before.

Both are CSV files that runs only append to, under the ledger's write lock (so the ranks of a
torchrun and other runs sharing the ledger never interleave rows); earlier rows are never
rewritten. Each append is one write followed by fsync.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from glow_engine.errors import UserError

MANIFEST_NAME = "manifest.csv"
MANIFEST_FIELDS = ("file", "sha256", "format", "width", "height", "frame", "mechanism", "mode",
                   "e_px", "total_epsilon", "description", "model_sha256", "source_burned_in",
                   "linkage")
RECORD_FIELDS = ("time", "run", "status", "message", "source", "source_sha256", "patient_key",
                 "out_dir", "file", "sha256", "settings", "ledger_id", "total_epsilon",
                 "forced", "source_burned_in")


class RecordError(UserError):
    """The manifest or the operator's record cannot be written."""


def manifest_path(out_dir: Path) -> Path:
    return out_dir / MANIFEST_NAME


def check_private_locations(out_dir: Path, ledger_path: Path) -> None:
    """Refuse a ledger whose folder (which holds the operator's record and the release reports)
    is the output folder or inside it, however the paths are spelled (links resolved): OUT is
    what gets published. Checked before either is created."""
    out = _real(out_dir)
    # the file's own folder (where the record goes) and, if it is a link, its target's
    for private in (_real(ledger_path.parent), _real(ledger_path).parent):
        if private == out or private.is_relative_to(out):
            raise RecordError(f"the privacy ledger {ledger_path} (and the operator's record "
                              f"and release reports kept beside it) would be inside the output "
                              f"folder {out_dir}, which is what gets published: keep the "
                              "ledger outside it")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def record_path(ledger_path: Path) -> Path:
    """The operator's record beside the ledger: ledger.sqlite -> ledger.record.csv."""
    return ledger_path.with_name(f"{ledger_path.stem}.record.csv")


def check_appendable(path: Path, fields: tuple[str, ...], what: str) -> None:
    """Before a run: `path` is absent, or a regular file this version wrote (same header)."""
    try:
        if not path.exists():
            return
        if not path.is_file():
            raise RecordError(f"cannot write the {what}: {path} is not a regular file")
        with path.open(encoding="utf-8", newline="") as fh:
            header = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"cannot read the {what} {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    if header and header != ",".join(fields):
        raise RecordError(f"{path} was not written by this version of dpglow (its columns "
                          f"differ); move it away or use another folder. Older manifests "
                          f"name the source files: do not publish them")


def append_rows(path: Path, fields: tuple[str, ...], rows: Iterable[dict], what: str) -> None:
    """Append `rows` (a header first if the file is new) in one write, then fsync."""
    rows = list(rows)
    if not rows:
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    new = False
    try:
        fd = os.open(path, flags, 0o666)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise RecordError(f"cannot write the {what}: {path} is not a regular file")
            new = info.st_size == 0
            if new:
                writer.writeheader()
            elif os.lseek(fd, -1, os.SEEK_END) >= 0 and os.read(fd, 1) != b"\n":
                text.write("\n")  # end a row a crash cut short, so ours start on a new line
            writer.writerows(rows)
            # a source's name need not be valid UTF-8: its odd bytes are written as \udcXX
            data = text.getvalue().encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        if new and path.stat().st_size == 0:  # leave no empty file behind
            path.unlink()
        raise RecordError(f"cannot write the {what} {path}: {e.strerror or e}") from None


def read_rows(path: Path) -> list[dict]:
    """The complete rows of a record or manifest (none if absent; a cut-off row is dropped)."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return [row for row in csv.DictReader(fh) if None not in row.values()
                    and None not in row]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
