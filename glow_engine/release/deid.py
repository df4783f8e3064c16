"""De-identified DICOM output (DICOM PS3.15 Annex E, Basic Application Level Confidentiality
Profile).

The privatised image is a new object, not an edited copy: a Secondary Capture instance built
from an allow-list, so no attribute of the source can slip through by being overlooked
(private tags, free text, sequences, overlays, dates and UIDs are simply never copied).
What the profile would "replace" is filled in as follows:

* PatientName, PatientID, StudyInstanceUID: keyed pseudonyms, or nothing of the source's
  at all, as the officer chooses (`LINKAGES`, recorded in the manifest and the
  report). With linkage "patient" they are HMAC-SHA256 values under a key the caller derives
  from the privacy ledger's secret salt and the release's destination (`link_key`): the
  images of one patient (one study) released to one destination share a pseudonym (a study
  UID), which nobody without the ledger can recompute from a PatientID or a UID. With "none"
  every image gets fresh random values: nothing in the header links two images. The
  pseudonym is the same string for PatientName and PatientID, "ANON-" and 16 hex digits: no
  name list, nothing of the source's sex, age, name or format. The SeriesInstanceUID is new
  for each study in each run (keyed by the run's secret); the SOP Instance UID (also
  MediaStorageSOPInstanceUID) is random.
* Dates, times, accession number, study id, referring physician, sex: zero-length (type 2);
  age and everything else: absent.
* Kept from the source only when the value is one of DICOM's defined terms listed in
  `DEFINED_TERMS` (anything else is dropped; these values are published unprotected):
  Modality CR or DX (else OT), ViewPosition AP/PA/LL/RL/RLD/LLD/RLO/LLO, ImageLaterality
  R/L/U/B, BodyPartExamined CHEST.
* BurnedInAnnotation: YES or NO as the source declared it (`LoadedImage.burned_in_annotation`,
  the one place it is read), absent when the source did not say. `check_burned_in` is the
  release policy for it: YES is refused unless allowed, and so is a DICOM source that does
  not say (unknown is not "no").

PatientIdentityRemoved = YES; DeidentificationMethod names the mechanism, its parameters,
the epsilon and the model hash; DeidentificationMethodCodeSequence holds DCM 113100 (basic
profile) only. DCM 113101 (Clean Pixel Data) is never claimed: nothing here inspects or
cleans the pixels for burned-in text.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

import glow_engine
from glow_engine.errors import UserError

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
# The header values copied from the source: only these defined terms (PS3.3 C.7.3.1, C.8.11,
# PS3.16 Annex L), restricted to chest radiography. A value outside them is dropped.
DEFINED_TERMS = {
    "Modality": ("CR", "DX"),
    "ViewPosition": ("AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"),
    "ImageLaterality": ("R", "L", "U", "B"),
    "BodyPartExamined": ("CHEST",),
}
# How the released headers link images (the officer's choice; DICOM outputs only).
LINKAGES = {
    "none": "none: every image its own pseudonym, study and series",
    "patient": "a patient's images share a keyed pseudonym and study UIDs in this release",
}
DEFAULT_LINKAGE = "none"
_LINK_LABEL = "dp-glow linkage\0"  # separates the link key from the ledger's patient keys
EMPTY = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
         "StudyID", "AccessionNumber")
LO_MAX = 64


class BurnedInAnnotationError(UserError):
    """The source says (or does not say whether) identifying text is burned into its pixels."""


def check_burned_in(burned_in: bool | None, is_dicom: bool, *, allow: bool = False,
                    allow_unknown: bool = False) -> None:
    """The release policy: a source declaring BurnedInAnnotation = YES needs `allow`; a DICOM
    source that does not declare it needs `allow_unknown` (or `allow`). PNG/JPEG/TIFF sources
    carry no such statement and pass; their status is recorded as unknown."""
    if burned_in is True and not allow:
        raise BurnedInAnnotationError(
            "the source DICOM declares BurnedInAnnotation = YES (identifying text in the "
            "pixels); privatisation does not guarantee to remove it. Use --allow-burned-in "
            "to release it anyway")
    if burned_in is None and is_dicom and not (allow or allow_unknown):
        raise BurnedInAnnotationError(
            "the source DICOM does not say whether text is burned into its pixels "
            "(BurnedInAnnotation absent or not YES/NO). Check the images, then use "
            "--allow-unknown-burned-in to release them")


def burned_in_text(burned_in: bool | None) -> str:
    """How the records write a source's status: YES, NO or unknown."""
    return {True: "YES", False: "NO", None: "unknown"}[burned_in]


