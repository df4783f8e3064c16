"""Every key the README lists, pressed on the window (offscreen), does what the README says;
and the images use the space: square panes as large as their area allows, and the compare
mode (C) showing the original and one privatised pane side by side."""

from __future__ import annotations

import math
import os

import pytest
from test_app_support import TIMEOUT_MS

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.core.pane_keys import MAIN_KEYS, ORIGINAL, PaneKey
from app.qt.export import ExportDialog
from app.qt.panes import Tool
from glow_engine.overlays import BlockMarker


def press(qtbot, window, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(window.grid.panes[ORIGINAL].graphics, key, modifier)
    QApplication.processEvents()


def test_the_readme_keys_do_what_it_says(qtbot, window) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    s, grid = window.state, window.grid
    press(qtbot, window, Qt.Key.Key_3)
    assert s.display.levels == (0.0, 0.6)  # lungs
    press(qtbot, window, Qt.Key.Key_1)
    assert s.display.levels == (0.0, 1.0)
    press(qtbot, window, Qt.Key.Key_W)
    assert s.display.levels != (0.0, 1.0)  # the image's own 0.5-99.5 percentiles
    for key, levels in ((Qt.Key.Key_4, (0.25, 0.85)), (Qt.Key.Key_5, (0.5, 1.0))):
        press(qtbot, window, key)
        assert s.display.levels == levels
    press(qtbot, window, Qt.Key.Key_2)
    assert s.display.levels not in ((0.5, 1.0), (0.0, 1.0))  # auto, as W
    for key, field in ((Qt.Key.Key_I, "invert"), (Qt.Key.Key_D, "difference"),
                       (Qt.Key.Key_S, "strip")):
        press(qtbot, window, key)
        assert getattr(s.display, field), field
    press(qtbot, window, Qt.Key.Key_F)
    assert s.flip
    seed = s.params.noise_seed
    press(qtbot, window, Qt.Key.Key_Space)
    assert s.params.noise_seed == seed + 1
    e_px = s.params.e_px
    press(qtbot, window, Qt.Key.Key_BraceRight)
    assert s.params.e_px == pytest.approx(10 * e_px, rel=0.01)
    press(qtbot, window, Qt.Key.Key_BracketLeft)
    assert s.params.e_px == pytest.approx(10 * e_px / 10**0.25, rel=0.01)
    press(qtbot, window, Qt.Key.Key_BracketRight)
    press(qtbot, window, Qt.Key.Key_BraceLeft)
    assert s.params.e_px == pytest.approx(e_px, rel=0.01)
    view = grid.panes[ORIGINAL].view
    width = view.viewRange()[0][1] - view.viewRange()[0][0]
    press(qtbot, window, Qt.Key.Key_Plus)
    assert view.viewRange()[0][1] - view.viewRange()[0][0] < width
    press(qtbot, window, Qt.Key.Key_Minus)
    press(qtbot, window, Qt.Key.Key_Minus)
    assert view.viewRange()[0][1] - view.viewRange()[0][0] > width
    for key in (Qt.Key.Key_Equal, Qt.Key.Key_R):  # fit, reset: back to the whole image
        press(qtbot, window, Qt.Key.Key_Plus)
        press(qtbot, window, key)
        assert view.viewRange()[0][1] - view.viewRange()[0][0] == pytest.approx(width, rel=0.02)
    press(qtbot, window, Qt.Key.Key_M)
    assert grid.tool is Tool.MARKER
    press(qtbot, window, Qt.Key.Key_L)
    assert grid.tool is Tool.RULER
    press(qtbot, window, Qt.Key.Key_Escape)
    assert grid.tool is None
    s.add_marker(BlockMarker(0.5, 0.5, 0.1))
    press(qtbot, window, Qt.Key.Key_Delete)
    assert s.markers == ()
    press(qtbot, window, Qt.Key.Key_C)
    assert grid.compared == PaneKey("dpglow")
    press(qtbot, window, Qt.Key.Key_C)
    assert grid.compared is None
    press(qtbot, window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert window.ledger_window is not None and window.ledger_window.isVisible()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    press(qtbot, window, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert window.batch_window is not None and window.batch_window.isVisible()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    press(qtbot, window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert window.findChildren(ExportDialog)
    window.findChildren(ExportDialog)[-1].reject()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    press(qtbot, window, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: s.source.name == "Synthetic sample", timeout=TIMEOUT_MS)


def _image_side(pane) -> int:
    return min(pane.graphics.width(), pane.graphics.height())


def test_panes_are_squares_as_large_as_the_area_and_compare_doubles_them(qtbot, window):
    window.resize(1300, 850)
    QApplication.processEvents()
    grid = window.grid
    area = grid.main_area
    panes = [grid.panes[k] for k in MAIN_KEYS]
    sides = [_image_side(p) for p in panes]
    assert max(sides) - min(sides) <= 2  # equal
    for pane in panes:  # square images: no black band above and below
        assert abs(pane.graphics.width() - pane.graphics.height()) <= 4
    # as large as the area allows: no arrangement of four squares would be larger
    best = max(min((area.width() - 4 * (c - 1)) // c,
                   (area.height() - 4 * (-(-4 // c) - 1)) // -(-4 // c) - panes[0].chrome())
               for c in range(1, 5))
    assert sides[0] >= best - 4
    window.compare_with(PaneKey("idldp"))
    QApplication.processEvents()
    shown = [k for k, p in grid.panes.items() if p.isVisible()]
    assert set(shown) == {PaneKey("idldp"), ORIGINAL}
    assert _image_side(grid.panes[PaneKey("idldp")]) > 1.5 * sides[0]  # the room of four for two
    window.escape()
    QApplication.processEvents()
    assert grid.compared is None and grid.panes[PaneKey("dppix")].isVisible()
    assert math.isclose(_image_side(grid.panes[PaneKey("dppix")]), sides[3], abs_tol=2)
