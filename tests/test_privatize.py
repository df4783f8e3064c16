"""`dpglow privatize` end to end on the tiny model: PNG and DICOM in and out, manifest,
ledger, failures, resume, budgets, burned-in annotations, CSV lists and torchrun shards."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import tiny_images
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from glow_engine import cli
from glow_engine.commands import privatize as privatize_cmd
from glow_engine.mechanisms import DPGlow
from glow_engine.modelfile import LoadedModel, save_model
from glow_engine.release.batch import ReleaseOptions, privatize
from glow_engine.release.ledger import Ledger
from glow_engine.release.manifest import merge_rank_manifests

PATIENT = "Zyxwerth^Jolantha"
PATIENT_ID = "PID-5550123"


@pytest.fixture(scope="module")
def model_dir(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, tiny_model.flow, {"name": "tiny"}, tiny_model.calibration)
    return path


def write_dicom(path: Path, pixels: np.ndarray, burned_in: str = "NO") -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT, PATIENT_ID, "DX"
    ds.InstitutionName = "Saint Example Hospital"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.BurnedInAnnotation = burned_in
    ds.add_new(0x00091001, "LO", "PRIVATE-SECRET-4242")
    u8 = np.rint(pixels * 255).astype(np.uint8)
    ds.Rows, ds.Columns = u8.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = u8.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    """in/ with 3 PNGs (one 48x64), 2 DICOMs of one patient and a corrupt PNG."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    images = tiny_images(5, seed=21)
    for i in range(2):
        Image.fromarray(np.rint(images[i] * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    wide = np.kron(np.rint(images[2] * 255).astype(np.uint8), np.ones((2, 2), np.uint8))
    Image.fromarray(wide[:48]).save(folder / "sub" / "wide.png")
    write_dicom(folder / "sub" / "a.dcm", images[3])
    write_dicom(folder / "sub" / "b.dcm", images[4])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def run(model_dir: Path, tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    privatize_cmd.add_arguments(parser)
    args = parser.parse_args([*argv, "--model", str(model_dir), "--ledger",
                              str(tmp_path / "ledger.sqlite"), "--no-progress"])
    return privatize_cmd.run(args)


def manifest(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["releases"]


def digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_registered_in_the_cli() -> None:
    assert {"privatize", "ledger"} <= set(cli.SUBCOMMANDS)


def test_png_release_with_manifest_and_ledger(model_dir: Path, inputs: Path,
                                              tmp_path: Path) -> None:
    before = digest(inputs)
    out = tmp_path / "out"
    assert run(model_dir, tmp_path, str(inputs), "--e-px", "100", "--mode", "tight",
               "--out", str(out)) == 1  # one input failed
    assert digest(inputs) == before  # inputs untouched
    rows = manifest(out)
    by_status = {s: [r for r in rows if r["status"] == s] for s in ("written", "failed")}
    assert len(by_status["written"]) == 5 and len(by_status["failed"]) == 1
    assert "broken.png" in by_status["failed"][0]["input"]
    with (out / "manifest.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 6
    for row in by_status["written"]:
        img = np.asarray(Image.open(row["output"]))
        # cropped back to the source's aspect: wide.png is 48 x 64, the others square
        assert img.shape == ((24, 32) if "wide" in row["input"] else (32, 32))
        assert img.dtype == np.uint8
        assert row["total_epsilon"] == 102400 and "tight" in row["description"]
        assert Path(row["output"]).name.endswith(".dpglow-tight-a0.4-e100.png")
    assert (out / "in" / "sub" / "wide.dpglow-tight-a0.4-e100.png").exists()
    with Ledger(tmp_path / "ledger.sqlite") as led:
        patients = led.patient_totals()
        assert sum(p["total_epsilon"] for p in patients) == 5 * 102400
        assert max(p["images"] for p in patients) == 2  # the two DICOMs: one patient
        assert {r["status"] for r in led.releases()} == {"written"}


def test_dicom_release_is_deidentified_and_resized(model_dir: Path, inputs: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "dcm"
    run(model_dir, tmp_path, str(inputs / "sub"), str(inputs / "p0.png"), "--e-px", "1000",
        "--format", "dicom", "--size", "64", "--out", str(out))
    written = [r for r in manifest(out) if r["status"] == "written"]
    assert len(written) == 4
    for row in written:
        data = Path(row["output"]).read_bytes()
        for secret in (PATIENT, "Zyxwerth", PATIENT_ID, "Saint Example", "PRIVATE-SECRET"):
            assert secret.encode() not in data
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.pixel_array.shape == ((48, 64) if "wide" in row["input"] else (64, 64))
        assert ds.PatientIdentityRemoved == "YES"
        assert "post-processing" in ds.DerivationDescription
        assert "e_px=1000" in " ".join(ds.DeidentificationMethod)
        assert "resized from 32x" in row["post_processing"]
    dicoms = [pydicom.dcmread(r["output"]) for r in written if r["input"].endswith(".dcm")]
    assert dicoms[0].PatientID == dicoms[1].PatientID != PATIENT_ID  # one pseudonym


def test_rerun_resumes_without_spending_again(model_dir: Path, inputs: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = (str(inputs), "--e-px", "10", "--out", str(out))
    run(model_dir, tmp_path, *args)
    first = {r["output"]: r for r in manifest(out)}
    victim = next(p for p, r in first.items() if r["status"] == "written")
    Path(victim).unlink()
    run(model_dir, tmp_path, *args)
    rows = {r["output"]: r for r in manifest(out)}
    assert rows[victim]["status"] == "written"
    assert sum(r["status"] == "done-earlier" for r in rows.values()) == 4
    done = next(r for r in rows.values() if r["status"] == "done-earlier")
    assert done["image_sha256"] and done["description"]  # carried over from the first run
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert len(led.releases()) == 6  # 5 first, 1 re-done


def test_budget_refusal_force_and_burned_in(model_dir: Path, inputs: Path,
                                            tmp_path: Path) -> None:
    write_dicom(inputs / "sub" / "burned.dcm", tiny_images(1)[0], burned_in="YES")
    out = tmp_path / "b"
    code = run(model_dir, tmp_path, str(inputs / "sub"), "--e-px", "100", "--out", str(out),
               "--patient-budget", "150000")
    rows = {Path(r["input"]).name: r for r in manifest(out)}
    assert code == 1
    assert rows["burned.dcm"]["status"] == "failed"
    assert "BurnedInAnnotation" in rows["burned.dcm"]["message"]
    assert rows["a.dcm"]["status"] == "written" and rows["wide.png"]["status"] == "written"
    assert rows["b.dcm"]["status"] == "failed" and "budget" in rows["b.dcm"]["message"]
    run(model_dir, tmp_path, str(inputs / "sub"), "--e-px", "100", "--out", str(out),
        "--patient-budget", "150000", "--force", "--allow-burned-in")
    rows = {Path(r["input"]).name: r for r in manifest(out)}
    assert rows["b.dcm"]["status"] == rows["burned.dcm"]["status"] == "written"
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert any(r["forced"] for r in led.releases())


def test_csv_list_idldp_without_model_and_out_inside_input(inputs: Path,
                                                           tmp_path: Path) -> None:
    listing = inputs / "list.csv"
    listing.write_text("path,label\np0.png,0\nsub/a.dcm,1\nmissing.png,0\n")
    out = inputs / "released"  # inside an input folder: its files are never inputs
    parser = argparse.ArgumentParser()
    privatize_cmd.add_arguments(parser)
    args = parser.parse_args([str(listing), "--mechanism", "idldp", "--resolution", "32",
                              "--e-px", "inf", "--out", str(out), "--ledger",
                              str(tmp_path / "l.sqlite"), "--no-progress"])
    assert privatize_cmd.run(args) == 1  # missing.png
    rows = manifest(out)
    assert [r["status"] for r in rows] == ["written", "written", "failed"]
    assert rows[0]["total_epsilon"] == "inf" and rows[0]["model_sha256"] == ""
    args.inputs = [str(inputs)]
    privatize_cmd.run(args)
    assert not any("released" in r["input"] for r in manifest(out))


def test_torchrun_shards_split_and_merge(tiny_model: LoadedModel, inputs: Path,
                                         tmp_path: Path) -> None:
    mech = DPGlow(tiny_model, mode="tight")
    out = tmp_path / "sharded"
    with Ledger(tmp_path / "l.sqlite") as led:
        for rank in (1, 0):
            opts = ReleaseOptions(e_px=100, out_dir=out, fmt="dicom", rank=rank, world=2,
                                  progress=False, run_secret="broadcast by rank 0")
            privatize([inputs], mech, led, opts)
    per_rank = [json.loads((out / f"manifest.rank{r}.json").read_text())["releases"]
                for r in (0, 1)]
    assert [len(rows) for rows in per_rank] == [3, 3]
    merged = json.loads(merge_rank_manifests(out, 2).read_text())["releases"]
    assert len({r["input"] for r in merged}) == 6 == len(merged)
    # a.dcm and b.dcm (one patient) went to different ranks, yet share one pseudonym
    ranks = {Path(r["input"]).name: r["rank"] for r in merged}
    assert ranks["a.dcm"] != ranks["b.dcm"]
    a, b = (pydicom.dcmread(r["output"]) for r in merged if r["input"].endswith(".dcm"))
    assert (a.PatientID, a.PatientName) == (b.PatientID, b.PatientName)
