"""The privacy officer's ledger window: every release (time, mechanism, budget, forced or
not), the totals per patient and per image against the per-patient budget, which is set here
(lowering it always; raising or clearing it only as an explicit override, kept in the
ledger's budget history), a filter, and CSV export of what is shown.

The keys are the ledger's own pseudonyms (an image's content hash, a keyed hash of its
patient id, glow_engine.release.ledger): no plain identifier is stored, so none can be shown.
The ledger is read, and the CSV written, on the engine thread.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import BudgetChange, LedgerTable
from app.core.option_words import LEDGER_BOXES, RAISE_BOX, in_window_words
from app.core.state import Aspect, ViewState
from app.qt.browser import NumberItem
from app.qt.widgets import fit_to_screen
from glow_engine.mechanism_specs import title_of
from glow_engine.privacy_statement import scientific
from glow_engine.release.ledger import default_ledger_path

FULL_ROLE = Qt.ItemDataRole.UserRole  # a cell's full value (a key is shown shortened)
KEY_CHARS = 12  # shown of a 64-digit key: enough to tell rows apart (the CSV has them all)
# Tab -> columns: (header, row field or None for a derived value, numeric)
COLUMNS = {
    "Releases": (("Time", "time", False), ("Mechanism", None, False),
                 ("ε per pixel", "e_px", True), ("Total ε", "total_epsilon", True),
                 ("Status", "status", False), ("Forced", "forced", False),
                 ("Patient key", "budget_key", False), ("Image key", "image_sha256", False),
                 ("File", "output", False)),
    "Per patient": (("Patient key", "budget_key", False), ("Images", "images", True),
                    ("Releases", "releases", True), ("Total ε", "total_epsilon", True),
                    ("Of the budget", None, True), ("Forced", "forced", False)),
    "Per image": (("Image key", "image_sha256", False), ("Patient key", "patient_key", False),
                  ("Releases", "releases", True), ("Total ε", "total_epsilon", True),
                  ("Forced", "forced", False)),
}


class LedgerWindow(QWidget):
    def __init__(self, state: ViewState, settings: QSettings,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.state, self.settings = state, settings
        self.setWindowTitle("Privacy ledger")
        fit_to_screen(self, QSize(1100, 640))
        self.path = QLineEdit(str(settings.value("ledger", str(default_ledger_path()))))
        self.budget = QLabel()
        self.new_budget = QLineEdit()
        self.new_budget.setPlaceholderText("total ε (empty: no limit)")
        self.new_budget.setToolTip("The most total ε the ledger lets any one patient's images "
                                   "take, over all releases")
        self.override = QCheckBox(RAISE_BOX)
        self.note = QLineEdit()
        self.note.setPlaceholderText("why (kept with the change)")
        self.set_budget = QPushButton("Set")
        self.budget_message = QLabel()
        self.budget_message.setObjectName("warning")
        self.budget_message.setWordWrap(True)
        self.budget_message.hide()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: any part of a key, a mechanism, a date…")
        self.tabs = QTabWidget()
        self.tables = {name: _table(columns) for name, columns in COLUMNS.items()}
        for name, table in self.tables.items():
            self.tabs.addTab(table, name)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.export = QPushButton("Export CSV…")
        self.export.setToolTip("The rows shown in this tab, with full keys")
        self._layout()
        self.path.editingFinished.connect(self.reload)
        self.set_budget.clicked.connect(self.store_budget)
        self.new_budget.returnPressed.connect(self.store_budget)
        self.filter.textChanged.connect(self._apply_filter)
        self.export.clicked.connect(self._export_dialog)
        state.changed.connect(self._on_changed)
        self.reload()

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Ledger"))
        top.addWidget(self.path, 1)
        for text, slot in (("Browse…", self._browse), ("Reload", self.reload)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            top.addWidget(button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.export)
        budget = QHBoxLayout()
        budget.addWidget(self.budget)
        budget.addWidget(self.new_budget, 1)
        budget.addWidget(self.note, 1)
        budget.addWidget(self.override)
        budget.addWidget(self.set_budget)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(budget)
        layout.addWidget(self.budget_message)
        layout.addWidget(self.filter)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(bottom)

    def reload(self) -> None:
        self.status.setText("Reading the ledger…")
        self.state.list_ledger(Path(self.path.text()).expanduser())

    def store_budget(self) -> None:
        """Store the typed per-patient budget (empty: no limit) in the ledger; a raise or a
        clearing is refused unless the override is ticked, and then recorded as one."""
        text = self.new_budget.text().strip()
        value = None
        if text:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and value > 0):
                self._say_budget(f"“{text}” is not a budget: type a positive total ε, or "
                                 "leave the field empty for no limit.")
                return
        self.budget_message.hide()
        self.status.setText("Setting the per-patient budget…")
        self.state.list_ledger(Path(self.path.text()).expanduser(), BudgetChange(
            value, self.override.isChecked(), self.note.text().strip()))

    def _say_budget(self, text: str) -> None:
        self.budget_message.setText(text)
        self.budget_message.setVisible(bool(text))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Privacy ledger", self.path.text(),
                                              "SQLite ledger (*.sqlite *.db);;All files (*)")
        if path:
            self.path.setText(path)
            self.reload()

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if Aspect.LEDGER_TABLE in aspects and self.state.ledger_table is not None:
            self._show(self.state.ledger_table)
        if Aspect.TABLE in aspects and self.state.table_written is not None:
            self.status.setText(f"Written: {self.state.table_written.path}")

    def _show(self, table: LedgerTable) -> None:
        limit = table.patient_budget
        self.budget.setText("Per-patient budget: " + ("none set" if limit is None
                                                      else f"total ε {scientific(limit)}")
                            + ". New:")
        refused = table.budget_refused
        self._say_budget(f"Not changed: {in_window_words(refused, LEDGER_BOXES)}."
                         if refused else "")
        if not refused:
            self.override.setChecked(False)
        rows = {"Releases": table.releases, "Per patient": table.patients,
                "Per image": table.images}
        for name, widget in self.tables.items():
            _fill(widget, COLUMNS[name], rows[name], limit)
        self._apply_filter()
        self.status.setText(table.error or f"{len(table.releases)} releases, "
                            f"{len(table.patients)} patients, {len(table.images)} images.")

    def _apply_filter(self) -> None:
        text = self.filter.text().strip().lower()
        for table in self.tables.values():
            for row in range(table.rowCount()):
                cells = (table.item(row, c) for c in range(table.columnCount()))
                shown = any(text in (cell.data(FULL_ROLE) or "").lower() for cell in cells
                            if cell is not None)
                table.setRowHidden(row, bool(text) and not shown)

    def visible_rows(self) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """The current tab's header and shown rows, full values (what the CSV holds)."""
        name = self.tabs.tabText(self.tabs.currentIndex())
        table = self.tables[name]
        header = tuple(c[0] for c in COLUMNS[name])
        rows = tuple(tuple(table.item(r, c).data(FULL_ROLE) for c in range(len(header)))
                     for r in range(table.rowCount()) if not table.isRowHidden(r))
        return header, rows

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV",
                                              str(Path.home() / "ledger.csv"), "CSV (*.csv)")
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> None:
        self.status.setText(f"Writing {path}…")
        self.state.write_table(path, *self.visible_rows())


