"""The reading-station conventions, offscreen: markers edited on the image, Esc, window/level
presets on the number keys with the values in each pane's corner, zoom keys, a double click
to enlarge a pane, the distance ruler (mm from the DICOM's pixel spacing), the pixel readout
the loading message and the out-of-distribution warning."""

from __future__ import annotations

import os

import pytest
from test_app_support import TIMEOUT_MS, make_window, settle, write_png
from test_app_viewer import write_dicom

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pydicom
from PySide6.QtCore import QPointF, Qt

from app.core.pane_keys import ORIGINAL, PaneKey
from app.core.score_view import PaneScore
from app.qt.panes import Tool
from app.qt.scores import ood_warning
from glow_engine.ood import OODReason
from glow_engine.overlays import BlockMarker
from glow_engine.scores import Score


def test_markers_are_selected_moved_resized_and_removed_on_the_image(qtbot, window) -> None:
    s, reid, handles = window.state, window.reid, window.grid.handles
    assert not reid.remove.isEnabled()  # nothing selected: nothing to remove
    s.add_marker(BlockMarker(0.5, 0.5, 0.1))
    s.add_marker(BlockMarker(0.2, 0.2, 0.1))
    assert s.selected == 1 and len(handles.rois) == 2 and reid.remove.text() == "Remove 2"
    handles.rois[0].sigClicked.emit(handles.rois[0], None)  # a click on the first square
    assert s.selected == 0 and reid.markers.currentRow() == 0
    roi = handles.rois[0]
    roi.setPos(roi.pos() + QPointF(20, 12))  # dragged 20 px right, 12 down (of 100 x 120)
    moved = s.markers[0]
    assert moved.col == pytest.approx(0.7) and moved.row == pytest.approx(0.6)
    handles.rois[0].setSize((24, 24))  # the corner handle: 24 px of the 120 px long side
    assert s.markers[0].size == pytest.approx(0.2) and s.selected == 0
    reid.size.setValue(15)  # the size box edits the selected marker, not only new ones
    assert s.markers[0].size == pytest.approx(0.15) and s.markers[1].size == 0.1
    settle(qtbot, window)
    window.act["delete"].trigger()  # Delete removes the selected marker
    assert s.markers == (BlockMarker(0.2, 0.2, 0.1),) and s.selected is None
    assert not reid.remove.isEnabled()


def test_escape_ends_the_tool_and_resets_the_view(window) -> None:
    window.act["marker"].trigger()
    assert window.grid.tool is Tool.MARKER and window.reid.place.isChecked()
    window.act["ruler"].trigger()  # one tool at a time
    assert window.grid.tool is Tool.RULER and not window.act["marker"].isChecked()
    window.grid.zoom(2.0)
    window.grid.enlarge(PaneKey("dpglow"))
    window.act["escape"].trigger()
    assert window.grid.tool is None and not window.act["ruler"].isChecked()
    assert not window.reid.place.isChecked() and window.grid.enlarged is None
    (x0, x1), _ = window.grid.panes[ORIGINAL].view.viewRange()
    assert x1 - x0 >= 100  # the whole image again


def test_kept_values_above_one_are_explained(window) -> None:
    window.state.add_marker(BlockMarker(0.5, 0.5, 0.1))
    header = window.reid.table.horizontalHeaderItem(1)
    assert header.text() == "Marker 1" and "above 1" in header.toolTip()


def test_marker_headers_are_not_clipped_in_strip_mode(qtbot, window) -> None:
    window.act["strip"].trigger()
    for row in (0.3, 0.5, 0.7):
        window.state.add_marker(BlockMarker(row, 0.5, 0.05))
    settle(qtbot, window)
    table = window.reid.table
    metrics = table.horizontalHeader().fontMetrics()
    for column in range(table.columnCount()):
        text = table.horizontalHeaderItem(column).text()
        assert metrics.horizontalAdvance(text) < table.columnWidth(column), text


def test_window_presets_on_number_keys_show_in_every_corner(window) -> None:
    presets = {a.shortcut().toString(): a for a in window.actions()}
    presets["3"].trigger()  # lungs: the dark range
    assert window.state.display.levels == (0.0, 0.6)
    for key in (ORIGINAL, PaneKey("dpglow"), PaneKey("idldp")):
        assert window.grid.panes[key].levels.text() == "W 0.60  L 0.30"
    presets["1"].trigger()
    assert window.grid.panes[PaneKey("dpglow")].levels.text() == "W 1.00  L 0.50"


def test_each_pane_names_its_mechanism_budget_and_size(window) -> None:
    grid = window.grid
    assert grid.panes[ORIGINAL].info.text() == "Original · 100 × 120 px"
    info = grid.panes[PaneKey("dpglow")].info.text()
    assert info.startswith("DP-GLOW · ε/px 100 · total ε 1.02 × 10⁵") and "27 × 32 px" in info
    assert grid.panes[PaneKey("idldp")].info.text().startswith("ID-LDP · ε/px 100")


