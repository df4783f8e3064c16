"""The privacy officer's decisions in the window, offscreen: whose image is whose in a folder
release (patient IDs from a file-name pattern, with a preview; a plain warning before images
without one are released), the per-patient budget set from the ledger window (lowering it,
raising it only as a recorded override), refusals in the window's own words; on the tiny
test models, and once on the shipped ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_app_support import TIMEOUT_MS, make_window, open_batch, settle, write_png

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QMessageBox

from app.core.option_words import BURNED_IN_BOX, ONE_PATIENT_BOX, RAISE_BOX
from app.qt.export import ExportDialog
from app.qt.main_window import ModelPaths
from glow_engine.release.ledger import Ledger
from glow_engine.resources import default_model_dir


def nih_folder(root: Path) -> Path:
    """Three images of one patient and one of another, named as NIH names them."""
    folder = root / "nih"
    folder.mkdir()
    for i, name in enumerate(("00001389_001", "00001389_002", "00001389_003", "00002000_000")):
        write_png(folder / f"{name}.png", seed=i, height=40, width=36)
    return folder


def run(qtbot, batch) -> None:
    """Release, and wait for its summary (the release may first wait for the preview of the
    inputs' patient IDs)."""
    batch.start.click()
    qtbot.waitUntil(lambda: batch.state.batch_done is not None and batch.request is None,
                    timeout=120_000)


def patient_count(tmp_path: Path) -> int:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        return len(ledger.patient_totals())


def test_patient_ids_come_from_a_file_name_pattern_with_a_preview(qtbot, window,
                                                                  tmp_path) -> None:
    batch = open_batch(window, nih_folder(tmp_path), tmp_path)
    batch.patients.setCurrentIndex(batch.patients.findData("pattern"))
    batch.pattern.setText(r"^(\d+)_")
    batch.preview_patients()
    qtbot.waitUntil(lambda: "00001389_001.png → 00001389" in batch.patient_preview.text(),
                    timeout=TIMEOUT_MS)
    assert "00002000_000.png → 00002000" in batch.patient_preview.text()
    assert "Every one of the 4 images has a patient ID" in batch.patient_preview.text()
    run(qtbot, batch)
    assert window.state.batch_done.counts == {"written": 4}
    assert patient_count(tmp_path) == 2  # three images of one patient count together


def test_images_without_a_patient_are_released_only_when_confirmed(qtbot, window, tmp_path,
                                                                   monkeypatch) -> None:
    batch = open_batch(window, nih_folder(tmp_path), tmp_path)
    batch.preview_patients()
    qtbot.waitUntil(lambda: "4 of 4 images have no patient ID" in batch.patient_preview.text(),
                    timeout=TIMEOUT_MS)
    asked = []
    answer = QMessageBox.StandardButton.No
    monkeypatch.setattr("app.qt.batch_window.QMessageBox.question",
                        lambda *args, **kw: asked.append(args[2]) or answer)
    batch.start.click()  # the plain warning; "No": nothing is released
    assert asked and "4 of the 4 images have no patient ID" in asked[0]
    assert batch.request is None and not (tmp_path / "out").exists()
    assert not batch.one_patient.isChecked()
    answer = QMessageBox.StandardButton.Yes
    run(qtbot, batch)  # confirmed: one patient per image
    assert batch.one_patient.isChecked() and batch.one_patient.text() == ONE_PATIENT_BOX
    assert window.state.batch_done.counts == {"written": 4}
    assert patient_count(tmp_path) == 4


def test_a_dicom_without_burned_in_statement_is_refused_in_the_windows_words(
        qtbot, window, tmp_path) -> None:
    from test_app_viewer import write_dicom

    folder = tmp_path / "dicom"
    folder.mkdir()
    write_dicom(folder / "patient.dcm")  # does not say whether text is burned in
    batch = open_batch(window, folder, tmp_path)
    run(qtbot, batch)
    problems = batch.problems.toPlainText()
    assert "refused" in problems and f"“{BURNED_IN_BOX}”" in problems
    assert "--allow" not in problems


def test_the_per_patient_budget_is_set_from_the_ledger_window(qtbot, window, tmp_path) -> None:
    path = tmp_path / "ledger.sqlite"
    window.settings.setValue("ledger", str(path))
    window.show_ledger()
    ledger_window = window.ledger_window
    ledger_window.new_budget.setText("5e6")
    ledger_window.store_budget()  # no ledger yet: setting a budget makes one
    qtbot.waitUntil(lambda: "5 × 10⁶" in ledger_window.budget.text(), timeout=TIMEOUT_MS)
    ledger_window.new_budget.setText("1e6")  # lowering: always
    ledger_window.store_budget()
    qtbot.waitUntil(lambda: "1 × 10⁶" in ledger_window.budget.text(), timeout=TIMEOUT_MS)
    ledger_window.new_budget.setText("2e6")  # raising: refused, naming the override
    ledger_window.store_budget()
    message = ledger_window.budget_message
    qtbot.waitUntil(lambda: not message.isHidden(), timeout=TIMEOUT_MS)
    assert f"“{RAISE_BOX}”" in message.text() and "--force" not in message.text()
    assert "dpglow" not in ledger_window.budget.text()
    assert "1 × 10⁶" in ledger_window.budget.text()
    ledger_window.override.setChecked(True)
    ledger_window.note.setText("new study protocol")
    ledger_window.store_budget()
    qtbot.waitUntil(lambda: "2 × 10⁶" in ledger_window.budget.text(), timeout=TIMEOUT_MS)
    assert message.isHidden() and not ledger_window.override.isChecked()
    with Ledger(path) as ledger:
        assert ledger.patient_budget == 2e6
        changes = ledger.db.execute("SELECT new, forced, note FROM budget_changes").fetchall()
    assert changes[-1] == (2e6, 1, "new study protocol")  # recorded as an override
    ledger_window.new_budget.setText("banana")
    ledger_window.store_budget()
    assert "is not a budget" in message.text()


@pytest.mark.slow
def test_the_shipped_models_export_release_and_ledger(qtbot, settings, tmp_path) -> None:
    """The batch window, the export and the ledger window on the shipped models."""
    models = ModelPaths(default_model_dir("mixture"), default_model_dir("normal"))
    if not (models.mixture / "weights.safetensors").is_file():
        pytest.skip("the shipped models are not in this checkout")
    window = make_window(qtbot, settings, models)
    folder = nih_folder(tmp_path)
    window.start(folder / "00001389_001.png")
    settle(qtbot, window)
    batch = open_batch(window, folder, tmp_path, e_px="100")
    batch.patients.setCurrentIndex(batch.patients.findData("pattern"))
    batch.pattern.setText(r"^(\d+)_")
    run(qtbot, batch)
    assert window.state.batch_done.counts == {"written": 4}
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    dialog.patient_id.setText("00001389")
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=60_000)
    window.show_ledger()
    ledger_window = window.ledger_window
    qtbot.waitUntil(lambda: ledger_window.tables["Releases"].rowCount() == 5,
                    timeout=TIMEOUT_MS)
    assert ledger_window.tables["Per patient"].rowCount() == 2  # the export counted with them
    side = window.state.resolution
    ledger_window.new_budget.setText(str(3 * 100 * side**2))
    ledger_window.store_budget()
    qtbot.waitUntil(lambda: ledger_window.tables["Per patient"].item(0, 4).text() != "—",
                    timeout=TIMEOUT_MS)
    shown = {ledger_window.tables["Per patient"].item(r, 4).text() for r in range(2)}
    assert shown == {"33%", "133%  over"}  # the patient with four releases is over it
