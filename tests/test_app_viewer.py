"""The viewer window, offscreen: loading, the slider under a burst, tools, dialogs, errors,
folder browsing and a clean close while the worker is busy."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from test_app_support import TIMEOUT_MS, make_window, settle, write_png

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pydicom
import pyqtgraph as pg
from PySide6.QtCore import QMimeData, QObject, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent, QTextDocument
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QTextBrowser

import glow_engine
from app.core.budget_scale import SLIDER_INF, position_to_e_px
from app.core.messages import Kind
from app.core.option_words import BURNED_IN_BOX, FORCE_BOX
from app.core.pane_keys import ORIGINAL, PaneKey
from app.qt.dialogs import About, Document, ModelInfo, ReleaseReport, TagBrowser
from app.qt.export import ExportDialog
from app.qt.main_window import MainWindow, ModelPaths
from app.qt.panes import DIFF_LUT
from glow_engine.imaging import load_image
from glow_engine.release.ledger import Ledger
from glow_engine.resources import resource_path


def shown(window: MainWindow, key: str) -> np.ndarray:
    return window.grid.panes[key].image.image


def test_open_shows_original_and_both_mechanisms(window: MainWindow) -> None:
    s = window.state
    assert s.source.name == "chest.png" and "chest.png" in window.windowTitle()
    assert shown(window, ORIGINAL).shape == (120, 100)
    assert shown(window, PaneKey("dpglow")).shape == (32, 27)  # model resolution, image aspect
    for key in (ORIGINAL, PaneKey("dpglow"), PaneKey("idldp")):
        assert "Score: " in window.grid.panes[key].caption.text()  # bits/dim under M
    assert "100" in window.grid.panes[PaneKey("dpglow")].title.text()
    assert "Device: CPU" in window.device_label.text()
    assert window.controls.total.text().startswith(f"Total ε = {100 * 32 * 32 / 1e5:.3g} × 10⁵")


def test_slider_burst_computes_only_the_newest(qtbot, window: MainWindow) -> None:
    before = shown(window, PaneKey("dpglow")).copy()
    ran = window.worker.computed[Kind.RENDER]
    positions = [110 + 5 * i for i in range(50)]
    for position in positions:  # 50 moves faster than the engine can decode
        window.controls.slider.setValue(position)
    settle(qtbot, window)
    last = position_to_e_px(positions[-1])
    assert window.state.params.e_px == last
    assert window.worker.computed[Kind.RENDER] - ran < 50
    assert window.worker.dropped[Kind.RENDER] > 0
    assert f"{last:g}" in window.grid.panes[PaneKey("dpglow")].title.text()
    np.testing.assert_array_equal(shown(window, PaneKey("dpglow")),
                                  window.state.rendered.panes[PaneKey("dpglow")].pixels)
    assert not np.array_equal(shown(window, PaneKey("dpglow")), before)


def test_typed_budget_and_infinity(qtbot, window: MainWindow) -> None:
    window.controls.field.setText("inf")
    window.controls.field.editingFinished.emit()
    settle(qtbot, window)
    assert math.isinf(window.state.params.e_px)
    assert window.controls.slider.value() == SLIDER_INF
    assert window.controls.clip.isEnabled()
    window.controls.clip.setChecked(True)
    settle(qtbot, window)
    assert not window.state.params.clip
    assert "without clip" in window.grid.panes[PaneKey("dpglow")].title.toolTip()
    window.controls.field.setText("banana")
    window.controls.field.editingFinished.emit()
    assert window.controls.field.text() == "∞"  # rejected, shows the current value


def test_marker_by_click_and_flip(qtbot, window: MainWindow) -> None:
    window.act["marker"].trigger()
    pane = window.grid.panes[ORIGINAL]
    centre = pane.view.mapViewToScene(pane.view.viewRect().center())
    point = pane.graphics.mapFromScene(centre)
    qtbot.mouseClick(pane.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(point.x(), point.y()))
    qtbot.waitUntil(lambda: len(window.state.markers) == 1, timeout=TIMEOUT_MS)
    marker = window.state.markers[0]
    assert abs(marker.row - 0.5) < 0.05 and abs(marker.col - 0.5) < 0.05
    assert marker.size == pytest.approx(0.08)
    settle(qtbot, window)
    assert shown(window, ORIGINAL)[60, 50] == 1.0
    assert window.reid.table.columnCount() == 2  # similarity + marker 1 kept
    assert window.reid.table.item(0, 1).text() not in ("", "…")
    window.act["flip"].trigger()
    settle(qtbot, window)
    assert window.state.flip and "flipped" in window.grid.panes[ORIGINAL].title.text()
    window.reid.markers.setCurrentRow(0)
    window.reid.remove.click()
    assert window.state.markers == ()


def test_view_options_reach_every_pane(qtbot, window: MainWindow) -> None:
    window.act["diff"].trigger()
    assert window.grid.panes[PaneKey("dpglow")].image.lut is DIFF_LUT
    assert window.grid.panes[ORIGINAL].image.lut is not DIFF_LUT
    window.act["invert"].trigger()
    assert window.grid.panes[ORIGINAL].image.lut[0, 0] == 255
    window.grid.panes[PaneKey("idldp")].view.windowDragged.emit(0.0, 0.0, True)
    # narrower, up
    window.grid.panes[PaneKey("idldp")].view.windowDragged.emit(-200.0, -60.0, False)
    lo, hi = window.state.display.levels
    assert hi - lo < 0.6 and (lo + hi) / 2 > 0.5
    assert tuple(window.grid.panes[ORIGINAL].image.levels) == pytest.approx((lo, hi))
    window.act["window"].trigger()  # auto window from the original's percentiles
    assert window.state.display.levels != (lo, hi)
    window.act["strip"].trigger()
    settle(qtbot, window)
    assert window.grid.panes[PaneKey("dpglow", 10.0)].isVisible()
    assert shown(window, PaneKey("idldp", 1000.0)).shape == (32, 27)


def test_bad_file_shows_a_message_and_keeps_the_image(qtbot, window, tmp_path) -> None:
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 50)
    before = window.state.source
    window.open_path(bad)
    qtbot.waitUntil(lambda: bool(window.messages), timeout=TIMEOUT_MS)
    assert "corrupt.dcm" in window.messages[-1]
    assert window.state.source is before
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert boxes and "corrupt.dcm" in boxes[-1].text()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # nothing written


def test_bad_model_keeps_the_previous_one(qtbot, window, tmp_path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "weights.safetensors").write_bytes(b"\x00" * 64)
    before = window.state.models
    window.load_models(ModelPaths(junk, None))
    qtbot.waitUntil(lambda: bool(window.messages), timeout=TIMEOUT_MS)
    assert "junk" in window.messages[-1] and window.state.models is before


def test_missing_default_models_is_a_message_not_a_crash(qtbot, settings, tmp_path) -> None:
    w = make_window(qtbot, settings, ModelPaths(tmp_path / "nowhere" / "mixture", None))
    w.start(write_png(tmp_path / "x.png"))
    qtbot.waitUntil(lambda: w.state.source is not None, timeout=TIMEOUT_MS)
    assert w.state.models is None and w.worker_label.text() in ("no model", "ready")
    w.show_model_info()
    assert "missing" in w.messages[-1] and str(tmp_path / "nowhere") in w.messages[-1]


def test_folder_browser_scores_sorts_and_steps(qtbot, window, tmp_path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    for i in range(3):
        write_png(folder / f"img{i}.png", seed=i, height=64 + 16 * i, width=64)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    window.open_folder(folder)  # listed on the engine thread
    table = window.browser.table
    qtbot.waitUntil(lambda: table.rowCount() == 4, timeout=TIMEOUT_MS)
    assert window.folder_dock.isVisible()
    qtbot.waitUntil(lambda: len(window.state.thumbs) == 4, timeout=TIMEOUT_MS)
    texts = {table.item(r, 0).text(): (table.item(r, 1).text(), table.item(r, 2).text())
             for r in range(4)}
    assert texts["broken.png"][1] == "unreadable"
    assert all(float(texts[f"img{i}.png"][0]) > 0 for i in range(3))
    table.sortItems(1, Qt.SortOrder.AscendingOrder)
    values = [table.item(r, 1).value for r in range(4)]
    assert values[-1] is None and values[:3] == sorted(values[:3])
    table.selectRow(0)
    first = Path(table.item(0, 0).data(Qt.ItemDataRole.UserRole))
    qtbot.waitUntil(lambda: window.state.source.path == first, timeout=TIMEOUT_MS)
    qtbot.keyClick(table, Qt.Key.Key_Down)
    second = Path(table.item(1, 0).data(Qt.ItemDataRole.UserRole))
    qtbot.waitUntil(lambda: window.state.source.path == second, timeout=TIMEOUT_MS)


def test_dicom_tags_and_recent_files(qtbot, window, tmp_path, settings) -> None:
    path = write_dicom(tmp_path / "study.dcm")
    window.open_path(path)
    qtbot.waitUntil(lambda: window.state.source.name == "study.dcm", timeout=TIMEOUT_MS)
    window.show_tags()
    browser = window.findChildren(TagBrowser)[-1]
    values = [browser.tree.topLevelItem(i).text(3)
              for i in range(browser.tree.topLevelItemCount())]
    assert "Doe^Jane" in values
    browser.filter.setText("PatientName")
    visible = [browser.tree.topLevelItem(i) for i in range(browser.tree.topLevelItemCount())
               if not browser.tree.topLevelItem(i).isHidden()]
    assert [item.text(1) for item in visible] == ["Patient's Name"]
    assert settings.value("recent")[0] == str(path)
    assert window.recent_menu.actions()[0].text() == str(path)


def export_with_dialog(qtbot, window: MainWindow, fmt: str = "png", **checks: bool) -> None:
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    dialog.fmt.setCurrentIndex(dialog.fmt.findData(fmt))
    dialog.one_patient.setChecked(dialog.needs_patient)  # a PNG: a patient of its own
    for name, on in checks.items():
        getattr(dialog, name).setChecked(on)
    dialog.accept()
    settle(qtbot, window)


def test_export_png_is_a_new_draw_recorded_in_the_ledger(qtbot, window, tmp_path, settings):
    ledger_path = tmp_path / "ledger.sqlite"
    settings.setValue("export_dir", str(tmp_path / "out"))
    settings.setValue("ledger", str(ledger_path))
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    texts = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "NEW draw, not the preview" in texts and "1.02 × 10⁵" in texts
    qtbot.waitUntil(lambda: window.state.ledger is not None, timeout=TIMEOUT_MS)  # read
    assert not ledger_path.exists()  # showing the dialog writes nothing
    dialog.reject()
    export_with_dialog(qtbot, window)
    out = window.state.last_export.path
    assert out.parent == tmp_path / "out" and "new draw" in window.state.last_export.summary
    written = load_image(out).pixels
    preview = window.state.rendered.panes[PaneKey("dpglow")].frame
    assert written.shape == preview.shape == (32, 32)  # the whole frame, whatever the source
    assert not np.array_equal(written, preview)  # fresh secure noise, not the preview draw
    assert len(out.stem) == 16 and "image" not in out.name  # a random name
    report = window.state.last_export.report  # beside the operator's record, not in OUT
    assert report is not None and report.parent == tmp_path and report.suffix == ".html"
    html = report.read_text()
    assert "released by this run</th><td>1 image(s)" in html and out.name not in html
    box = window.findChildren(QMessageBox)[-1]
    [show] = [b for b in box.buttons() if b.text() == "Show the release report"]
    show.click()  # shown inside the program: no browser needed
    shown = window.findChildren(ReleaseReport)[-1]
    assert "released by this run" in shown.text.toPlainText() and str(report) in shown.where.text()
    shown.reject()
    sha = window.state.source.image.content_sha256
    with Ledger(ledger_path) as ledger:
        assert ledger.spent_on_image(sha) == 100 * 32 * 32
    export_with_dialog(qtbot, window, keep_aspect=True)  # another draw: it adds up
    second = window.state.last_export.path
    assert second != out and load_image(second).pixels.shape == (32, 27)
    assert len((tmp_path / "out" / "manifest.csv").read_text().splitlines()) == 3
    with Ledger(ledger_path) as ledger:
        assert ledger.spent_on_image(sha) == 2 * 100 * 32 * 32


def test_the_decoding_choice_changes_dpglow_and_is_recorded(qtbot, window, tmp_path, settings):
    ledger_path = tmp_path / "ledger.sqlite"
    settings.setValue("export_dir", str(tmp_path / "out"))
    settings.setValue("ledger", str(ledger_path))
    window.state.set_mode("paper")  # whichever the defaults are
    window.state.set_estimate("plain")
    window.controls.apply(1000)  # paper mode at alpha 0.4: b_k = w_k / 400, the mean applies
    settle(qtbot, window)
    plain = window.state.rendered.panes[PaneKey("dpglow")].frame.copy()
    decoding = window.controls.decoding
    decoding.setCurrentIndex(decoding.findData("posterior-mean"))
    assert window.state.params.estimate == "posterior-mean"
    settle(qtbot, window)
    posterior = window.state.rendered.panes[PaneKey("dpglow")].frame.copy()
    assert not np.array_equal(plain, posterior)
    assert window.state.params.e_px == 1000 and window.state.total_epsilon == 1000 * 32 * 32
    export_with_dialog(qtbot, window)
    with Ledger(ledger_path) as ledger:
        [release] = ledger.releases()
    assert release["mode"] == "paper-posterior" and release["e_px"] == 1000
    window.show_batch()  # the folder release starts from the viewer's choice and keeps its own
    batch = window.batch_window
    assert batch.decoding.currentData() == "posterior-mean"
    assert batch._params(1000).mode_of("dpglow") == "paper-posterior"
    batch.decoding.setCurrentIndex(batch.decoding.findData("plain"))
    assert batch._params(1000).mode_of("dpglow") == "paper"
    decoding.setCurrentIndex(decoding.findData("plain"))  # the same preview noise as before
    settle(qtbot, window)
    assert np.array_equal(window.state.rendered.panes[PaneKey("dpglow")].frame, plain)


def test_export_dicom_is_deidentified_and_burned_in_needs_consent(qtbot, window, tmp_path,
                                                                  settings):
    settings.setValue("export_dir", str(tmp_path / "out"))
    settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))
    window.open_path(write_dicom(tmp_path / "study.dcm", burned_in=True))
    qtbot.waitUntil(lambda: window.state.source.name == "study.dcm", timeout=TIMEOUT_MS)
    settle(qtbot, window)
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    dialog.fmt.setCurrentIndex(dialog.fmt.findData("dicom"))
    dialog.keep_aspect.setChecked(True)
    dialog.accept()  # refused inside the dialog, which stays open with the choices made
    assert dialog.isVisible() and not dialog.refusal.isHidden()
    assert f"Tick “{BURNED_IN_BOX}”" in dialog.refusal.text() and "--" not in dialog.refusal.text()
    assert dialog.burned_in.text() == BURNED_IN_BOX and dialog.burned_in.isVisibleTo(dialog)
    assert dialog.fmt.currentData() == "dicom" and dialog.keep_aspect.isChecked()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    dialog.burned_in.setChecked(True)
    dialog.keep_aspect.setChecked(False)
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=TIMEOUT_MS)  # closed once written
    out = window.state.last_export.path
    data = out.read_bytes()
    assert b"Doe^Jane" not in data and b"PAT-123" not in data
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES"
    assert any("DP-GLOW" in line for line in ds.DeidentificationMethod)


def test_a_refused_export_names_the_dialogs_box_and_keeps_it_open(qtbot, window, tmp_path,
                                                                   settings) -> None:
    """The engine's refusal (here the per-patient budget) is said inside the dialog, in the
    window's words; the choices stay; ticking the box it names exports."""
    ledger_path = tmp_path / "ledger.sqlite"
    settings.setValue("export_dir", str(tmp_path / "out"))
    settings.setValue("ledger", str(ledger_path))
    with Ledger(ledger_path) as ledger:
        ledger.set_patient_budget(10.0)  # far below one export at e_px 100
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    dialog.fmt.setCurrentIndex(dialog.fmt.findData("png"))
    dialog.patient_id.setText("00001389")  # a PNG: its patient typed in
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.exporting, timeout=TIMEOUT_MS)
    said = dialog.refusal.text()
    assert dialog.isVisible() and said.startswith("Not exported:")
    assert f"tick “{FORCE_BOX}”" in said and "--force" not in said
    assert dialog.force_budget.text() == FORCE_BOX
    assert not [b for b in window.findChildren(QMessageBox) if b.isVisible()]  # no 2nd box
    dialog.force_budget.setChecked(True)
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=TIMEOUT_MS)
    assert window.state.last_export.path.parent == tmp_path / "out"


