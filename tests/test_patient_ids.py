"""Per-patient budgets need to know whose image is whose: patient ids from a CSV list, from
the officer's file-name pattern (`--patient-id-pattern`, previewed by
`preview_patient_ids`), or a DICOM's PatientID; an image with none is refused unless the
officer confirms that each such image is a patient of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_images
from test_privatize import write_dicom, write_png

from glow_engine.cli import main
from glow_engine.errors import UserError
from glow_engine.imaging import load_image
from glow_engine.mechanisms import create_mechanism
from glow_engine.modelfile import load_model
from glow_engine.release.batch import ReleaseInput, ReleaseOptions, release_one
from glow_engine.release.inputs import preview_patient_ids
from glow_engine.release.ledger import Ledger

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOTAL = 10 * 32 * 32  # e_px 10 at the tiny model's 32 x 32
NIH = ["00001389_001.png", "00001389_002.png", "00001389_003.png", "00002000_001.png"]


@pytest.fixture()
def nih(tmp_path: Path) -> Path:
    """Three images of one NIH patient and one of another, named as NIH names them."""
    for name, pixels in zip(NIH, tiny_images(4, seed=11), strict=True):
        write_png(tmp_path / "in" / name, pixels)
    return tmp_path / "in"


def privatize(capsys, engine_model_dir: Path, tmp_path: Path, *argv: object
              ) -> tuple[int, str, str]:
    code = main(["privatize", *map(str, argv), "--e-px", "10", "--model",
                 str(engine_model_dir), "--ledger", str(tmp_path / "private" / "l.sqlite"),
                 "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def patients(tmp_path: Path) -> list[dict]:
    with Ledger(tmp_path / "private" / "l.sqlite") as led:
        return led.patient_totals()


def test_a_file_name_pattern_counts_one_patients_images_together(
        capsys, engine_model_dir, nih, tmp_path) -> None:
    with Ledger(tmp_path / "private" / "l.sqlite") as led:
        led.set_patient_budget(2.5 * TOTAL)
    code, out, err = privatize(capsys, engine_model_dir, tmp_path, nih,
                               "--patient-id-pattern", r"^(\d+)_")
    assert code == 1 and "written 3" in out  # the patient's third image is over the budget
    assert err.count("refused:") == 1 and "over the per-patient budget" in err
    assert sorted((p["images"], p["total_epsilon"]) for p in patients(tmp_path)) == [
        (1, TOTAL), (2, 2 * TOTAL)]
    assert all(p["budget_key"].startswith("patient:") for p in patients(tmp_path))


def test_images_without_a_patient_id_are_refused_unless_confirmed(
        capsys, engine_model_dir, nih, tmp_path) -> None:
    code, out, err = privatize(capsys, engine_model_dir, tmp_path, nih)
    assert code == 1 and "written 0" in out and err.count("refused:") == 4
    assert "no patient id" in err and "Nothing was spent" in err
    assert err.splitlines()[-1].startswith("warning: 4 image(s) had no patient id and were "
                                           "not released: give --patient-id-pattern")
    assert patients(tmp_path) == [] and not (tmp_path / "out").exists()
    code, out, err = privatize(capsys, engine_model_dir, tmp_path, nih,
                               "--confirm-one-patient-per-image")
    assert code == 0 and "written 4" in out
    assert err.startswith("warning: 4 image(s) had no patient id and were each counted")
    assert [p["images"] for p in patients(tmp_path)] == [1, 1, 1, 1]


@pytest.mark.parametrize("pattern, why", [(r"^(\d+_", "not a valid regular expression"),
                                          (r"^\d+_", "has no group")])
def test_an_unusable_pattern_is_one_clear_error(capsys, engine_model_dir, nih, tmp_path,
                                                pattern: str, why: str) -> None:
    code, _, err = privatize(capsys, engine_model_dir, tmp_path, nih, "--patient-id-pattern",
                             pattern)
    assert code == 2 and err.count("\n") == 1 and why in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "private").exists()


def test_the_preview_shows_what_the_pattern_extracts(tmp_path: Path) -> None:
    files = [tmp_path / name for name in NIH] + [tmp_path / "PAT-7" / "chest.png",
                                                 tmp_path / "notes.png"]
    assert preview_patient_ids(r"^(\d+)_", files, tmp_path) == [
        (name, name[:8]) for name in NIH] + [("PAT-7/chest.png", None), ("notes.png", None)]
    assert preview_patient_ids(r"^([^/]+)/", files[-2:], tmp_path) == [
        ("PAT-7/chest.png", "PAT-7"), ("notes.png", None)]
    assert preview_patient_ids(r"(\d+)", [Path("/elsewhere/123.png")], tmp_path) == [
        ("123.png", "123")]  # outside the folder: its name
    with pytest.raises(UserError, match="has no group"):
        preview_patient_ids("x", files)


def test_a_list_comes_first_and_a_dicom_must_agree(capsys, engine_model_dir, tmp_path) -> None:
    images = tiny_images(3, seed=12)
    write_png(tmp_path / "in" / "00000001_000.png", images[0])
    write_dicom(tmp_path / "in" / "00000002_000.dcm", images[1], patient_id="OTHER")
    (tmp_path / "in" / "list.csv").write_text("path,patient_id\n00000001_000.png,FROM-LIST\n"
                                              "00000002_000.dcm,\n")
    code, out, err = privatize(capsys, engine_model_dir, tmp_path, tmp_path / "in" / "list.csv",
                               "--patient-id-pattern", r"^(\d+)_")
    assert code == 1 and "written 1" in out
    assert "differs from the file's PatientID" in err  # the pattern said 00000002
    with Ledger(tmp_path / "private" / "l.sqlite") as led:
        assert led.spent_on_patient("FROM-LIST", "") == TOTAL


def test_the_windows_export_is_refused_without_a_patient_id_too(engine_model_dir,
                                                                tmp_path) -> None:
    write_png(tmp_path / "a.png", tiny_images(1, seed=13)[0])
    mech = create_mechanism("dpglow", load_model(engine_model_dir), mode="paper", alpha=0.4)
    item = ReleaseInput.from_image(load_image(tmp_path / "a.png"), mech.resolution)
    with Ledger(tmp_path / "private" / "l.sqlite") as led:
        opts = ReleaseOptions(e_px=10, out_dir=tmp_path / "out")
        outcome = release_one(item, mech, led, opts)
        assert outcome.status == "refused" and "no patient id" in outcome.message
        confirmed = ReleaseOptions(e_px=10, out_dir=tmp_path / "out", one_patient_per_image=True)
        assert release_one(item, mech, led, confirmed).status == "written"
