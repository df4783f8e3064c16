"""Dark (qdarkstyle's default) and light themes, plus the few styles of our own widgets."""

from __future__ import annotations

import pyqtgraph as pg
import qdarkstyle
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")

# Pane titles must read at a glance; hints are quieter but still readable (full size, a
# lighter grey); warnings and the privacy statement's headline must not be missed.
_EXTRA = """
QLabel#paneTitle { font-size: 13px; font-weight: bold; padding: 2px 4px; }
QLabel#paneCaption { font-size: 12px; padding: 0px 4px; }
QLabel#paneOverlay { font-size: 12px; color: #f0f0f0; background: rgba(0, 0, 0, 150);
                     padding: 1px 3px; }
QLabel#hint, QTextBrowser#hint { color: %(hint)s; }
QLabel#warning, QTextBrowser#warning { font-weight: bold; color: %(warning)s; }
QTextBrowser#hint, QTextBrowser#warning { background: transparent; border: none; }
QLabel#statement { font-weight: bold; }
QLabel#statement[level="NONE"], QLabel#statement[level="NO_FORMAL"] { color: %(warning)s; }
QLabel#statement[level="FORMAL"], QLabel#statement[level="STRONG"] { color: %(good)s; }
QLabel#placeholder { font-size: 15px; color: %(hint)s; padding: 40px; }
"""
_COLOURS = {
    "dark": {"hint": "#c3ccd5", "warning": "#ffb74d", "good": "#81c784"},
    "light": {"hint": "#3f4a55", "warning": "#b35c00", "good": "#2e7d32"},
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