def test_drop_a_file_and_model_information(qtbot, window, tmp_path) -> None:
    path = write_png(tmp_path / "dropped.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: window.state.source.name == "dropped.png", timeout=TIMEOUT_MS)
    window.show_model_info()
    info = window.findChildren(ModelInfo)[-1]
    text = info.findChild(QTextBrowser).toPlainText()
    assert "32 × 32" in text and window.state.models.mixture_sha in text


def test_about_shows_the_version_and_the_loaded_models(window: MainWindow) -> None:
    window.show_about()
    about = window.findChildren(About)[-1]
    text = about.text.toPlainText()
    assert f"DP-GLOW Viewer {glow_engine.__version__}" in text
    assert window.state.models.mixture_sha[:16] in text and "Wang" in text
    assert window.act["about"] in window.menuBar().actions()[-1].menu().actions()


def test_help_opens_the_documents_with_their_pictures(window, monkeypatch, tmp_path) -> None:
    window.show_document("Evaluation results")
    doc = window.findChildren(Document)[-1]
    assert "re-identification" in doc.text.toPlainText().lower()
    image = doc.text.document().resource(QTextDocument.ResourceType.ImageResource,
                                         QUrl("img/eval_auc_vs_epsilon.png"))
    assert image is not None and not image.isNull()  # relative pictures resolve
    assert image.width() <= doc.text.MAX_IMAGE_WIDTH  # and are shrunk to the page
    window.show_document("Privacy notes")
    assert "epsilon" in window.findChildren(Document)[-1].text.toPlainText()
    # a build without the documents says so instead of opening an empty window
    monkeypatch.setattr("app.qt.main_window.document_path", lambda name: tmp_path / name)
    window.show_document("Privacy notes")
    assert "missing from this installation" in window.messages[-1]


def test_theme_is_remembered(window: MainWindow, settings: QSettings) -> None:
    window.set_theme("light")
    assert settings.value("theme") == "light"
    assert "#FAFAFA" in QApplication.instance().styleSheet().upper()
    window.set_theme("dark")


def test_close_while_busy_stops_the_worker(qtbot, window, tmp_path) -> None:
    paths = [write_png(tmp_path / f"f{i}.png", seed=i) for i in range(20)]
    window.state.score_folder(paths)
    for e_px in (2, 3, 4, 5):
        window.state.set_e_px(e_px)
    # What closing does, with a deadline: a worker that does not stop fails the test.
    assert window.worker.stop(deadline_s=TIMEOUT_MS / 1000)
    assert window.worker.isFinished() and window.worker.computed[Kind.THUMBS] < len(paths)
    window.close()  # the engine has stopped: closing returns at once


def _write_reference_for(models: ModelPaths, path: Path, mixture_sha: str | None = None) -> None:
    from glow_engine.validation_scores import write_validation_scores

    sha = {name: json.loads((folder / "model.json").read_text())["sha256"]
           for name, folder in (("mixture", models.mixture), ("normal", models.normal))}
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(30), np.ones(25)].astype(int)
    write_validation_scores(
        path, mixture_sha256=mixture_sha or sha["mixture"], normal_sha256=sha["normal"],
        labels=labels, bpd_mixture=rng.normal(5 + labels, 0.3),
        ratio_bits_per_pixel=rng.normal(0.1 - 0.05 * labels, 0.02),
        data={"file": "tiny.npz", "split": "val"})


