"""The privacy officer's windows, offscreen: a folder released from the window through the
batch release path (progress, cancel, summary, release report), and the ledger window (every
release, totals per patient and image against the budget, filter, CSV) on its ledger. On the
tiny test models, and once on the shipped ones."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from test_app_support import TIMEOUT_MS, Gate, make_window, open_batch, settle, write_png
from test_app_viewer import write_dicom

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.qt.batch_window import BatchWindow
from app.qt.ledger_window import LedgerWindow
from app.qt.main_window import ModelPaths
from glow_engine.modelfile import read_metadata
from glow_engine.privacy_statement import scientific
from glow_engine.release.ledger import Ledger
from glow_engine.resources import default_model_dir


def a_study(root: Path) -> Path:
    folder = root / "study"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"scan{i}.png", seed=i, height=40 + 8 * i, width=36)
    write_dicom(folder / "patient.dcm")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    return folder


def start_release(window, folder: Path, tmp_path: Path, e_px: str = "10") -> BatchWindow:
    """Start releasing `folder` from the batch window (ledger and output in tmp_path)."""
    batch = open_batch(window, folder, tmp_path, e_px)
    batch.allow_burned_in.setChecked(True)  # the test DICOM does not say (unknown)
    batch.one_patient.setChecked(True)  # the PNGs carry no patient ID: each its own patient
    assert batch.start.isEnabled()
    batch.start.click()
    return batch


def release(qtbot, window, folder: Path, tmp_path: Path, e_px: str = "10",
            cancel_at: Gate | None = None) -> BatchWindow:
    """Release `folder` and wait for the end; with `cancel_at`, Cancel is clicked while the
    release is held at that gate."""
    batch = start_release(window, folder, tmp_path, e_px)
    if cancel_at is not None:
        assert cancel_at.reached.wait(TIMEOUT_MS / 1000)
        batch.cancel.click()
        cancel_at.open.set()
    qtbot.waitUntil(lambda: batch.request is None, timeout=60_000)
    return batch


def test_a_folder_is_released_from_the_window(qtbot, window, tmp_path) -> None:
    batch = release(qtbot, window, a_study(tmp_path), tmp_path)
    done = window.state.batch_done
    assert done.counts.get("written") == 4 and sum(done.counts.values()) == 5
    assert any("broken.png" in line for line in done.problems)
    assert "Released 4 of 5 images" in batch.summary.text()
    assert "failed: 1" in batch.summary.text().lower()
    assert batch.progress.text() == "5 of 5 images"
    released = sorted((tmp_path / "out").glob("*.*"))
    assert {p.suffix for p in released} >= {".png", ".csv"}
    assert not any("scan" in p.name or "patient" in p.name for p in released)
    assert done.report is not None and done.report.is_file()
    assert not batch.open_report.isHidden()
    batch.open_report.click()  # inside the program: a workstation may have no browser
    assert batch.report_dialog.isVisible()
    assert "Release report" in batch.report_dialog.text.toPlainText()
    assert str(done.report) in batch.report_dialog.where.text()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert len([r for r in ledger.releases() if r["status"] == "written"]) == 4


def test_cancel_before_the_first_image_releases_nothing(qtbot, window, tmp_path,
                                                        monkeypatch) -> None:
    gate = Gate(monkeypatch, at=0)  # the release is held before its first image
    batch = release(qtbot, window, a_study(tmp_path), tmp_path, cancel_at=gate)
    assert window.state.batch_done.counts == {"not-started": 5}
    text = batch.summary.text()
    assert "Released 0 of 5 images" in text and "Not started: 5 (cancelled)" in text
    assert "nothing was spent" in text
    assert batch.progress.text() == "0 of 5 images"  # not a full bar: nothing was done
    assert not list((tmp_path / "out").glob("*.png"))
    assert not batch.cancel.isEnabled() and batch.start.isEnabled()


def test_progress_counts_images(qtbot, window, tmp_path) -> None:
    # The release lane's progress reaches the bar through the state, for its own request only
    # (the request is held back from the lanes: only the signal is under test).
    window.show_batch()
    batch = window.batch_window
    window.state.requested.disconnect(window.engine.submit)
    batch.inputs.setText(str(tmp_path))
    batch.budget.setText("10")
    batch.one_patient.setChecked(True)  # no wait for the patient-ID preview (held back too)
    batch.start.click()
    window.engine.release.progressed.emit(batch.request.id, 8, 12)
    qtbot.waitUntil(lambda: batch.progress.text() == "8 of 12 images", timeout=TIMEOUT_MS)
    window.engine.release.progressed.emit(batch.request.id - 1, 3, 12)  # an older request
    qtbot.wait(100)
    assert batch.progress.text() == "8 of 12 images"


def test_an_unusable_budget_is_refused_before_anything_runs(qtbot, window) -> None:
    window.show_batch()
    batch = window.batch_window
    batch.budget.setText("banana")
    assert not batch.start.isEnabled() and "not a budget" in batch.meaning.text()
    batch.budget.setText("inf")
    assert batch.no_privacy.isVisibleTo(batch) and not batch.start.isEnabled()
    assert "No privacy" in batch.meaning.text()
    batch.no_privacy.setChecked(True)
    assert batch.start.isEnabled()


def test_the_ledger_window_lists_totals_filters_and_exports(qtbot, window, tmp_path) -> None:
    release(qtbot, window, a_study(tmp_path), tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.set_patient_budget(1e6)
    window.show_ledger()
    ledger_window: LedgerWindow = window.ledger_window
    qtbot.waitUntil(lambda: ledger_window.tables["Releases"].rowCount() == 4,
                    timeout=TIMEOUT_MS)
    patients = ledger_window.tables["Per patient"]
    assert patients.rowCount() == 4  # three PNGs (each its own patient) and one DICOM patient
    assert "1 × 10⁶" in ledger_window.budget.text()
    shown = {patients.item(r, 4).text() for r in range(4)}
    assert shown == {f"{10 * 32 * 32 / 1e6:.0%}"}  # each spent 10240 of 1e6
    texts = [ledger_window.tables["Releases"].item(r, c).text() for r in range(4)
             for c in range(9)]
    assert "PAT-123" not in " ".join(texts) and "Doe" not in " ".join(texts)
    ledger_window.tabs.setCurrentIndex(0)
    key = ledger_window.tables["Releases"].item(0, 7).data(0x0100)  # the first image's key
    ledger_window.filter.setText(key[:10])
    header, rows = ledger_window.visible_rows()
    assert len(rows) == 1 and rows[0][7] == key and header[2] == "ε per pixel"
    out = tmp_path / "ledger.csv"
    ledger_window.export_csv(out)
    qtbot.waitUntil(out.exists, timeout=TIMEOUT_MS)
    with out.open(newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == list(header) and written[1:] == [list(rows[0])]


def test_no_ledger_is_said_not_created(qtbot, window, tmp_path) -> None:
    window.settings.setValue("ledger", str(tmp_path / "none.sqlite"))
    window.show_ledger()
    qtbot.waitUntil(lambda: "There is no ledger" in window.ledger_window.status.text(),
                    timeout=TIMEOUT_MS)
    assert not (tmp_path / "none.sqlite").exists()


@pytest.mark.slow
def test_the_shipped_models_release_a_folder_and_fill_the_ledger(qtbot, settings,
                                                                 tmp_path) -> None:
    models = ModelPaths(default_model_dir("mixture"), default_model_dir("normal"))
    if not (models.mixture / "weights.safetensors").is_file():
        pytest.skip("the shipped models are not in this checkout")
    window = make_window(qtbot, settings, models)
    window.start(write_png(tmp_path / "first.png", height=64, width=64))
    settle(qtbot, window)
    folder = tmp_path / "study"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"s{i}.png", seed=i, height=96, width=80)
    release(qtbot, window, folder, tmp_path, e_px="100")
    assert window.state.batch_done.counts == {"written": 2}
    side = read_metadata(models.mixture)["architecture"]["resolution"]
    assert all(load_side(p) == side for p in (tmp_path / "out").glob("*.png"))
    window.show_ledger()
    qtbot.waitUntil(lambda: window.ledger_window.tables["Releases"].rowCount() == 2,
                    timeout=TIMEOUT_MS)
    total = window.ledger_window.tables["Releases"].item(0, 3).text()
    assert total == scientific(100 * side**2)  # e_px 100 over the model's side^2 pixels


def load_side(path: Path) -> int:
    from glow_engine.imaging import load_image

    return load_image(path).pixels.shape[0]
