"""What the officer asks the PACS for, and what it answers: plain data, no network.

A `StudyQuery` selects studies (by patient, accession numbers, study UIDs, a date or range,
modalities); a `Study` is one row of the answer. `CHEST_MODALITIES` and `chest_problem` are
our own filter, applied to every retrieved header whatever the PACS matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from glow_engine.pacs.errors import PacsError

CHEST_MODALITIES = ("CR", "DX")
_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")


@dataclass(frozen=True)
class StudyQuery:
    patient_id: str = ""
    accessions: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    study_date: str = ""  # YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-
    modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_date_range(self.study_date)
        for value in (self.patient_id, *self.accessions, *self.study_uids, *self.modalities):
            if "\\" in value or "*" in value or "?" in value:
                raise PacsError(f"{value!r}: wildcards and backslashes are not accepted in a "
                                "query; give exact values")

    @property
    def empty(self) -> bool:
        return not (self.patient_id or self.accessions or self.study_uids or self.study_date)


@dataclass(frozen=True)
class Study:
    study_uid: str
    patient_id: str = ""
    date: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    images: int | None = None  # None when the PACS does not say

    def as_json(self) -> dict:
        return {"study_uid": self.study_uid, "patient_id": self.patient_id, "date": self.date,
                "accession": self.accession, "modalities": list(self.modalities),
                "images": self.images}


@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    modality: str
    images: int | None = None


@dataclass
class Selection:
    """The series to retrieve, and what was left out and why (for the summary)."""

    series: list[Series] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def check_date_range(text: str) -> None:
    """'' or a DICOM date range (PS3.4 C.2.2.2.5.1) of real dates, the start not after the end."""
    m = _DATE.match(text)
    if not m or text == "-":
        raise PacsError(f"study date {text!r}: use YYYYMMDD or YYYYMMDD-YYYYMMDD")
    days = [d for d in (m.group(1), m.group(3)) if d]
    try:
        parsed = [date(int(d[:4]), int(d[4:6]), int(d[6:])) for d in days]
    except ValueError:
        raise PacsError(f"study date {text!r}: not a real date (YYYYMMDD)") from None
    if len(parsed) == 2 and parsed[0] > parsed[1]:
        raise PacsError(f"study date {text!r}: the range ends before it starts")


def parse_modalities(text: str) -> tuple[str, ...]:
    """'CR,DX' -> ('CR', 'DX')."""
    values = tuple(v.strip().upper() for v in text.split(",") if v.strip())
    for value in values:
        if not re.fullmatch(r"[A-Z0-9_]{1,16}", value):
            raise PacsError(f"modality {value!r}: use DICOM modality codes such as CR,DX")
    return values


def chest_problem(modality: str, body_part: str) -> str | None:
    """Why an instance is not a chest radiograph we release (None: it is one). A missing
    BodyPartExamined is accepted (many CR files leave it empty); another body part is not."""
    if modality not in CHEST_MODALITIES:
        return f"modality {modality or 'absent'}, not {' or '.join(CHEST_MODALITIES)}"
    if body_part and body_part.upper() != "CHEST":
        return f"body part {body_part}, not CHEST"
    return None


def select_series(studies: list[Study], series: list[Series]) -> Selection:
    """The CR/DX series of `studies`; the others listed as skipped with their modality."""
    selection = Selection()
    for s in series:
        if s.modality in CHEST_MODALITIES:
            selection.series.append(s)
        else:
            selection.skipped.append(f"study {s.study_uid}: series of modality "
                                     f"{s.modality or 'unknown'} ({s.images or '?'} image(s)): "
                                     "not a chest radiograph (CR/DX)")
    with_chest = {s.study_uid for s in selection.series}
    for study in studies:
        if study.study_uid not in with_chest:
            selection.skipped.append(f"study {study.study_uid}: no chest radiograph (no CR or "
                                     "DX series)")
    return selection
