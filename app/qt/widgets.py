"""Small widget behaviours shared by the panels and dialogs."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt
from PySide6.QtGui import QGuiApplication, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QTextBrowser,
    QWidget,
)

WHEEL_TARGETS = (QAbstractSpinBox, QComboBox, QSlider)
DIALOG_MARGIN = 60  # px left around a dialog for its title bar and the desktop's panels


class _FocusedWheel(QObject):
    """Lets a value widget take the mouse wheel only while it has the keyboard focus: an
    unfocused one passes the wheel on to its parent (a scrolling panel scrolls), so scrolling
    over a panel never changes a setting by accident."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and not watched.hasFocus():
            event.ignore()  # ignored and filtered: QApplication offers it to the parent
            return True
        return False


_FILTER = _FocusedWheel()


def guard_wheel(root: QWidget) -> None:
    """Every spin box, combo box and slider under `root` (created so far) takes the wheel only
    when focused; a click or Tab focuses it (StrongFocus: the wheel itself does not)."""
    for cls in WHEEL_TARGETS:
        for widget in root.findChildren(cls):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(_FILTER)


class ElidedLabel(QLabel):
    """A one-line label that shows "…" where it is too narrow (a clipped "1000" must never
    read as "100"); eliding in the middle keeps both the name and the budget at the end."""

    def __init__(self, mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        super().__init__()
        self.mode = mode

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        painter.drawText(rect, int(self.alignment()),
                         self.fontMetrics().elidedText(self.text(), self.mode, rect.width()))


class FixedText(QTextBrowser):
    """Read-only text of a fixed number of lines that scrolls when it holds more: a longer
    explanation or warning never pushes the controls under it (a label would grow and move
    them under the pointer)."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self._shown = ""
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setOpenExternalLinks(True)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        margin = 2 * int(self.document().documentMargin())
        self.setFixedHeight(lines * self.fontMetrics().lineSpacing() + margin + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def setText(self, text: str) -> None:
        if text != self._shown:  # the same text again keeps where it was scrolled to
            self._shown = text
            super().setText(text)

    def text(self) -> str:
        return self.toPlainText()


def available_area(widget: QWidget) -> QRect:
    """The part of the widget's screen that windows may use (without panels and docks)."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    return screen.availableGeometry()


def fit_to_screen(dialog: QWidget, wanted: QSize) -> None:
    """Resize a dialog to `wanted`, shrunk to fit the available screen area with room for
    its title bar (a 780 px tall page on a 768 px screen hides its Close button)."""
    area = available_area(dialog.parentWidget() or dialog)
    dialog.resize(min(wanted.width(), area.width() - DIALOG_MARGIN),
                  min(wanted.height(), area.height() - DIALOG_MARGIN))


def with_browse(edit: QLineEdit, browse: Callable[[], None]) -> QWidget:
    """A path field with its Browse… button."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    layout.addWidget(button)
    return row


def ask_ledger(parent: QWidget, current: str) -> str:
    """A ledger file to use: an existing one is appended to, so no overwrite question ("" if
    the user cancelled)."""
    path, _ = QFileDialog.getSaveFileName(
        parent, "Privacy ledger", current, "SQLite ledger (*.sqlite *.db)",
        options=QFileDialog.Option.DontConfirmOverwrite)
    return path
