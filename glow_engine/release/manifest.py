"""The manifest of a privatisation run: one row per input, as CSV and JSON, written
atomically. Under torchrun each rank writes its own; rank 0 merges them at the end.

It names the input files, which may themselves identify patients: it is for the person who
ran the release, not for the recipients of the images.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from glow_engine.atomic import write_bytes_atomic

FIELDS = ("input", "output", "status", "message", "mechanism", "mode", "e_px",
          "total_epsilon", "description", "post_processing", "model_sha256", "image_sha256",
          "rank", "time")
STATUSES = ("written", "done-earlier", "failed")


def manifest_name(rank: int, world: int) -> str:
    return "manifest" if world <= 1 else f"manifest.rank{rank}"


def write_manifest(rows: list[dict], out_dir: Path, name: str = "manifest") -> Path:
    """Writes <name>.json and <name>.csv; returns the JSON path."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(out_dir / f"{name}.csv", text.getvalue().encode(), overwrite=True)
    data = json.dumps({"releases": rows}, indent=1, default=str).encode()
    write_bytes_atomic(out_dir / f"{name}.json", data, overwrite=True)
    return out_dir / f"{name}.json"


def read_manifest(path: Path) -> list[dict]:
    try:
        return list(json.loads(path.read_text())["releases"])
    except (OSError, ValueError, KeyError, TypeError):
        return []  # absent or damaged: the files on disk are what counts for resuming


def previous_rows(out_dir: Path) -> dict[str, dict]:
    """Rows of earlier runs (merged and per-rank manifests) that wrote a file, by output."""
    rows: dict[str, dict] = {}
    for path in sorted(out_dir.glob("manifest*.json")):
        for row in read_manifest(path):
            if row.get("status") in ("written", "done-earlier"):
                rows.setdefault(str(row.get("output")), row)
    return rows


def merge_rank_manifests(out_dir: Path, world: int) -> Path:
    """Rank 0, after every rank finished: one manifest from all rank manifests."""
    rows = []
    for rank in range(world):
        rows += read_manifest(out_dir / f"{manifest_name(rank, world)}.json")
    rows.sort(key=lambda r: str(r.get("input")))
    return write_manifest(rows, out_dir)
