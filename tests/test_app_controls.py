"""The side panel's controls, offscreen: the budget field applies exactly what it shows (or
says why not), presets, the mouse wheel only over a focused control, and the window's
shortcuts while the budget field has the focus."""

from __future__ import annotations

import math
import os

import pytest

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from app.qt.export import ExportDialog
from app.qt.main_window import MainWindow
from glow_engine.budget import format_e_px, parse_e_px


def type_budget(window: MainWindow, text: str) -> None:
    window.controls.field.setText(text)
    window.controls.field.editingFinished.emit()


@pytest.mark.parametrize("text", ["0.5", "1e-3", "0.0001", "6.1e-05", "2500", "1e-6", "1e4"])
def test_a_typed_budget_is_applied_exactly_and_shown_as_applied(window, text) -> None:
    type_budget(window, text)
    applied = window.state.params.e_px
    assert applied == float(text)
    assert parse_e_px(window.controls.field.text()) == applied
    assert window.controls.refused.isHidden()


@pytest.mark.parametrize(("text", "why"), [
    ("1e9", "outside the range"), ("0", "not a budget"), ("-1", "not a budget"),
    ("abc", "not a budget"), ("1e-7", "outside the range"), ("", "not a budget"),
    ("1e400", "too large")])
def test_a_refused_budget_says_why_and_keeps_the_applied_one(window, text, why) -> None:
    before = window.state.params.e_px
    type_budget(window, text)
    refused = window.controls.refused
    assert window.state.params.e_px == before
    assert window.controls.field.text() == format_e_px(before)  # the field never lies
    assert not refused.isHidden() and why in refused.text()
    assert f"Still applied: {format_e_px(before)}" in refused.text()
    type_budget(window, "10")  # a good value clears the reason
    assert refused.isHidden() and window.state.params.e_px == 10


def test_presets_reach_formal_protection(window) -> None:
    window.controls._fill_presets()
    actions = {a.text(): a for a in window.controls.presets.menu().actions()}
    actions["Total ε = 1 for the whole image"].trigger()
    assert window.state.total_epsilon == pytest.approx(1.0)
    assert parse_e_px(window.controls.field.text()) == window.state.params.e_px
    actions["∞: no noise (no privacy)"].trigger()
    assert math.isinf(window.state.params.e_px)


def wheel(widget: QWidget, notches: int = 1) -> None:
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_over_an_unfocused_control_changes_nothing(qtbot, window) -> None:
    c, reid = window.controls, window.reid
    window.state.set_mode("paper")  # α takes the wheel only where the rule uses it
    window.activateWindow()
    window.grid.setFocus()
    before = (c.alpha.value(), c.mode.currentIndex(), c.slider.value(), reid.size.value(),
              reid.intensity.value(), window.state.params)
    for widget in (c.alpha, c.mode, c.slider, reid.size, reid.intensity):
        wheel(widget, -2)
    assert (c.alpha.value(), c.mode.currentIndex(), c.slider.value(), reid.size.value(),
            reid.intensity.value(), window.state.params) == before
    c.alpha.setFocus()
    qtbot.waitUntil(c.alpha.hasFocus)
    wheel(c.alpha, 1)  # a focused control still takes the wheel
    assert window.state.params.alpha == pytest.approx(before[0] + 0.05)


def test_window_shortcuts_work_while_the_budget_field_has_focus(qtbot, window) -> None:
    field = window.controls.field
    window.activateWindow()
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)
    before = window.state.params.e_px
    qtbot.keyClick(field, Qt.Key.Key_BracketRight)  # ε up a quarter decade
    assert window.state.params.e_px > before
    qtbot.keyClick(field, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: any(d.isVisible() for d in window.findChildren(ExportDialog)))
    for dialog in window.findChildren(ExportDialog):
        dialog.reject()
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)
    field.clear()
    qtbot.keyClicks(field, "1e-3")  # typing a budget still types (no shortcut steals it)
    assert field.text() == "1e-3"
