"""The ledger, read for the window: what was spent on the open image and its patient, every
release with its totals for the ledger window, and that window's CSV export. The one write
here is the per-patient budget the ledger window sets; otherwise a ledger that does not exist
is not created."""

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
    """The ledger's rows, after storing the request's new per-patient budget if it has one
    (the one write here: setting a budget may create the ledger, as `dpglow ledger
    --set-patient-budget` does). A refused change is said in `error`; the rows still come."""
    path, change = request.ledger_path, request.budget
    if not path.is_file() and change is None:
        return LedgerTable(request.id, path, error=f"There is no ledger at {path}.")
    refused = ""
    try:
        with Ledger(path) as ledger:
            if change is not None:
                try:
                    ledger.set_patient_budget(change.total_epsilon, force=change.override,
                                              note=change.note)
                except UserError as exc:
                    refused = str(exc)
            return LedgerTable(request.id, path, tuple(ledger.releases()),
                               tuple(ledger.patient_totals()), tuple(ledger.image_totals()),
                               ledger.patient_budget, budget_refused=refused)
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
