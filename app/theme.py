"""Dark (qdarkstyle's default) and light themes, plus the few styles of our own widgets."""

from __future__ import annotations

import pyqtgraph as pg
import qdarkstyle
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")

# Pane titles must read at a glance; hints stay out of the way; warnings must not.
_EXTRA = """
QLabel#paneTitle { font-size: 13px; font-weight: bold; padding: 2px 4px; }
QLabel#paneCaption { font-size: 12px; padding: 0px 4px; }
QLabel#hint { font-size: 11px; color: %(hint)s; }
QLabel#warning { font-weight: bold; color: %(warning)s; }
QLabel#placeholder { font-size: 15px; color: %(hint)s; padding: 40px; }
"""
_COLOURS = {
    "dark": {"hint": "#9da9b5", "warning": "#ffb74d"},
    "light": {"hint": "#54616d", "warning": "#b35c00"},
}


def configure_plots() -> None:
    """pyqtgraph's process-wide options, set once at start-up: images in numpy's row-major
    order, smooth lines."""
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


def apply_theme(app: QApplication, name: str) -> str:
    """Apply a theme by name (unknown names fall back to dark); returns the name used."""
    name = name if name in THEMES else "dark"
    palette = qdarkstyle.LightPalette if name == "light" else qdarkstyle.DarkPalette
    sheet = qdarkstyle.load_stylesheet(qt_api="pyside6", palette=palette)
    app.setStyleSheet(sheet + _EXTRA % _COLOURS[name])
    return name
