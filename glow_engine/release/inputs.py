"""What `dpglow privatize` works on: input files from files, folders and CSV lists, and the
output name each one gets (stable between runs, so a re-run finds what is already done)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from glow_engine.errors import UserError
from glow_engine.imaging.discovery import find_images


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path  # inside the output folder


def collect_sources(args: list[str | Path]) -> list[tuple[Path, Path]]:
    """(source, relative name) pairs: a folder keeps its layout under its own name, a file or
    a CSV entry is named by its file name. Sources are de-duplicated, order is kept."""
    pairs: list[tuple[Path, Path]] = []
    for arg in map(Path, args):
        if arg.is_dir():
            pairs += [(p, Path(arg.resolve().name) / p.relative_to(arg)) for p in find_images(arg)]
        elif arg.suffix.lower() == ".csv":
            pairs += [(p, Path(p.name)) for p in read_csv_list(arg)]
        else:  # a missing file is kept: it fails on loading and is reported like any other
            pairs.append((arg, Path(arg.name)))
    seen: set[Path] = set()
    unique = []
    for source, rel in pairs:
        key = source.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((source, rel))
    return unique


def read_csv_list(path: Path) -> list[Path]:
    """Image paths from a CSV: the column "path" (or the first column); relative paths are
    relative to the CSV's folder."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read the input list {path}: {e}") from None
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "path" in header:
        column, body = header.index("path"), rows[1:]
    elif (path.parent / rows[0][0].strip()).exists():  # no header at all
        column, body = 0, rows
    else:  # some other header: paths in the first column
        column, body = 0, rows[1:]
    return [path.parent / row[column].strip() for row in body if len(row) > column]


def plan_jobs(pairs: list[tuple[Path, Path]], out_dir: Path, tag: str, suffix: str) -> list[Job]:
    """Output name: <relative folder>/<stem>.<tag><suffix>; when two sources would share a
    name, the later ones get a short hash of their path. Never an input's own path."""
    used: set[Path] = set()
    inputs = {source.resolve() for source, _ in pairs}
    jobs = []
    for source, rel in pairs:
        output = out_dir / rel.parent / f"{rel.stem}.{tag}{suffix}"
        if output in used or output.resolve() in inputs:
            digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
            output = out_dir / rel.parent / f"{rel.stem}-{digest}.{tag}{suffix}"
        used.add(output)
        jobs.append(Job(source, output))
    return jobs
