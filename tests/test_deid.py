"""De-identified DICOM output: nothing identifying survives, the result is valid DICOM."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from glow_engine.release.deid import (
    DEFINED_TERMS,
    SECONDARY_CAPTURE,
    BurnedInAnnotationError,
    DicomExporter,
    check_burned_in,
    kept_values,
    to_bytes,
)

METHOD = "DP-GLOW tight alpha=0.4 e_px=100 (total epsilon 102400) model sha256:0123456789ab"
SECRETS = {
    "PatientName": "Zyxwerth^Jolantha^Q",
    "PatientID": "PID-7781234",
    "PatientBirthDate": "19610417",
    "PatientAge": "063Y",
    "OtherPatientIDs": "ALT-99812",
    "PatientAddress": "12 Elm Street Springfield",
    "InstitutionName": "Saint Example Hospital",
    "InstitutionAddress": "1 Hospital Road Exampletown",
    "ReferringPhysicianName": "Quaxley^Gregorius",
    "PerformingPhysicianName": "Vrenneke^Mikaelsa",
    "OperatorsName": "Tecknova^Brimblecombe",
    "AccessionNumber": "ACC44556677",
    "StudyID": "STUDY8812",
    "StudyDescription": "CHEST PA FOR JOLANTHA ZYXWERTH",
    "SeriesDescription": "Jolantha portable series",
    "ImageComments": "patient Jolantha Zyxwerth, bed 14",
    "StationName": "XRAYROOM7",
    "DeviceSerialNumber": "SN-55-ABCDE",
    "StudyDate": "20210305",
    "StudyTime": "101522",
    "AcquisitionDateTime": "20210305101530",
}


def source_dataset(burned_in: str | None = "NO") -> Dataset:
    ds = Dataset()
    for keyword, value in SECRETS.items():
        setattr(ds, keyword, value)
    ds.PatientSex = "F"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), "1.2.840.10008.5.1.4.1.1.1.1"
    ds.FrameOfReferenceUID = generate_uid()
    request = Dataset()
    request.RequestedProcedureID = "REQ-3141592"
    request.ScheduledPerformingPhysicianName = "Brimblecombe^Vrenneke"
    ds.RequestAttributesSequence = Sequence([request])
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", "PRIVATE-SECRET-4242")
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    return ds


def identifying_values(ds: Dataset) -> list[str]:
    values = [v for k, v in SECRETS.items() if k not in ("StudyTime",)]
    values += ["Zyxwerth", "Jolantha", "REQ-3141592", "Brimblecombe", "PRIVATE-SECRET-4242", "ACME",
               ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
               ds.FrameOfReferenceUID]
    return values


def export(ds: Dataset | None, exporter: DicomExporter | None = None,
           **kwargs: object) -> tuple[bytes, pydicom.Dataset]:
    pixels = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    declared = str(ds.get("BurnedInAnnotation", "")) if ds is not None else ""
    kwargs.setdefault("burned_in", {"YES": True, "NO": False}.get(declared))
    built = (exporter or DicomExporter()).build(pixels, ds, METHOD, **kwargs)
    data = to_bytes(built)
    return data, pydicom.dcmread(io.BytesIO(data))


def test_no_identifying_value_anywhere_in_the_output_bytes() -> None:
    src = source_dataset()
    data, _ = export(src)
    assert data[128:132] == b"DICM"
    lowered = data.lower()
    for value in identifying_values(src):
        assert value.encode().lower() not in lowered, value
    # the source's UIDs also do not occur as any prefix-free fragment (e.g. in sequences)
    assert b"1.2.840.10008.5.1.4.1.1.1.1" not in data


def test_output_is_valid_deidentified_secondary_capture() -> None:
    src = source_dataset()
    _, out = export(src)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPClassUID == out.SOPClassUID == SECONDARY_CAPTURE
    assert out.PatientIdentityRemoved == "YES"
    assert list(out.ImageType) == ["DERIVED", "SECONDARY"]
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]  # never 113101: nothing cleaned the pixels
    methods = list(out.DeidentificationMethod)
    assert all(len(m) <= 64 for m in methods)
    assert "DP-GLOW" in " ".join(methods) and "e_px=100" in " ".join(methods)
    assert "0123456789ab" in " ".join(methods)
    assert out.StudyInstanceUID != src.StudyInstanceUID
    assert out.SeriesInstanceUID != src.SeriesInstanceUID
    assert out.PatientID and out.PatientID != src.PatientID
    assert out.PatientSex == "" and "PatientAge" not in out
    assert (out.Modality, out.BodyPartExamined, out.ViewPosition) == ("DX", "CHEST", "PA")
    assert not any(elem.tag.is_private for elem in out.iterall())
    assert out.PhotometricInterpretation == "MONOCHROME2" and out.BitsStored == 8
    assert out.pixel_array.shape == (32, 32) and out.pixel_array.dtype == np.uint8
    assert out.BurnedInAnnotation == "NO"


def test_pseudonyms_and_series_are_consistent_within_a_run() -> None:
    exporter = DicomExporter()
    src = source_dataset()
    _, a = export(src, exporter)
    _, b = export(src, exporter)
    assert (a.PatientID, a.PatientName, a.StudyInstanceUID, a.SeriesInstanceUID) == (
        b.PatientID, b.PatientName, b.StudyInstanceUID, b.SeriesInstanceUID)
    assert a.SOPInstanceUID != b.SOPInstanceUID and b.InstanceNumber == 2
    _, c = export(src)  # another run: other pseudonyms and a new series
    assert c.PatientID != a.PatientID and c.SeriesInstanceUID != a.SeriesInstanceUID


def test_ranks_sharing_a_run_secret_agree() -> None:
    src = source_dataset()
    _, a = export(src, DicomExporter("s3cret"))
    _, b = export(src, DicomExporter("s3cret"))
    assert (a.PatientID, a.StudyInstanceUID, a.SeriesInstanceUID) == (
        b.PatientID, b.StudyInstanceUID, b.SeriesInstanceUID)
    assert a.SOPInstanceUID != b.SOPInstanceUID


def test_burned_in_policy_yes_and_unknown_need_consent() -> None:
    check_burned_in(False, True)  # declared NO
    check_burned_in(None, False)  # a PNG: nothing declared, nothing to check against
    with pytest.raises(BurnedInAnnotationError, match="--allow-burned-in"):
        check_burned_in(True, True)
    with pytest.raises(BurnedInAnnotationError, match="--allow-unknown-burned-in"):
        check_burned_in(None, True)
    check_burned_in(True, True, allow=True)
    check_burned_in(None, True, allow_unknown=True)
    check_burned_in(None, True, allow=True)  # allowing YES allows unknown as well
    with pytest.raises(BurnedInAnnotationError):
        check_burned_in(True, True, allow_unknown=True)
    _, out = export(source_dataset(burned_in="YES"))
    assert out.BurnedInAnnotation == "YES"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]


def test_header_values_outside_the_defined_terms_are_dropped() -> None:
    src = source_dataset()
    src.ViewPosition, src.BodyPartExamined = "MRN99887766", "QUIXOTE ZEBULON"
    src.ImageLaterality, src.Modality = "L", "MR"
    data, out = export(src)
    assert b"MRN99887766" not in data and b"QUIXOTE" not in data
    assert "ViewPosition" not in out and "BodyPartExamined" not in out
    assert (out.Modality, out.ImageLaterality) == ("OT", "L")
    assert kept_values(src) == {"ImageLaterality": "L"}
    for keyword, terms in DEFINED_TERMS.items():
        assert all(term.isalpha() and term.isupper() and len(term) <= 6 for term in terms)
        src = source_dataset()
        setattr(src, keyword, terms[0])
        assert kept_values(src)[keyword] == terms[0]


def test_unknown_burned_in_and_png_sources() -> None:
    _, out = export(source_dataset(burned_in=None))
    assert "BurnedInAnnotation" not in out
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]
    _, png = export(None, derivation="upsampled from 32x32 to 64x64 (post-processing)")
    assert png.Modality == "OT" and png.PatientID == "" and png.StudyInstanceUID
    assert "post-processing" in png.DerivationDescription

