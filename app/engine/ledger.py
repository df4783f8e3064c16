"""The ledger, read for the window: what was spent on the open image and its patient, every
release with its totals for the ledger window, and that window's CSV export. Nothing here
writes to a ledger (only a release does): a ledger that does not exist is not created."""

from __future__ import annotations

import csv
import io

from app.core.messages import (
    LedgerRequest,
    LedgerSpent,
    LedgerTable,
    LedgerTableRequest,
    TableRequest,
    TableWritten,
)
from glow_engine.atomic import write_text_atomic
from glow_engine.errors import UserError
from glow_engine.release.ledger import Ledger


def spent(request: LedgerRequest) -> LedgerSpent:
    path, sha = request.ledger_path, request.content_sha256
    if not path.is_file():
        return LedgerSpent(request.id, path)
    try:
        with Ledger(path) as ledger:
            return LedgerSpent(request.id, path, ledger.spent_on_image(sha),
                               ledger.spent_on_patient(request.patient_id, sha),
                               ledger.patient_budget, exists=True)
    except UserError as exc:
        return LedgerSpent(request.id, path, error=str(exc))


def table(request: LedgerTableRequest) -> LedgerTable:
    path = request.ledger_path
    if not path.is_file():
        return LedgerTable(request.id, path, error=f"There is no ledger at {path}.")
    try:
        with Ledger(path) as ledger:
            return LedgerTable(request.id, path, tuple(ledger.releases()),
                               tuple(ledger.patient_totals()), tuple(ledger.image_totals()),
                               ledger.patient_budget)
    except UserError as exc:
        return LedgerTable(request.id, path, error=str(exc))


def write_csv(request: TableRequest) -> TableWritten:
    """The ledger window's rows as a CSV file, atomically, never over an existing file."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(request.header)
    writer.writerows(request.rows)
    write_text_atomic(request.path, out.getvalue())
    return TableWritten(request.id, request.path)