def _table(columns) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels([c[0] for c in columns])
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.setSortingEnabled(True)
    return table


def _fill(table: QTableWidget, columns, rows: tuple[dict, ...], limit: float | None) -> None:
    table.setSortingEnabled(False)
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, (header, field, numeric) in enumerate(columns):
            value = _value(header, field, row, limit)
            shown = _shown(header, value)
            item = NumberItem(value, shown) if numeric else QTableWidgetItem(shown)
            item.setData(FULL_ROLE, "" if value is None else str(value))
            table.setItem(r, c, item)
    table.setSortingEnabled(True)


def _value(header: str, field: str | None, row: dict, limit: float | None):
    if header == "Mechanism":
        title = title_of(row["mechanism"])
        return f"{title} ({row['mode']})" if row["mode"] else title
    if header == "Of the budget":
        return None if not limit else row["total_epsilon"] / limit
    if header == "Forced":
        return "forced" if row[field] else ""
    if header == "File":
        return Path(row[field]).name
    return row[field]


def _shown(header: str, value) -> str:
    if value is None:
        return "—"
    if header in ("ε per pixel", "Total ε"):
        return scientific(float(value))
    if header == "Of the budget":
        return f"{value:.0%}" + ("  over" if value > 1 else "")
    if header.endswith("key") and isinstance(value, str):
        return value[:KEY_CHARS] + ("…" if len(value) > KEY_CHARS else "")
    return str(value)
