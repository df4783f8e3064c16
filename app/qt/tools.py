"""Re-identification checks (paper section 4.2): block markers and a left-right flip applied
to the input before privatisation, and what survives of them in each privatised image."""

from __future__ import annotations

import math
from dataclasses import replace

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.core.pane_keys import PaneKey
from app.core.state import Aspect, ViewState
from glow_engine.overlays import BlockMarker

DEFAULT_SIZE = 0.08  # of the long side: about the paper's marker on a 512 image
MIN_DRAWN_SIZE = 0.01  # a drag smaller than this counts as a click


def fit_height(table: QTableWidget, max_rows: int = 9) -> None:
    """As tall as its rows (up to max_rows, then it scrolls): no empty band under a table."""
    rows = min(table.rowCount(), max_rows)
    table.setFixedHeight(table.horizontalHeader().height() + rows
                         * table.verticalHeader().defaultSectionSize() + 2 * table.frameWidth())


KEPT_TIP = ("Marker kept: how much of the block marker's added contrast survives "
            "privatisation, after ÷ before (1 = intact, 0 = erased). Noise can add contrast "
            "of its own at the marker, so values a little above 1 (or below 0) mean "
            "\"intact\" (or \"erased\") within the noise, not more than the marker.")
SIMILARITY_TIP = "Similarity: correlation with the original (1 = the same picture)"


class ReidPanel(QGroupBox):
    def __init__(self, state: ViewState) -> None:
        super().__init__("Re-identification checks")
        self.state = state
        self.place = QPushButton("Place marker")
        self.place.setCheckable(True)
        self.place.setToolTip("Then click on the original (or drag a square) to add a "
                              "block marker (M); Esc ends")
        self.size = QDoubleSpinBox()
        self.size.setRange(1, 50)
        self.size.setValue(DEFAULT_SIZE * 100)
        self.size.setSuffix(" %")
        self.size.setDecimals(0)
        self.size.setToolTip("Side of the selected marker (or of a new clicked one), % of the "
                             "image's long side")
        self.intensity = QDoubleSpinBox()
        self.intensity.setRange(0.0, 1.0)
        self.intensity.setSingleStep(0.1)
        self.intensity.setValue(1.0)
        self.intensity.setToolTip("Of the selected marker (or a new one): 0 = black, 1 = white")
        self.markers = QListWidget()
        self.markers.setFixedHeight(3 * self.markers.fontMetrics().lineSpacing() + 6)
        self.markers.setToolTip("Select a marker to edit it here or on the image: drag it to "
                                "move, its corner to resize; Delete removes it")
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Remove the selected marker (Delete)")
        self.clear = QPushButton("Clear")
        self.flip = QCheckBox("Flip left-right (simulated situs inversus)")
        self.flip.setToolTip("Mirror the input before privatisation (F)")
        self.table = QTableWidget(0, 1)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setTextElideMode(Qt.TextElideMode.ElideRight)
        # The columns are explained in their headers' tooltips: on a 768 px screen the
        # table, not a paragraph about it, gets the room.
        self.table.setToolTip(f"{SIMILARITY_TIP}.\n{KEPT_TIP}")
        self._layout()
        self.remove.clicked.connect(self.remove_selected)
        self.clear.clicked.connect(state.clear_markers)
        self.flip.toggled.connect(state.set_flip)
        self.markers.currentRowChanged.connect(
            lambda row: state.select_marker(row if row >= 0 else None))
        self.size.valueChanged.connect(lambda v: self._edit_selected(size=v / 100))
        self.intensity.valueChanged.connect(lambda v: self._edit_selected(intensity=v))
        state.changed.connect(self._on_changed)
        self._show_overlays()
        self._show_metrics()

    def _layout(self) -> None:
        row = QHBoxLayout()
        row.addWidget(self.place)
        row.addWidget(QLabel("size"))
        row.addWidget(self.size)
        row.addWidget(QLabel("intensity"))
        row.addWidget(self.intensity)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove)
        buttons.addWidget(self.clear)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.markers)
        layout.addLayout(buttons)
        layout.addWidget(self.flip)
        layout.addWidget(self.table)

    def add_marker(self, row: float, col: float, drawn_size: float) -> None:
        """A click (or a drawn square) on the original: add a marker there."""
        size = drawn_size if drawn_size >= MIN_DRAWN_SIZE else self.size.value() / 100
        self.state.add_marker(BlockMarker(row, col, min(size, 1.0), self.intensity.value()))

    def remove_selected(self) -> None:
        if self.state.selected is not None:
            self.state.remove_marker(self.state.selected)

    def _edit_selected(self, **change: float) -> None:
        """The size and intensity boxes edit the selected marker (new markers take them too)."""
        index = self.state.selected
        if index is not None:
            self.state.replace_marker(index, replace(self.state.markers[index], **change))

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if aspects & {Aspect.OVERLAYS, Aspect.SOURCE, Aspect.SELECTION}:
            self._show_overlays()
        if aspects & {Aspect.RENDERED, Aspect.STRIP, Aspect.OVERLAYS, Aspect.SOURCE,
                      Aspect.DISPLAY}:
            self._show_metrics()

    def _show_overlays(self) -> None:
        selected = self.state.selected
        with QSignalBlocker(self.markers), QSignalBlocker(self.size), \
                QSignalBlocker(self.intensity), QSignalBlocker(self.flip):
            self.markers.clear()
            for i, m in enumerate(self.state.markers, 1):
                self.markers.addItem(f"{i}: at {m.col:.0%} across, {m.row:.0%} down; "
                                     f"side {m.size:.0%}; intensity {m.intensity:.2f}")
            self.markers.setCurrentRow(-1 if selected is None else selected)
            if selected is not None:
                marker = self.state.markers[selected]
                self.size.setValue(marker.size * 100)
                self.intensity.setValue(marker.intensity)
            self.flip.setChecked(self.state.flip)
        # Always shown, its height fixed: clearing the markers moves nothing under the pointer.
        self.remove.setEnabled(selected is not None)
        self.remove.setText("Remove" if selected is None else f"Remove {selected + 1}")
        self.clear.setEnabled(bool(self.state.markers))

    def _show_metrics(self) -> None:
        rows = self._metric_rows()
        n = len(self.state.markers)
        self.table.setColumnCount(1 + n)
        for c, (text, tip) in enumerate([("Similarity", SIMILARITY_TIP)]
                                        + [(f"Marker {i}", KEPT_TIP) for i in range(1, n + 1)]):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(c, item)
        self.table.setRowCount(len(rows))
        keys = ["similarity"] + [f"marker{i}" for i in range(1, n + 1)]
        for r, (key, metrics) in enumerate(rows):
            self.table.setVerticalHeaderItem(r, QTableWidgetItem(key.label))
            for c, name in enumerate(keys):
                item = QTableWidgetItem(_format(metrics.get(name)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(r, c, item)
        fit_height(self.table, max_rows=4)  # the panel fits a 768-pixel screen (risk text too)

    def _metric_rows(self) -> list[tuple[PaneKey, dict[str, float]]]:
        rows = []
        for result in (self.state.rendered, self.state.strip if self.state.display.strip
                       else None):
            if result is not None:
                rows.extend(result.metrics.items())
        return rows


def _format(value: float | None) -> str:
    if value is None:
        return "…"
    return "—" if math.isnan(value) else f"{value:.2f}"
