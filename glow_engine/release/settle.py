"""Settling what an interrupted run left in an output folder, before a new run starts.

The release of one image is a unit that can be finished or undone after a crash: the ledger
reservation, then a "reserved" row in the operator's record (written before any noise is
drawn; its message holds the planned manifest row), then the file (written atomically under a
hidden temporary name and moved into place), then the ledger's confirmation and the final
manifest and record rows. A run killed anywhere in between leaves a reserved record row with
no final row. For each one whose run is over (glow_engine.release.runs):

* the file is in OUT: it was released. It is listed in the published manifest, confirmed in
  the ledger and recorded as written (so a re-run skips its source: never released twice);
* the file is not there: nothing was published. Its hidden temporary files are removed, and
  the ledger row, if still reserved, becomes failed: it keeps counting, since the noise may
  have been drawn.

Hidden temporary files of this program's release names that no running run reserved are
removed too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from glow_engine.imaging import ImageLoadError, load_image
from glow_engine.release import records, runs
from glow_engine.release.ledger import Ledger

PENDING = "reserved"  # the record status of a release whose noise may be drawn next
SETTLED = "settled after an interrupted run"
_TEMPORARY = re.compile(r"^\.([0-9a-f]{16}\.(?:png|dcm))\.[0-9a-f]+\.tmp$")  # glow_engine.atomic


def settle(out: Path, ledger: Ledger, record_file: Path, manifest: Path,
           sha256: Callable[[Path], str]) -> int:
    """Settle every unfinished release into `out` whose run is over; how many were."""
    rows = records.read_rows(record_file)
    finished = {r["ledger_id"] for r in rows if r["status"] != PENDING}
    pending = [r for r in rows if r["status"] == PENDING and r["ledger_id"] not in finished
               and r["out_dir"] == str(out)]
    live: set[str] = set()
    listed = {r["file"] for r in records.read_rows(manifest)} if pending else set()
    settled = 0
    for run in sorted({r["run"] for r in pending}):
        locks = runs.claim_finished(ledger.path, run)
        if locks is None:
            live |= {r["file"] for r in pending if r["run"] == run}
            continue
        try:
            for row in (r for r in pending if r["run"] == run):
                _settle_one(row, out, ledger, record_file, manifest, sha256, listed)
                settled += 1
        finally:
            locks.release(remove=True)
    _remove_temporaries(out, live)
    return settled


def _settle_one(row: dict, out: Path, ledger: Ledger, record_file: Path, manifest: Path,
                sha256: Callable[[Path], str], listed: set[str]) -> None:
    path, release_id = out / row["file"], int(row["ledger_id"])
    status = next((r["status"] for r in ledger.releases() if r["id"] == release_id), None)
    final = dict(row, time=datetime.now(UTC).isoformat(timespec="seconds"))
    if path.is_file() and status in (PENDING, "written"):
        try:
            height, width = load_image(path).pixels.shape
        except ImageLoadError:
            height = width = 0
        published = dict(json.loads(row["message"]), file=path.name, sha256=sha256(path),
                         width=width, height=height)
        if status == PENDING:
            ledger.confirm(release_id)
        with ledger.exclusive():  # listed already if the run died between its two rows
            records.append_rows(manifest, records.MANIFEST_FIELDS,
                                [] if path.name in listed else [published],
                                "published manifest")
            records.append_rows(record_file, records.RECORD_FIELDS, [dict(
                final, status="written", sha256=published["sha256"],
                message=f"{SETTLED}: its file was written; listed now")], "operator's record")
        return
    why = "no file was written"
    if status == PENDING:
        ledger.fail(release_id, f"interrupted: {why}; counted, the noise may have been drawn")
    path.unlink(missing_ok=True)  # written but the ledger says otherwise: never published
    _remove_temporaries(out, set(), only=row["file"])
    with ledger.exclusive():
        records.append_rows(record_file, records.RECORD_FIELDS, [dict(
            final, status="failed", file="", message=f"{SETTLED}: {why}; "
            + ("the budget is counted" if status != "cancelled" else "nothing was spent"))],
            "operator's record")


def _remove_temporaries(out: Path, live: set[str], only: str | None = None) -> None:
    for path in out.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and match.group(1) not in live and only in (None, match.group(1)):
            path.unlink(missing_ok=True)