def test_score_plot_draws_the_validation_histograms_of_these_models(
        qtbot, settings, models, tmp_path, monkeypatch) -> None:
    # The shipped reference is looked up through the resources helper (DPGLOW_RESOURCES).
    icons = resource_path("icons")
    monkeypatch.setenv("DPGLOW_RESOURCES", str(tmp_path / "resources"))
    reference = tmp_path / "resources" / "models" / "reference_scores.json"
    reference.parent.mkdir(parents=True)
    (tmp_path / "resources" / "icons").symlink_to(icons)
    _write_reference_for(models, reference)
    w = make_window(qtbot, settings, models)
    w.start(write_png(tmp_path / "chest.png"))
    settle(qtbot, w)
    panel = w.scores
    assert w.state.models.reference is not None
    assert set(panel.histograms) == {"normal", "abnormal"}
    items = panel.plot.getPlotItem().items
    lines = [i for i in items if isinstance(i, pg.InfiniteLine)]
    for name, n in (("normal", 30), ("abnormal", 25)):
        hist = panel.histograms[name]
        assert hist in items and hist.zValue() < min(line.zValue() for line in lines)
        x, y = hist.getData()
        assert len(x) == len(y) + 1 and y.sum() == pytest.approx(1.0)  # share of n images
        assert f"val. {name} ({n})" in panel.legend.text()
    assert "the validation X-rays' scores" in panel.reference_info.text()
    labels = [line.label.format for line in lines if getattr(line, "label", None) is not None]
    assert labels == ["OOD limit"]  # the histograms replace the median and mean lines

    # Another model's reference (hash mismatch): today's plot and a note, no histograms.
    _write_reference_for(models, reference, mixture_sha="0" * 64)
    w.load_models(models)
    qtbot.waitUntil(lambda: w.state.models is not None and w.state.settled
                    and w.state.models.reference is None, timeout=TIMEOUT_MS)
    assert panel.histograms == {}
    assert panel.reference_info.text().startswith("No validation reference for these models")
    assert not any(isinstance(i, pg.PlotCurveItem) for i in panel.plot.getPlotItem().items)


