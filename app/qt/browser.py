"""Open folder: every image of a folder (DICOM studies included) as a sortable list with
thumbnails and anomaly scores computed in the background; arrow keys move through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import FolderListing, Thumb
from app.core.state import Aspect, ViewState
from glow_engine.imaging.pixels import to_uint8

THUMB_PX = 56
PATH_ROLE = Qt.ItemDataRole.UserRole


class NumberItem(QTableWidgetItem):
    """Sorts by the number, not the text; unscored rows sort last."""

    def __init__(self, value: float | None, text: str) -> None:
        super().__init__(text)
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine = self.value if self.value is not None else float("inf")
        theirs = getattr(other, "value", None)
        return mine < (theirs if theirs is not None else float("inf"))


class FolderBrowser(QWidget):
    chosen = Signal(Path)

    def __init__(self, state: ViewState) -> None:
        super().__init__()
        self.state = state
        self.header = QLabel("No folder open")
        self.header.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Image", "bits/dim", "Flag"])
        self.table.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.table.verticalHeader().hide()
        # Room for the whole thumbnail with the style's cell padding (+4 cropped it), and for
        # the name beside it: a long path loses its middle, never the file name.
        self.table.verticalHeader().setDefaultSectionSize(THUMB_PX + 12)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.setMinimumWidth(THUMB_PX + 260)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSortingEnabled(True)
        self.table.currentCellChanged.connect(self._on_current)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.header)
        layout.addWidget(self.table)
        self._folder: Path | None = None
        state.changed.connect(self._on_changed)

    def _show_folder(self, listing: FolderListing) -> None:
        folder, paths = listing.folder, listing.paths
        self._folder = folder
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(paths))
        for row, path in enumerate(paths):
            name = QTableWidgetItem(str(path.relative_to(folder)))
            name.setData(PATH_ROLE, str(path))
            name.setToolTip(str(path.relative_to(folder)))  # whole, where the column cuts it
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, NumberItem(None, "…"))
            self.table.setItem(row, 2, QTableWidgetItem(""))
        self.table.setSortingEnabled(True)
        self._show_progress()

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if Aspect.FOLDER in aspects and self.state.folder is not None:
            self._show_folder(self.state.folder)
        if Aspect.THUMBS in aspects:
            for thumb in self.state.thumbs.values():
                self._show_thumb(thumb)
            self._show_progress()

    def _row_of(self, path: Path) -> int | None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(PATH_ROLE) == str(path):
                return row
        return None

    def _show_thumb(self, thumb: Thumb) -> None:
        row = self._row_of(thumb.path)
        if row is None or self.table.item(row, 1).value is not None:
            return
        sorting = self.table.isSortingEnabled()
        self.table.setSortingEnabled(False)  # keep the row in place while filling it
        name = self.table.item(row, 0)
        if thumb.pixels is not None:
            name.setIcon(QIcon(_pixmap(thumb.pixels)))
        if thumb.error:
            name.setToolTip(f"{name.text()}\n{thumb.error}")
            self.table.item(row, 2).setText("unreadable")
        elif thumb.score is not None:
            self.table.setItem(row, 1, NumberItem(thumb.score.bpd_mixture,
                                                  f"{thumb.score.bpd_mixture:.3f}"))
            self.table.item(row, 2).setText("⚠ OOD" if thumb.score.out_of_distribution else "")
        else:
            self.table.item(row, 1).setText("—")  # no normal model: nothing to score with
        self.table.setSortingEnabled(sorting)

    def _show_progress(self) -> None:
        if self._folder is None:
            return
        done, total = len(self.state.thumbs), self.table.rowCount()
        progress = f" — scoring {done}/{total}" if done < total else ""
        self.header.setText(f"{self._folder.name}: {total} images{progress}")

    def _on_current(self, row: int, *_: int) -> None:
        item = self.table.item(row, 0) if row >= 0 else None
        if item is not None:
            self.chosen.emit(Path(item.data(PATH_ROLE)))


def _pixmap(pixels: np.ndarray) -> QPixmap:
    data = np.ascontiguousarray(to_uint8(pixels))
    image = QImage(data.data, data.shape[1], data.shape[0], data.strides[0],
                   QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(image.copy())  # copy: the numpy buffer is temporary
