"""Synthetic chest radiographs as DICOM, and nodes files, for the PACS tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR, DX = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
CLASSES = {"CR": CR, "DX": DX, "CT": CT}


def chest_dicom(patient_id: str, *, modality: str = "CR", body_part: str = "CHEST",
                study_uid: str | None = None, accession: str = "", sex: str = "F",
                size: int = 64, seed: int = 0) -> Dataset:
    """A small identified radiograph: name, ID, birth date, accession, sex, real UIDs."""
    ds = Dataset()
    ds.PatientName, ds.PatientID = f"Zyxwerth^{patient_id}", patient_id
    ds.PatientBirthDate, ds.PatientSex = "19610417", sex
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.SOPClassUID = CLASSES[modality]
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240607", "101500", accession
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.ReferringPhysicianName, ds.InstitutionName = "", "SAINT EXAMPLE HOSPITAL"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = modality, body_part, "PA"
    ds.BurnedInAnnotation = "NO"
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    pixels = (2000 + 1500 * np.sin(3 * x) * np.cos(2 * y) + rng.normal(0, 50, (size, size)))
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def write_nodes(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path
