"""`dpglow privatize` end to end on the tiny model: PNG and DICOM in and out, the published
manifest and the operator's record, the ledger, resume, budgets, burned-in annotations, CSV
lists with patient ids, torchrun shards, and no identity anywhere in what is published."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import tiny_images
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from glow_engine import cli
from glow_engine.imaging import load_image
from glow_engine.mechanisms import DPGlow
from glow_engine.modelfile import LoadedModel, load_model, save_model
from glow_engine.release.batch import (
    ReleaseInput,
    ReleaseOptions,
    release_folder,
    release_one,
)
from glow_engine.release.ledger import Ledger
from glow_engine.release.records import MANIFEST_FIELDS, read_rows

PATIENT = "Zyxwerth^Jolantha"
PATIENT_ID = "PID-5550123"
TOTAL = 100 * 32 * 32  # e_px 100 at the tiny model's 32 x 32


@pytest.fixture(scope="module")
def model_dir(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, tiny_model.flow, {"name": "tiny"}, tiny_model.calibration,
               tiny_model.fitted_box)
    return path


def write_dicom(path: Path, pixels: np.ndarray, burned_in: str | None = "NO",
                patient_id: str = PATIENT_ID, **extra: str) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT, patient_id, "DX"
    ds.InstitutionName = "Saint Example Hospital"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.add_new(0x00091001, "LO", "PRIVATE-SECRET-4242")
    u8 = np.rint(pixels * 255).astype(np.uint8)
    ds.Rows, ds.Columns = u8.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = u8.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    """in/ with 3 PNGs (one 48x64), 2 DICOMs of one patient and a corrupt PNG."""
    folder = tmp_path / "in"
    images = tiny_images(5, seed=21)
    for i in range(2):
        write_png(folder / f"p{i}.png", images[i])
    wide = np.kron(images[2], np.ones((2, 2), np.float32))[:48]
    write_png(folder / "sub" / "wide.png", wide)
    write_dicom(folder / "sub" / "a.dcm", images[3])
    write_dicom(folder / "sub" / "b.dcm", images[4])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def run(capsys: pytest.CaptureFixture[str], model_dir: Path, tmp_path: Path,
        *argv: str) -> tuple[int, str, str]:
    code = cli.main(["privatize", *argv, "--model", str(model_dir), "--ledger",
                     str(tmp_path / "ledger.sqlite"), "--no-progress",
                     "--confirm-one-patient-per-image"])  # the PNGs have no patient id
    out = capsys.readouterr()
    return code, out.out, out.err


def manifest(out: Path) -> list[dict]:
    return read_rows(out / "manifest.csv")


def record(tmp_path: Path) -> list[dict]:
    return read_rows(tmp_path / "ledger.record.csv")


def digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_png_release_publishes_only_random_names_and_the_manifest(capsys, model_dir, inputs,
                                                                  tmp_path) -> None:
    before = digest(inputs)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, model_dir, tmp_path, str(inputs), "--e-px", "100",
                            "--mode", "tight", "--out", str(out))
    assert code == 1 and "failed:" in err and "broken.png" in err  # one input failed
    assert "written 5, done earlier 0, failed 1" in stdout
    assert digest(inputs) == before  # inputs untouched
    rows = manifest(out)
    assert len(rows) == 5 and list(rows[0]) == list(MANIFEST_FIELDS)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([r["file"] for r in rows] + ["manifest.csv"])  # flat, nothing else
    for row in rows:
        assert len(Path(row["file"]).stem) == 16 and row["file"].endswith(".png")
        img = np.asarray(Image.open(out / row["file"]))
        assert img.shape == (32, 32) and img.dtype == np.uint8  # wide.png too: same size
        assert (row["width"], row["height"], row["frame"]) == ("32", "32", "square")
        assert float(row["total_epsilon"]) == TOTAL and "tight" in row["description"]
        assert row["sha256"] == hashlib.sha256((out / row["file"]).read_bytes()).hexdigest()
    private = record(tmp_path)
    assert {Path(r["source"]).name for r in private} == {"p0.png", "p1.png", "wide.png",
                                                          "a.dcm", "b.dcm", "broken.png"}
    assert {r["file"] for r in private if r["status"] == "written"} == {r["file"] for r in rows}
    with Ledger(tmp_path / "ledger.sqlite") as led:
        patients = led.patient_totals()
        assert sum(p["total_epsilon"] for p in patients) == 5 * TOTAL
        assert max(p["images"] for p in patients) == 2  # the two DICOMs: one patient
        assert {r["status"] for r in led.releases()} == {"written"}
        assert {r["output"] for r in led.releases()} == {r["file"] for r in rows}


def test_dicom_release_is_deidentified_square_and_resized(capsys, model_dir, inputs,
                                                          tmp_path) -> None:
    out = tmp_path / "dcm"
    run(capsys, model_dir, tmp_path, str(inputs / "sub"), str(inputs / "p0.png"), "--e-px",
        "1000", "--format", "dicom", "--size", "64", "--linkage", "patient", "--out", str(out))
    rows = manifest(out)
    assert len(rows) == 4 and {row["linkage"] for row in rows} == {"patient"}
    dicoms = []
    for row in rows:
        data = (out / row["file"]).read_bytes()
        for secret in (PATIENT, "Zyxwerth", PATIENT_ID, "Saint Example", "PRIVATE-SECRET"):
            assert secret.encode() not in data
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.pixel_array.shape == (64, 64)
        assert ds.PatientIdentityRemoved == "YES"
        assert "whole 32x32 model frame" in ds.DerivationDescription
        assert "resized from 32x32 to 64x64" in ds.DerivationDescription
        assert "e_px=1000" in " ".join(ds.DeidentificationMethod)
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
        if ds.get("BurnedInAnnotation"):  # the DICOM sources declared NO
            assert ds.BurnedInAnnotation == "NO" and row["source_burned_in"] == "NO"
            dicoms.append(ds)
        else:
            assert row["source_burned_in"] == "unknown"  # a PNG says nothing
    assert dicoms[0].PatientID == dicoms[1].PatientID != PATIENT_ID  # one pseudonym


def test_keep_aspect_crops_and_says_so(capsys, model_dir, inputs, tmp_path) -> None:
    out = tmp_path / "aspect"
    code, _, _ = run(capsys, model_dir, tmp_path, str(inputs / "sub" / "wide.png"), "--e-px",
                     "100", "--keep-aspect", "--out", str(out))
    (row,) = manifest(out)
    assert code == 0 and (row["width"], row["height"], row["frame"]) == ("32", "24",
                                                                          "source aspect")
    assert np.asarray(Image.open(out / row["file"])).shape == (24, 32)


def test_rerun_appends_records_and_skips_what_is_released(capsys, model_dir, inputs,
                                                          tmp_path) -> None:
    out = tmp_path / "out"
    args = (str(inputs), "--e-px", "10", "--out", str(out))
    run(capsys, model_dir, tmp_path, *args)
    first = manifest(out)
    deleted, emptied = out / first[0]["file"], out / first[1]["file"]
    deleted.unlink()
    emptied.write_bytes(b"")  # a zero-byte file at an output name is not a release
    code, stdout, _ = run(capsys, model_dir, tmp_path, *args)
    assert code == 1  # broken.png
    assert "written 2, done earlier 3, failed 1" in stdout
    rows = manifest(out)
    assert rows[:5] == first and len(rows) == 7  # appended, never rewritten
    statuses = [row["status"] for row in record(tmp_path)]
    assert len(statuses) - statuses.count("reserved") == 12 and statuses.count("reserved") == 7
    assert emptied.read_bytes() == b""  # left as it was; the image got a new file
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert len(led.releases()) == 7  # 5 first, 2 released again


def test_budget_a_run_may_only_lower_it_and_force_is_recorded(capsys, model_dir, inputs,
                                                              tmp_path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        led.set_patient_budget(2.5 * TOTAL)
    out, sub = tmp_path / "b", str(inputs / "sub")
    for bad in ("1e12", "nan", "-1", "inf"):
        code, _, err = run(capsys, model_dir, tmp_path, sub, "--e-px", "100", "--out",
                           str(out), "--patient-budget", bad)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "manifest.csv").exists()  # refused before anything was released
    code, _, err = run(capsys, model_dir, tmp_path, sub, "--e-px", "100", "--out", str(out),
                       "--patient-budget", str(1.5 * TOTAL))
    statuses = sorted(r["status"] for r in record(tmp_path) if r["status"] != "reserved")
    assert code == 1 and statuses == ["refused", "written", "written"]
    assert "over the per-patient budget 153600" in err  # the run's lower limit
    code, _, _ = run(capsys, model_dir, tmp_path, sub, "--e-px", "100", "--out", str(out))
    assert code == 0  # b.dcm fits the ledger's own budget: 204800 <= 256000
    code, _, err = run(capsys, model_dir, tmp_path, sub, "--e-px", "60", "--out", str(out))
    assert code == 1 and err.count("refused:") == 2 and "--force" in err
    code, _, _ = run(capsys, model_dir, tmp_path, sub, "--e-px", "60", "--out", str(out),
                     "--force")
    assert code == 0
    with Ledger(tmp_path / "ledger.sqlite") as led:
        forced = led.releases(forced_only=True)
        assert len(forced) == 2
        assert all("forced past the per-patient budget 256000" in r["note"] for r in forced)
    assert cli.main(["ledger", str(tmp_path / "ledger.sqlite")]) == 0
    assert capsys.readouterr().out.count("FORCED") >= 2


@pytest.mark.parametrize(("e_px", "why"), [
    ("1e400", "too large to be represented"), ("5e-324", "cannot be released"),
    ("1e-400", "too small"), ("nan", "not a number")])
def test_an_unusable_e_px_is_refused_in_one_line_before_anything_is_released(
        capsys, model_dir, inputs, tmp_path, e_px, why) -> None:
    """1e400 once read as inf and released without noise; 5e-324 ended in a traceback."""
    out = tmp_path / "out"
    code, _, err = run(capsys, model_dir, tmp_path, str(inputs / "sub"), "--e-px", e_px,
                       "--out", str(out))
    assert code == 2 and why in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "manifest.csv").exists()
    assert not (tmp_path / "ledger.sqlite").exists() or not Ledger(
        tmp_path / "ledger.sqlite").releases()


def test_dppix_block_size(capsys, model_dir, inputs, tmp_path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, model_dir, tmp_path, str(inputs / "sub"), "--e-px", "1",
                          "--mechanism", "dppix", "--block-size", "4", "--out", str(out))
    assert code == 0 and "DP-Pix block 4 e_px=1 " in stdout
    assert {r["mode"] for r in manifest(out)} == {"b4"}
    code, _, err = run(capsys, model_dir, tmp_path, str(inputs / "sub"), "--e-px", "1",
                       "--mechanism", "dppix", "--block-size", "5", "--out", str(out))
    assert code == 2 and "must divide the resolution 32" in err and "Traceback" not in err


def test_burned_in_yes_and_unknown_need_an_option(capsys, model_dir, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    images = tiny_images(3, seed=5)
    write_dicom(folder / "yes.dcm", images[0], burned_in="YES")
    write_dicom(folder / "unknown.dcm", images[1], burned_in=None)
    write_png(folder / "plain.png", images[2])
    out = tmp_path / "out"
    args = (str(folder), "--e-px", "100", "--format", "dicom", "--out", str(out))
    code, _, err = run(capsys, model_dir, tmp_path, *args)
    assert code == 1 and err.count("refused:") == 2
    assert "--allow-burned-in" in err and "--allow-unknown-burned-in" in err
    run(capsys, model_dir, tmp_path, *args, "--allow-unknown-burned-in")
    run(capsys, model_dir, tmp_path, *args, "--allow-burned-in")
    by_status = {r["source_burned_in"]: r for r in manifest(out)}
    assert set(by_status) == {"YES", "unknown"}  # the PNG, then unknown.dcm, then yes.dcm
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert len(led.releases()) == 3  # refusals spend nothing
    for row in manifest(out):
        ds = pydicom.dcmread(out / row["file"])
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
        assert ds.get("BurnedInAnnotation", "unknown") == row["source_burned_in"]


def test_csv_patient_ids_share_a_budget(capsys, model_dir, tmp_path) -> None:
    folder = tmp_path / "in"
    images = tiny_images(3, seed=9)
    for i in range(2):
        write_png(folder / f"img{i}.png", images[i])
    write_dicom(folder / "other.dcm", images[2], patient_id="SOMEONE-ELSE")
    listing = folder / "list.csv"
    listing.write_text("path,label,patient_id\nimg0.png,0,P-77\nimg1.png,1,P-77\n"
                       "other.dcm,0,P-77\n")
    code, _, err = run(capsys, model_dir, tmp_path, str(listing), "--e-px", "100", "--out",
                       str(tmp_path / "out"), "--allow-unknown-burned-in")
    assert code == 1 and "differs from the file's PatientID" in err and "P-77" not in err
    with Ledger(tmp_path / "ledger.sqlite") as led:
        (patient,) = led.patient_totals()
        assert patient["images"] == 2 and patient["budget_key"].startswith("patient:")
        assert patient["budget_key"] == f"patient:{led.patient_key('P-77')}"


def test_out_inside_an_input_folder_is_never_an_input(capsys, model_dir, inputs,
                                                      tmp_path) -> None:
    out = inputs / "released"
    run(capsys, model_dir, tmp_path, str(inputs), "--e-px", "100", "--out", str(out))
    _, stdout, _ = run(capsys, model_dir, tmp_path, str(inputs), "--e-px", "100", "--out",
                       str(out))
    assert "written 0, done earlier 5, failed 1" in stdout  # its own outputs were not inputs
    assert not any("released" in r["source"] for r in record(tmp_path))


def test_identity_planted_in_names_folders_and_header_reaches_nothing_in_out(
        capsys, model_dir, tmp_path) -> None:
    # Every planted identifier is searched for in every file name and every header value.
    # In the raw bytes only the long ones: noisy 8-bit pixels spell a short word such as
    # "JOHN" (four mid-grey values) by chance once in a few dozen runs.
    tokens = ["SMITH", "JOHN", "MRN123", "20240607", "00000398", "SECRETHOSP", "QUIXOTE",
              "ZEBULON", "MRN99887766", "1.2.826.0.1.555"]
    long_ones = [t for t in tokens if len(t) >= 8] + ["SMITH^JOHN", "SMITH_JOHN"]
    folder = tmp_path / "SMITH_JOHN_MRN123" / "20240607_CHEST"
    images = tiny_images(3, seed=11)
    write_png(folder / "00000398_002.png", images[0])
    write_dicom(folder / "1.2.826.0.1.555.dcm", images[1], PatientName="SMITH^JOHN",
                PatientID="MRN123", InstitutionName="SECRETHOSP", StudyDate="20240607",
                ViewPosition="MRN99887766", BodyPartExamined="QUIXOTE ZEBULON",
                ImageLaterality="L")
    write_dicom(folder / "SMITH_JOHN_second.dcm", np.kron(images[2], np.ones((2, 1))),
                PatientID="MRN123", ViewPosition="PA", BodyPartExamined="CHEST")
    for fmt in ("png", "dicom"):
        out = tmp_path / f"out-{fmt}"
        code, _, err = run(capsys, model_dir, tmp_path, str(tmp_path / "SMITH_JOHN_MRN123"),
                           "--e-px", "100", "--format", fmt, "--out", str(out))
        assert code == 0, err
        published = list(out.rglob("*"))
        assert len(published) == 4 and all(p.parent == out for p in published)
        for path in published:
            data = path.read_bytes()
            header = " ".join(str(e.value) for e in pydicom.dcmread(path).iterall()
                              if e.keyword != "PixelData") if path.suffix == ".dcm" else ""
            for token in tokens:
                assert token not in path.name and token not in header, (token, path)
            for token in long_ones:
                assert token.encode() not in data, (token, path)
        images = [p for p in published if p.name != "manifest.csv"]
        shapes = {load_image(p).pixels.shape for p in images}
        assert shapes == {(32, 32)}  # inputs of different shapes, outputs of one size
    kept = [pydicom.dcmread(p) for p in (tmp_path / "out-dicom").glob("*.dcm")]
    assert {(d.get("ViewPosition"), d.get("BodyPartExamined"), d.get("ImageLaterality"))
            for d in kept if d.Modality == "DX"} == {(None, None, "L"), ("PA", "CHEST", None)}


def test_release_api_progress_stop_and_release_one(tiny_model, inputs, tmp_path) -> None:
    mech = DPGlow(tiny_model, mode="tight")
    calls: list[tuple[int, int]] = []
    with Ledger(tmp_path / "l.sqlite") as led:
        opts = ReleaseOptions(e_px=100, out_dir=tmp_path / "out", batch_size=2,
                              one_patient_per_image=True)
        summary = release_folder([inputs], mech, led, opts, on_progress=lambda *a:
                                 calls.append(a), should_stop=lambda: len(calls) >= 2)
        assert calls == [(2, 6), (4, 6)] and summary.count("not-started") == 2
        assert not summary.complete and summary.manifest == (tmp_path / "out" / "manifest.csv")
        item = ReleaseInput.from_image(load_image(inputs / "p0.png"), mech.resolution)
        before = led.spent_on_image(item.image_sha256)
        outcome = release_one(item, mech, led, opts)
        assert outcome.status == "written" and outcome.file.parent == tmp_path / "out"
        assert led.spent_on_image(item.image_sha256) == before + TOTAL


@pytest.mark.slow
def test_torchrun_ranks_share_one_secret_and_split_the_inputs(model_dir: Path,
                                                               tmp_path: Path) -> None:
    """Two real torchrun workers (gloo): shared_run_secret broadcasts rank 0's secret, each
    rank releases its share, finish_shards waits for both before they exit."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, pixels in zip(("a.dcm", "b.dcm"), tiny_images(2, seed=22), strict=True):
        write_dicom(folder / name, pixels)  # one patient: one image per rank
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "glow_engine.cli", "privatize", str(folder), "--e-px", "100", "--format", "dicom",
         "--out", str(out), "--model", str(model_dir), "--ledger", str(tmp_path / "l.sqlite"),
         "--linkage", "patient", "--no-progress"],
        env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    # each rank's own one-line error first: torchrun's traceback of the other rank follows it
    said = [line for line in done.stderr.splitlines() if "error:" in line]
    assert done.returncode == 0, "\n".join(said) + "\n" + done.stderr[-2000:]
    released = sorted(out.rglob("*.dcm"))
    assert len(released) == 2  # each input once, by one rank
    a, b = (pydicom.dcmread(path) for path in released)
    # one ledger and folder on both ranks: the patient has one pseudonym, not the original
    assert (a.PatientID, a.PatientName) == (b.PatientID, b.PatientName)
    assert a.PatientID != PATIENT_ID
    assert not np.array_equal(a.pixel_array, b.pixel_array)  # two images, not one twice


