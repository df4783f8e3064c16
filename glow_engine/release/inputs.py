"""What a release works on: image files from files, folders and CSV lists, with the patient id
a CSV list gives or the officer's file-name pattern extracts, and what was skipped on the way
(with why).

A patient id pattern is a regular expression whose first group is the patient id, searched
in each file's path relative to the folder given (its name for a file given directly, or
listed in a CSV), with '/' between folders: `^(\\d+)_` takes 00001389 from
00001389_001.png, `^([^/]+)/` a folder per patient. `preview_patient_ids` shows what it
extracts before anything is released. A CSV list's patient_id, where there is one, comes
first; a DICOM file's own PatientID must agree with either.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from glow_engine.errors import UserError
from glow_engine.imaging.discovery import scan_images
from glow_engine.reading import MiB, read_text

PATIENT_COLUMN = "patient_id"
MAX_LIST_BYTES = 64 * MiB  # a list of a million paths is far smaller


@dataclass(frozen=True)
class Source:
    path: Path
    patient_id: str | None = None  # from a CSV list's patient_id column


@dataclass
class Sources:
    sources: list[Source] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # never opened
    other_files: int = 0  # files in the folders that are not images


def patient_pattern(text: str) -> re.Pattern[str]:
    """The officer's pattern, checked: a regular expression with a group for the patient id."""
    try:
        pattern = re.compile(text)
    except re.error as e:
        raise UserError(f"the patient id pattern {text!r} is not a valid regular expression "
                        f"({e})") from None
    if pattern.groups < 1:
        raise UserError(f"the patient id pattern {text!r} has no group: put the part that is "
                        r"the patient id in parentheses, as in ^(\d+)_")
    return pattern


def patient_id_in(pattern: re.Pattern[str], name: str) -> str | None:
    """The first group of `pattern`'s first match in `name`; None if it does not match."""
    match = pattern.search(name)
    return ((match.group(1) or "").strip() or None) if match else None


def preview_patient_ids(pattern: str, paths: Iterable[str | Path],
                        root: str | Path | None = None) -> list[tuple[str, str | None]]:
    """What `pattern` extracts from each file: (the name it is searched in, the patient id or
    None), for the window to show before a release. UserError for an unusable pattern."""
    compiled = patient_pattern(pattern)
    names = [_pattern_name(Path(path), Path(root) if root else None) for path in paths]
    return [(name, patient_id_in(compiled, name)) for name in names]


def _pattern_name(path: Path, root: Path | None) -> str:
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.name


def collect_sources(args: list[str | Path], out_dir: Path,
                    pattern: str | None = None) -> Sources:
    """The sources named by `args` (files, folders searched recursively, CSV lists), each once,
    in order, with the patient ids their list gives or `pattern` extracts. Files under
    `out_dir` (earlier releases) are never sources; an input that is `out_dir` or lies inside
    it is refused, since publishing OUT would publish it."""
    compiled = patient_pattern(pattern) if pattern is not None else None
    out = _real(out_dir)
    found = Sources()
    for arg in map(Path, args):
        real = _real(arg)
        if real == out or real.is_relative_to(out):
            raise UserError(f"the input {arg} is the output folder or inside it: releases "
                            "must go to a folder of their own (it is what gets published)")
        if _is_dir(arg):
            scan = scan_images(arg)
            found.sources += [_with_pattern(Source(p), compiled, arg) for p in scan.images
                              if not _real(p).is_relative_to(out)]
            found.skipped += scan.skipped
            found.other_files += scan.other_files
        elif arg.suffix.lower() == ".csv":
            found.sources += [_with_pattern(s, compiled) for s in read_csv_list(arg)]
        else:  # a missing or unreadable file is kept: loading it says why it fails
            found.sources.append(_with_pattern(Source(arg), compiled))
    seen: set[Path] = set()
    unique = []
    for source in found.sources:
        key = _real(source.path)
        if key not in seen:
            seen.add(key)
            unique.append(source)
    found.sources = unique
    return found


def _with_pattern(source: Source, pattern: re.Pattern[str] | None,
                  root: Path | None = None) -> Source:
    if pattern is None or source.patient_id:
        return source
    return Source(source.path, patient_id_in(pattern, _pattern_name(source.path, root)))


def read_csv_list(path: Path) -> list[Source]:
    """Image paths from a CSV: the column "path" (or the first column), and the patient id
    from a "patient_id" column where there is one; relative paths are relative to the CSV's
    folder."""
    text = read_text(path, what="input list", limit=MAX_LIST_BYTES, encoding="utf-8-sig")
    if "\x00" in text:  # no path or patient id holds one: a binary file, not a list
        raise UserError(f"cannot read the input list {path}: it holds a NUL character (it is "
                        "not a text list)")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""))
                if row and any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise UserError(f"cannot read the input list {path}: {e}") from None
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    patient = header.index(PATIENT_COLUMN) if PATIENT_COLUMN in header else None
    if "path" in header:
        column, body = header.index("path"), rows[1:]
    elif patient is None and (path.parent / rows[0][0].strip()).exists():  # no header at all
        column, body = 0, rows
    else:  # some other header: paths in the first column
        column, body = 0, rows[1:]
    return [Source(path.parent / row[column].strip(),
                   _cell(row, patient) if patient is not None else None)
            for row in body if len(row) > column]


def _cell(row: list[str], column: int) -> str | None:
    return (row[column].strip() or None) if len(row) > column else None


def _real(path: Path) -> Path:
    """The resolved path; never raises (a symlink loop stays unresolved at the loop)."""
    return Path(os.path.realpath(path))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, a loop: not a folder; loading it will say why
        return False