def test_zoom_keys_and_double_click_to_enlarge(window) -> None:
    view = window.grid.panes[PaneKey("idldp")].view
    width = lambda: view.viewRange()[0][1] - view.viewRange()[0][0]  # noqa: E731
    full = width()
    window.act["zoom_in"].trigger()
    assert width() == pytest.approx(full / 1.25, rel=0.05)  # every pane follows
    window.act["zoom_out"].trigger()
    window.act["zoom_out"].trigger()
    assert width() > full
    window.act["fit"].trigger()
    assert width() == pytest.approx(full, rel=0.05)
    window.grid.panes[PaneKey("dpglow")].view.doubleClicked.emit()
    shown = [k for k, p in window.grid.panes.items() if p.isVisible()]
    assert shown == [PaneKey("dpglow")]
    window.grid.panes[PaneKey("dpglow")].view.doubleClicked.emit()
    assert all(window.grid.panes[k].isVisible()
               for k in (ORIGINAL, PaneKey("dpglow"), PaneKey("idldp")))


def test_the_ruler_measures_mm_from_the_pixel_spacing(qtbot, window, tmp_path) -> None:
    window.act["ruler"].trigger()
    window.grid.panes[PaneKey("dpglow")].view.rulerDragged.emit(QPointF(0, 0), QPointF(30, 40))
    assert window.grid.rulers[PaneKey("dpglow")].label.textItem.toPlainText() == "50 px"  # a PNG
    path = write_dicom(tmp_path / "spaced.dcm")
    ds = pydicom.dcmread(path)
    ds.ImagerPixelSpacing = [0.5, 0.2]  # row, column (mm)
    ds.save_as(path)
    window.open_path(path)
    qtbot.waitUntil(lambda: window.state.source.name == "spaced.dcm", timeout=TIMEOUT_MS)
    # the same anatomy on the original and a privatised pane
    for key in (ORIGINAL, PaneKey("idldp")):
        window.grid.panes[key].view.rulerDragged.emit(QPointF(0, 0), QPointF(30, 40))
        assert window.grid.rulers[key].label.textItem.toPlainText() == "20.9 mm"
    assert "20.9 mm" in window.statusBar().currentMessage()


def test_the_pixel_readout_is_cleared_when_another_image_opens(qtbot, window, tmp_path) -> None:
    window.hover_label.setText("x 3, y 4:  orig 0.500")
    window.open_path(write_png(tmp_path / "other.png", seed=5))
    qtbot.waitUntil(lambda: window.state.source.name == "other.png", timeout=TIMEOUT_MS)
    assert window.hover_label.text() == ""


def test_arrow_keys_step_through_the_folder_from_the_image(qtbot, window, tmp_path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"img{i}.png", seed=i)
    window.open_folder(folder)
    qtbot.waitUntil(lambda: window.browser.table.rowCount() == 2
                    and window.browser.table.currentRow() == 0, timeout=TIMEOUT_MS)
    graphics = window.grid.panes[ORIGINAL].graphics
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    graphics.setFocus()
    qtbot.waitUntil(graphics.hasFocus)
    qtbot.keyClick(graphics, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: window.state.source.name == "img1.png", timeout=TIMEOUT_MS)


def test_the_score_panel_says_loading_while_the_models_load(qtbot, settings, models,
                                                             tmp_path) -> None:
    w = make_window(qtbot, settings, models)
    w.start(write_png(tmp_path / "x.png"))
    assert w.scores.explain.text() == "Loading the models…"
    settle(qtbot, w)
    assert "bits/dim" in w.scores.explain.text()


def _score(*reasons: OODReason) -> Score:
    return Score(0.0, 0.0, 0.0, 0.0, 2.5, 2.5, bool(reasons), reasons)


def _panes(*pairs: tuple[str, Score]) -> list[PaneScore]:
    return [PaneScore(key, score, False, None) for key, score in pairs]


def test_the_ood_warning_tells_the_input_from_what_privatisation_did() -> None:
    assert ood_warning(_panes((ORIGINAL, _score()), (PaneKey("dpglow"), _score()))) == ""
    # an in-distribution input: the flagged privatised panes are the mechanism's doing, and
    # the input's guesses (a gradient, a drawing...) are not offered for them
    only_private = ood_warning(_panes((ORIGINAL, _score()),
                                      (PaneKey("dpglow"), _score(OODReason.TOO_SIMPLE)),
                                      (PaneKey("idldp"), _score(OODReason.ATYPICAL))))
    assert "The input is" not in only_private
    assert "(by privatisation)" in only_private
    assert "far simpler than the training X-rays: DP-GLOW;" in only_private
    assert "unlike the training X-rays: ID-LDP." in only_private
    assert "a gradient" not in only_private and "a photo" not in only_private
    # a flagged input: its finding in full, and no claim that privatisation caused the rest
    both = ood_warning(_panes((ORIGINAL, _score(OODReason.INVERTED)),
                              (PaneKey("dpglow"), _score(OODReason.INVERTED))))
    assert both.startswith("⚠ The input is outside the model's distribution: looks inverted")
    assert "MONOCHROME1" in both.splitlines()[0]
    assert "by privatisation" not in both
    assert "looks inverted: DP-GLOW." in both.splitlines()[1]
    # the input not scored (yet): nothing is claimed about the cause
    unknown = ood_warning(_panes((PaneKey("dpglow"), _score(OODReason.ATYPICAL))))
    assert "by privatisation" not in unknown and "The input is" not in unknown
    # a stale score (its image changed) is not judged
    assert ood_warning([PaneScore(PaneKey("dpglow"), _score(OODReason.ATYPICAL), True, None)]) == ""