def test_smoke_test_exits_zero_and_writes_a_screenshot(models, tmp_path) -> None:
    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "app", "--smoke-test", "--screenshot", str(shot),
         "--model-dir", str(models.mixture.parent), "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "smoke test: ok" in done.stdout
    assert shot.stat().st_size > 10_000


def write_dicom(path: Path, burned_in: bool = False) -> Path:
    """A small synthetic MONOCHROME2 DICOM with fake patient details."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PAT-123", "DX"
    ds.Rows, ds.Columns = 64, 48
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.arange(64 * 48) % 251).astype(np.uint8).tobytes()
    if burned_in:
        ds.BurnedInAnnotation = "YES"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_qt_object_in_garbage_is_never_freed_on_the_engine_thread(window, tmp_path) -> None:
    """Freed on the engine thread, a Qt object can deadlock Qt (a suite once hung for good in
    QObject::~QObject on the worker thread). Here a Qt object waits in a reference cycle while
    the engine allocates plenty and this thread allocates nothing: only this thread may free
    it."""
    freed_on: list[str] = []
    paths = [write_png(tmp_path / f"f{i}.png", seed=i) for i in range(6)]
    thresholds = gc.get_threshold()
    gc.set_threshold(10)  # a thread allocating ten containers would start a collection
    try:
        window.state.score_folder(paths)  # the engine loads and scores them, one per turn
        garbage = QObject()
        garbage.cycle = garbage  # only the cyclic collector can free it
        weakref.finalize(garbage, lambda: freed_on.append(threading.current_thread().name))
        del garbage
        time.sleep(1.5)  # no events, no allocations here meanwhile
    finally:
        gc.set_threshold(*thresholds)
    assert window.worker.computed[Kind.THUMBS] > 0  # the engine did run meanwhile
    assert freed_on == []
    gc.collect()  # what the GUI thread's timer does
    assert freed_on == [threading.main_thread().name]


def test_automatic_collection_is_back_when_the_window_has_closed(qtbot, settings,
                                                                 models) -> None:
    assert gc.isenabled()
    window = make_window(qtbot, settings, models)
    window.close()
    assert gc.isenabled()
