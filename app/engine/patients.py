"""Whose image is whose, before a folder release: the patient ID each input gets from its CSV
list or from the officer's file-name pattern (glow_engine.release.inputs), for the batch
window's preview. A DICOM file's own PatientID is read when it is released, not here (that
would open every file): such a file is never counted as having none."""

from __future__ import annotations

from app.core.messages import PatientPreview, PatientsRequest
from glow_engine.errors import UserError
from glow_engine.imaging.dicom import DICOM_SUFFIXES
from glow_engine.release.inputs import collect_sources

PREVIEW_ROWS = 8  # enough to see what a pattern takes from a name


def preview(request: PatientsRequest) -> PatientPreview:
    try:
        found = collect_sources(list(request.inputs), request.out_dir, request.pattern)
    except UserError as exc:
        return PatientPreview(request.id, error=str(exc))
    rows, without = [], 0
    for source in found.sources:
        dicom = source.path.suffix.lower() in DICOM_SUFFIXES
        without += not (source.patient_id or dicom)
        if len(rows) < PREVIEW_ROWS:
            shown = source.patient_id or ("its DICOM PatientID" if dicom else "")
            rows.append((source.path.name, shown))
    return PatientPreview(request.id, tuple(rows), len(found.sources), without)
