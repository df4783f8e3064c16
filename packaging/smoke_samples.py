"""Inputs and checks for the smoke test of the built app (packaging/build.sh).

    python packaging/smoke_samples.py write DIR      # two compressed chest DICOMs -> DIR
    python packaging/smoke_samples.py verify OUT LEDGER [N]  # check a `dpglow privatize` run

`write` makes a synthetic chest-like radiograph (no patient data) with fake identifying
attributes, stored once as JPEG 2000 lossless (12 bit, MONOCHROME2, not square) and once as
RLE lossless (16 bit, MONOCHROME1): the two compressed encodings whose decoders PyInstaller
can lose (pylibjpeg's plugins are found through package metadata). The frozen viewer and the
frozen CLI must open both. `verify` checks a DICOM release (N inputs, default the two
samples): every input released (OUT's manifest.csv, mapped to the sources by the operator's
record beside LEDGER), de-identified, no identifying value of its source in its bytes or name,
the whole square model frame (so the source's aspect ratio is not published). It runs with the
build's own Python, not the frozen one, so that a broken bundle cannot pass its own check.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

IDENTIFIERS = {"PatientName": "Smoke^Test^Patient", "PatientID": "SMOKE-0042",
               "AccessionNumber": "ACC-SMOKE-7", "InstitutionName": "Smoke Test Hospital"}
SAMPLES = {  # file name -> (transfer syntax, bits stored, photometric interpretation)
    "chest_j2k.dcm": (uid.JPEG2000Lossless, 12, "MONOCHROME2"),
    "chest_rle.dcm": (uid.RLELossless, 16, "MONOCHROME1"),
}
SHAPE = (600, 520)  # rows, columns: not square, as detectors are not


def chest(shape: tuple[int, int], bits: int) -> np.ndarray:
    """A smooth radiograph-like picture: bright mediastinum and ribs cage, dark lungs."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]] / np.array(shape).reshape(2, 1, 1)
    body = np.exp(-(((x - 0.5) / 0.42) ** 8 + ((y - 0.55) / 0.5) ** 8))
    lungs = sum(np.exp(-(((x - cx) / 0.15) ** 2 + ((y - 0.5) / 0.3) ** 2) ** 2)
                for cx in (0.32, 0.68))
    ribs = 0.08 * (np.sin(y * 60) > 0.6) * body
    img = np.clip(0.15 + 0.75 * body - 0.5 * lungs + ribs, 0, 1)
    return np.round(img * (2**bits - 1)).astype(np.uint16)


def dicom(pixels: np.ndarray, syntax: str, bits: int, photometric: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = uid.DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid.generate_uid(), uid.generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.BurnedInAnnotation = "NO"
    for key, value in IDENTIFIERS.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if photometric == "MONOCHROME1":
        pixels = (2**bits - 1) - pixels  # stored inverted; the reader must invert it back
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    plugin = "pydicom" if syntax == uid.RLELossless else "pylibjpeg"
    ds.compress(syntax, encoding_plugin=plugin)
    return ds


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (syntax, bits, photometric) in SAMPLES.items():
        path = folder / name
        dicom(chest(SHAPE, bits), syntax, bits, photometric).save_as(path,
                                                                      enforce_file_format=True)
        paths.append(path)
    return paths


# Source attributes that must not reach a release (values shorter than MIN_SECRET are skipped:
# a short number can occur in any file's bytes by chance).
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
               "InstitutionName", "ReferringPhysicianName", "OtherPatientIDs")
MIN_SECRET = 6


def verify(out: Path, ledger: Path, expected: int) -> list[str]:
    """Problems with the DICOM release in `out` (empty: what the smoke test expects):
    `expected` files in its published manifest, each found through the operator's record
    beside `ledger` and checked against its own source."""
    try:
        with (out / "manifest.csv").open(newline="") as fh:
            published = {row["file"] for row in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error) as e:
        return [f"no readable manifest.csv in {out}: {e}"]
    record = ledger.with_name(f"{ledger.stem}.record.csv")
    try:
        with record.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["out_dir"] == str(out.resolve())]
    except (OSError, KeyError, csv.Error) as e:
        return [f"no readable operator's record {record}: {e}"]
    # Each release writes a "reserved" row before its noise is drawn and a final row after.
    final = {(r["run"], r["source"]) for r in rows if r["status"] != "reserved"}
    problems = [f"{Path(r['source']).name}: {r['status']}: {r['message']}" for r in rows
                if r["status"] not in ("written", "reserved")
                or (r["status"] == "reserved" and (r["run"], r["source"]) not in final)]
    if len(published) != expected:
        problems.append(f"{len(published)} files in the manifest, expected {expected}")
    for row in rows:
        if row["status"] == "written" and row["file"] in published:
            problems += check_output(Path(row["source"]), out / row["file"])
    return problems


def check_output(source_path: Path, path: Path) -> list[str]:
    """A released DICOM against its source: de-identified, no identifying value of the source
    anywhere in its bytes or its name, the whole square model frame (the same size whatever
    the source's aspect ratio)."""
    source = pydicom.dcmread(source_path, stop_before_pixels=True, force=True)
    secrets = {str(source.get(k, "") or "") for k in IDENTIFYING} | set(IDENTIFIERS.values())
    secrets |= {source_path.stem}
    data = path.read_bytes()
    problems = []
    leaked = sorted(v for v in secrets if len(v) >= MIN_SECRET and (v.encode() in data
                                                                   or v in path.name))
    if leaked:
        problems.append(f"{path.name}: identifying values of the source in the output: {leaked}")
    ds = pydicom.dcmread(path)
    if ds.get("PatientIdentityRemoved") != "YES":
        problems.append(f"{path.name}: PatientIdentityRemoved is not YES")
    pixels = ds.pixel_array
    if pixels.ndim != 2 or pixels.std() == 0:
        problems.append(f"{path.name}: no image in the output")
    elif pixels.shape[0] != pixels.shape[1]:
        problems.append(f"{path.name}: {pixels.shape} is not the square model frame: the "
                        f"source's aspect {source.Rows} x {source.Columns} would be published")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("write", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "write":
        for path in write(Path(argv[1])):
            print(f"wrote {path} ({pydicom.dcmread(path).file_meta.TransferSyntaxUID.name})")
        return 0
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    expected = int(argv[3]) if len(argv) > 3 else len(SAMPLES)
    problems = verify(Path(argv[1]), Path(argv[2]), expected)
    for p in problems:
        print(f"release check: {p}", file=sys.stderr)
    print("release check:", "FAILED" if problems else f"ok ({expected} de-identified DICOMs)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
