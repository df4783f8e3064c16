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


KEY = bytes(range(32))


def test_linked_pseudonyms_and_study_are_shared_within_a_release() -> None:
    exporter = DicomExporter(KEY, "run-1")
    src = source_dataset()
    _, a = export(src, exporter)
    _, b = export(src, exporter)
    assert (a.PatientID, a.PatientName, a.StudyInstanceUID, a.SeriesInstanceUID) == (
        b.PatientID, b.PatientName, b.StudyInstanceUID, b.SeriesInstanceUID)
    assert a.SOPInstanceUID != b.SOPInstanceUID and b.InstanceNumber == 2
    _, c = export(src, DicomExporter(KEY, "run-2"))  # a later run into the same release
    assert (c.PatientID, c.StudyInstanceUID) == (a.PatientID, a.StudyInstanceUID)
    assert c.SeriesInstanceUID != a.SeriesInstanceUID  # a new series per run
    _, d = export(src, DicomExporter(bytes(32), "run-1"))  # another release (another key)
    assert d.PatientID != a.PatientID and d.StudyInstanceUID != a.StudyInstanceUID


def test_unlinked_images_share_nothing() -> None:
    exporter = DicomExporter(None, "run-1")
    src = source_dataset()
    _, a = export(src, exporter)
    _, b = export(src, exporter)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID"):
        assert a.get(keyword) != b.get(keyword), keyword
    assert "unlinked" in " ".join(a.DeidentificationMethod)


def test_pseudonyms_are_keyed_not_a_hash_of_the_source() -> None:
    """Without the key, the PatientID's digest does not give the pseudonym."""
    import hashlib

    src = source_dataset()
    _, out = export(src, DicomExporter(KEY, "run"))
    digest = hashlib.sha256(src.PatientID.encode()).hexdigest().upper()
    assert out.PatientID.removeprefix("ANON-") not in digest
    assert out.StudyInstanceUID.startswith("2.25.") and len(out.StudyInstanceUID) <= 64


WITHHELD = {"PatientSex": ("F", "M", "O", ""), "PatientBirthDate": ("19610417", "20011231"),
            "PatientName": ("Zyxwerth^Jolantha", "Smith^John"), "PatientAge": ("063Y", "021Y"),
            "StudyDate": ("20210305", "19990101"), "AccessionNumber": ("A1", "B2")}


@pytest.mark.parametrize("linked", [True, False])
def test_no_released_attribute_depends_on_a_withheld_one(linked: bool) -> None:
    """Varying only withheld attributes (sex, birth date, name...) changes no released value:
    so none can predict them. The random values (linkage none, SOP UIDs) are compared by
    presence only."""
    random_values = {"SOPInstanceUID"} | (set() if linked else {
        "PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID"})

    study = generate_uid()

    def released(**withheld: str) -> dict:
        src = source_dataset()
        src.StudyInstanceUID = study
        for keyword, value in withheld.items():
            setattr(src, keyword, value)
        _, out = export(src, DicomExporter(KEY if linked else None, "run"))
        return {e.keyword: ("random" if e.keyword in random_values else str(e.value))
                for e in out.iterall() if e.keyword != "MediaStorageSOPInstanceUID"}

    base = released()
    for keyword, values in WITHHELD.items():
        for value in values:
            assert released(**{keyword: value}) == base, (keyword, value)


def test_released_name_does_not_predict_sex() -> None:
    """The audit's attack: learn sex from the released name's parts on half of 400 synthetic
    patients, predict the other half. dicognito's female/male name lists gave 100%."""
    exporter = DicomExporter(KEY, "run")
    rows = []
    for i in range(400):
        src = source_dataset()
        src.PatientID, src.PatientSex = f"PID-{i:05d}", "FM"[i % 2]
        _, out = export(src, exporter)
        rows.append((str(out.PatientName), src.PatientSex))
    votes: dict[str, list[str]] = {}
    for name, sex in rows[:200]:
        for part in name.replace("^", " ").replace("-", " ").split():
            votes.setdefault(part, []).append(sex)

    def guess(name: str) -> str:
        seen = [s for part in name.replace("^", " ").replace("-", " ").split()
                for s in votes.get(part, [])]
        return "F" if seen.count("F") > seen.count("M") else "M"
    accuracy = sum(guess(name) == sex for name, sex in rows[200:]) / 200
    assert accuracy <= 0.6, accuracy


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
    assert png.Modality == "OT" and png.PatientID.startswith("ANON-") and png.StudyInstanceUID
    assert "post-processing" in png.DerivationDescription