def test_records_are_appended_without_interleaving(tmp_path) -> None:
    from glow_engine.release.records import append_rows

    path = tmp_path / "r.csv"
    append_rows(path, ("a", "b"), [{"a": 1, "b": 2}], "test record")
    with path.open("a") as fh:
        fh.write("3,4-cut-off")  # a crash in the middle of a row
    append_rows(path, ("a", "b"), [{"a": 5, "b": 6}], "test record")
    with path.open(newline="") as fh:
        assert list(csv.reader(fh)) == [["a", "b"], ["1", "2"], ["3", "4-cut-off"], ["5", "6"]]


def test_default_model_comes_from_dpglow_resources(capsys, model_dir, inputs, tmp_path,
                                                   monkeypatch) -> None:
    resources = tmp_path / "site-resources"
    shutil.copytree(model_dir, resources / "models" / "mixture")
    monkeypatch.setenv("DPGLOW_RESOURCES", str(resources))
    code = cli.main(["privatize", str(inputs / "p0.png"), "--e-px", "100", "--out",
                     str(tmp_path / "out"), "--ledger", str(tmp_path / "l.sqlite"),
                     "--no-progress", "--confirm-one-patient-per-image"])
    assert code == 0 and "model sha256:" in capsys.readouterr().out
    with Ledger(tmp_path / "l.sqlite") as led:
        (row,) = led.releases()
    assert row["model_sha256"] == load_model(model_dir).sha256
    monkeypatch.setenv("DPGLOW_RESOURCES", str(tmp_path / "nowhere"))
    assert cli.main(["privatize", str(inputs / "p0.png"), "--e-px", "100", "--out",
                     str(tmp_path / "out2"), "--no-progress"]) == 2
    assert "Model not found" in capsys.readouterr().err