def kept_values(source: Dataset | None) -> dict[str, str]:
    """The source's header values that are published: defined terms only."""
    kept = {}
    for keyword, terms in DEFINED_TERMS.items():
        value = str(source.get(keyword, "") or "").strip().upper() if source is not None else ""
        if value in terms:
            kept[keyword] = value
    return kept


def link_key(patient_key: Callable[[str], str | None], destination: Path | str) -> bytes:
    """The key that links a patient's images released to `destination` (an output folder, or
    a node's outbox): `patient_key` is the ledger's HMAC under its secret salt, so the key is
    HMAC(salt, label + destination), never stored, and differs between destinations."""
    key = patient_key(f"{_LINK_LABEL}{destination}")
    assert key is not None
    return bytes.fromhex(key)


class DicomExporter:
    """Builds de-identified DICOM files; one instance per run (and per rank) of a release."""

    def __init__(self, link: bytes | None = None, run_secret: str | None = None) -> None:
        """`link`: the release's link key (linkage "patient"), or None (linkage "none").
        `run_secret` (never stored, the same on every torchrun rank) makes the series of a
        study new in each run; None draws a fresh one."""
        self._link = link
        self._run = run_secret or secrets.token_hex(32)
        self._instances: dict[str, int] = {}

    def build(self, pixels_u8: np.ndarray, source: Dataset | None, method: str, *,
              burned_in: bool | None, derivation: str = "") -> Dataset:
        """A new Secondary Capture dataset holding `pixels_u8` (H, W) as 8-bit MONOCHROME2.
        `method` is the mechanism's describe() line; `derivation` adds post-processing;
        `burned_in` is the source's declared BurnedInAnnotation (None: it did not say)."""
        ds = Dataset()
        self._patient_and_study(ds, source)
        for keyword, value in kept_values(source).items():
            setattr(ds, keyword, value)
        if "Modality" not in ds:
            ds.Modality = "OT"
        self._series_and_instance(ds)
        _deidentification(ds, method, burned_in, linked=self._link is not None)
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "WSD"
        ds.DerivationDescription = "; ".join(p for p in (method, derivation) if p)
        ds.SoftwareVersions = f"dp-glow {glow_engine.__version__}"
        _pixels(ds, pixels_u8)
        ds.file_meta = _file_meta(ds)
        return ds

    def _patient_and_study(self, ds: Dataset, source: Dataset | None) -> None:
        """Only PatientID and StudyInstanceUID of the source are read, and only as HMAC input."""
        patient = str(source.get("PatientID", "") or "").strip() if source is not None else ""
        study = str(source.get("StudyInstanceUID", "") or "") if source is not None else ""
        pseudonym = "ANON-" + self._token(b"patient", patient)[:8].hex().upper()
        ds.PatientName = ds.PatientID = pseudonym
        ds.StudyInstanceUID = _uid(self._token(b"study", study))
        for keyword in EMPTY:
            setattr(ds, keyword, "")

    def _token(self, purpose: bytes, value: str) -> bytes:
        """16 bytes: keyed from `value` when linking (and there is a value), else random."""
        if self._link is None or not value:
            return secrets.token_bytes(16)
        return hmac.new(self._link, purpose + b"\0" + value.encode(), hashlib.sha256).digest()

    def _series_and_instance(self, ds: Dataset) -> None:
        study = ds.StudyInstanceUID
        ds.SeriesInstanceUID = _uid(hmac.new(self._run.encode(), b"series\0" + study.encode(),
                                             hashlib.sha256).digest())
        ds.SeriesNumber = 1
        ds.SeriesDescription = "privatised (local differential privacy)"
        self._instances[study] = self._instances.get(study, 0) + 1
        ds.InstanceNumber = self._instances[study]
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.SOPInstanceUID = _uid(secrets.token_bytes(16))


def _uid(token: bytes) -> str:
    """A UID under the 2.25 root (PS3.5 B.2: a 128-bit number in decimal)."""
    return f"2.25.{int.from_bytes(token[:16], 'big')}"


def _deidentification(ds: Dataset, method: str, burned_in: bool | None, *,
                      linked: bool) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    ds.DeidentificationMethod = [
        "DICOM PS3.15 E.1 basic profile, dp-glow allow-list",
        "keyed pseudonyms linking a patient's images" if linked else "random pseudonyms, unlinked",
        *textwrap.wrap(method, LO_MAX),
    ]
    ds.DeidentificationMethodCodeSequence = [_code(*BASIC_PROFILE)]
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in_text(burned_in)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _pixels(ds: Dataset, pixels_u8: np.ndarray) -> None:
    arr = np.ascontiguousarray(pixels_u8, dtype=np.uint8)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def to_bytes(ds: Dataset) -> bytes:
    """The Part 10 file (preamble, DICM, file meta, explicit VR little endian)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()

