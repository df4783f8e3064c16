"""The privacy officer's PACS window: the nodes (list, add, edit, echo; saved to the nodes
file `dpglow pacs` reads), a query form, the studies found with checkboxes, a look at one
study in the viewer (its staged copy, deleted when the look is closed), and "Release
selected…", which opens the batch window's settings with the destination node as the target
(app.qt.pacs_release).

A thin view of app.core.pacs_state.PacsState: every network wait runs on an engine lane, so
the window never freezes; every error is one line below the controls, in the window's words,
and nothing the user typed is reset by it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import Kind
from app.core.pacs_state import PacsAspect, PacsState
from app.core.pacs_words import KEY_LABELS, LOCAL_LABELS
from app.core.state import ViewState
from app.qt.pacs_release import PacsReleaseWindow
from app.qt.widgets import ElidedLabel, fit_to_screen, guard_wheel, with_browse
from glow_engine.pacs.nodes import DEFAULT_TIMEOUT, default_nodes_path
from glow_engine.pacs.query import CHEST_MODALITIES

COLUMNS = ("Release", "Patient ID", "Study date", "Accession", "Modalities", "Images",
           "Study UID")
KINDS = {"dimse": "DIMSE (C-FIND, C-GET / C-MOVE, C-STORE)",
         "dicomweb": "DICOMweb (QIDO-RS, WADO-RS, STOW-RS)"}
RETRIEVE = {"get": "C-GET (no inbound port)", "move": "C-MOVE into our storage SCP"}


class PacsWindow(QWidget):
    def __init__(self, pacs: PacsState, view: ViewState, settings: QSettings,
                 open_folder: Callable[[Path], None], parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.pacs, self.view, self.settings = pacs, view, settings
        self.open_folder = open_folder  # the viewer's folder browser
        self.release_window: PacsReleaseWindow | None = None
        self.setWindowTitle("PACS")
        fit_to_screen(self, QSize(1180, 760))
        self.nodes_file = QLineEdit(str(settings.value("pacs_nodes", str(default_nodes_path()))))
        self.node_list = QListWidget()
        self.add_node, self.edit_node = QPushButton("Add node…"), QPushButton("Edit node…")
        self.echo = QPushButton("Echo")
        self.source = QComboBox()
        self.patient_id = QLineEdit()
        self.accessions = QLineEdit()
        self.accessions.setPlaceholderText("A1001 A1002 …")
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for edit in (self.date_from, self.date_to):
            edit.setPlaceholderText("YYYYMMDD")
        self.modalities = QLineEdit(",".join(CHEST_MODALITIES))
        self.find = QPushButton("Find")
        self.results = QTableWidget(0, len(COLUMNS))
        self.look = QPushButton("Look at study")
        self.close_look = QPushButton("Close the look")
        self.destination = QComboBox()
        self.release = QPushButton("Release selected…")
        # room for "Release 99 selected…": the count must never be clipped
        self.release.setMinimumWidth(
            self.release.fontMetrics().horizontalAdvance("Release 999 selected…") + 32)
        self.status = ElidedLabel()  # one line: the last answer or error
        self._layout()
        guard_wheel(self)
        self._connect()
        self._show_nodes()
        self._show_buttons()
        self.reload()

    # ----------------------------------------------------------------- construction

    def _layout(self) -> None:
        nodes = QGroupBox("Nodes")
        box = QVBoxLayout(nodes)
        box.addWidget(self.node_list, 1)
        buttons = QHBoxLayout()
        for button in (self.add_node, self.edit_node, self.echo):
            buttons.addWidget(button)
        box.addLayout(buttons)
        query = QGroupBox("Query")
        form = QFormLayout(query)
        form.addRow("Source node", self.source)
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Accession numbers", self.accessions)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form.addRow("Study date", dates)
        form.addRow("Modality", self.modalities)
        form.addRow("", self.find)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(nodes, 1)
        column.addWidget(query)
        self.results.setHorizontalHeaderLabels(COLUMNS)
        self.results.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.verticalHeader().hide()
        header = self.results.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        actions = QHBoxLayout()
        for widget in (self.look, self.close_look):
            actions.addWidget(widget)
        actions.addStretch(1)
        actions.addWidget(QLabel("Destination node"))
        actions.addWidget(self.destination)
        actions.addWidget(self.release)
        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.results, 1)
        column.addLayout(actions)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([380, 800])
        layout = QVBoxLayout(self)
        top = QFormLayout()
        top.addRow("Nodes file", with_browse(self.nodes_file, self._browse_nodes))
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

    def _connect(self) -> None:
        self.nodes_file.editingFinished.connect(self.reload)
        self.add_node.clicked.connect(lambda: self._edit(None))
        self.edit_node.clicked.connect(lambda: self._edit(self._current_node()))
        self.node_list.itemDoubleClicked.connect(lambda _: self._edit(self._current_node()))
        self.node_list.currentRowChanged.connect(self._show_buttons)
        self.echo.clicked.connect(self._echo)
        self.find.clicked.connect(self._find)
        self.results.itemChanged.connect(self._on_checked)
        self.results.itemSelectionChanged.connect(self._show_buttons)
        self.look.clicked.connect(self._look)
        self.close_look.clicked.connect(lambda: self.pacs.close_look(self.path))
        self.release.clicked.connect(self.show_release)
        self.pacs.changed.connect(self._on_changed)

    # ----------------------------------------------------------------- the user's asks

    @property
    def path(self) -> Path:
        return Path(self.nodes_file.text().strip()).expanduser()

    def reload(self) -> None:
        self.settings.setValue("pacs_nodes", self.nodes_file.text())
        self.pacs.read_nodes(self.path)

    def _browse_nodes(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Nodes file", self.nodes_file.text(), "TOML (*.toml)",
            options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.nodes_file.setText(path)
            self.reload()

    def _current_node(self) -> str | None:
        item = self.node_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _edit(self, name: str | None) -> None:
        info = self.pacs.nodes
        tables = info.nodes if info is not None else {}
        dialog = NodeDialog(name, tables.get(name or "", {}),
                            info.local if info is not None else {}, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.pacs.save_node(self.path, dialog.name(), dialog.values(), name,
                                dialog.local())
            self._say(f"Saving node {dialog.name()} to {self.path}…")

    def _echo(self) -> None:
        if (node := self._current_node()) is not None:
            self.pacs.echo(self.path, node)
            self._say(f"Asking {node}…")

    def _find(self) -> None:
        self.pacs.find(self.path, self.source.currentText(), patient_id=self.patient_id.text(),
                       accessions=self.accessions.text(), date_from=self.date_from.text(),
                       date_to=self.date_to.text(), modalities=self.modalities.text())
        if self.pacs.waiting(Kind.PACS_FIND):
            self._say(f"Querying {self.source.currentText()}…")
        self._show_buttons()

    def _on_checked(self, item: QTableWidgetItem) -> None:
        if item.column() == 0:
            self.pacs.set_checked(item.data(Qt.ItemDataRole.UserRole),
                                  item.checkState() == Qt.CheckState.Checked)

    def _look(self) -> None:
        rows = self.results.selectionModel().selectedRows()
        if rows and self.pacs.found is not None:
            study = self.pacs.studies[rows[0].row()]
            ledger = self.settings.value("ledger", "")
            self.pacs.look_at(self.path, self.pacs.found.node, study.study_uid,
                              Path(ledger).expanduser() if ledger else None)
            self._say(f"Retrieving the study of {study.patient_id or 'an unnamed patient'} "
                      "into a private staging folder…")

    def show_release(self) -> None:
        """The batch window's settings for the checked studies, to the destination node."""
        found = self.pacs.found
        if found is None or not self.pacs.checked:
            return
        if self.release_window is None:
            self.release_window = PacsReleaseWindow(self.pacs, self.view, self.settings, self)
        uids = tuple(s.study_uid for s in found.studies if s.study_uid in self.pacs.checked)
        self.release_window.prepare(self.path, found.node, uids, self._node_names(),
                                    self.destination.currentText())
        self.release_window.show()
        self.release_window.raise_()

    # ----------------------------------------------------------------- answers

    def _on_changed(self, aspects: frozenset[PacsAspect]) -> None:
        p = self.pacs
        if PacsAspect.NODES in aspects:
            self._show_nodes()
        if PacsAspect.ECHO in aspects and p.echoed is not None:
            self._say(f"{p.echoed.node} ({p.echoed.address}) answers.")
        if PacsAspect.STUDIES in aspects:
            self._show_studies()
        if PacsAspect.LOOK in aspects and p.look is not None:
            self._show_look()
        if PacsAspect.ERROR in aspects:
            self._say(p.message, error=True)
        self._show_buttons()

    def _show_nodes(self) -> None:
        info = self.pacs.nodes
        current = self._current_node()
        self.node_list.clear()
        names = self._node_names()
        for name in names:
            table = info.nodes[name]
            where = table.get("url") or (f"{table.get('ae_title', '?')}@{table.get('host', '?')}"
                                         f":{table.get('port', '?')}")
            self.node_list.addItem(f"{name}  —  {where}")
            self.node_list.item(self.node_list.count() - 1).setData(
                Qt.ItemDataRole.UserRole, name)
        for combo in (self.source, self.destination):
            chosen = combo.currentText()
            combo.clear()
            combo.addItems(names)
            if chosen in names:
                combo.setCurrentText(chosen)
        chosen = info.saved if info is not None and info.saved in names else current
        if chosen in names:
            self.node_list.setCurrentRow(names.index(chosen))
        if info is not None and not info.exists:
            self._say(f"No nodes file at {info.nodes_path} yet: 'Add node…' creates it.")
        elif info is not None and info.saved:
            self._say(f"Node {info.saved} saved to {info.nodes_path}.")

    def _node_names(self) -> list[str]:
        info = self.pacs.nodes
        return sorted(info.nodes) if info is not None else []

    def _show_studies(self) -> None:
        self.results.blockSignals(True)
        studies = self.pacs.studies
        self.results.setRowCount(len(studies))
        for row, s in enumerate(studies):
            check = QTableWidgetItem()
            check.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled
                           | Qt.ItemFlag.ItemIsSelectable)
            check.setCheckState(Qt.CheckState.Unchecked)
            check.setData(Qt.ItemDataRole.UserRole, s.study_uid)
            self.results.setItem(row, 0, check)
            values = (s.patient_id, _date(s.date), s.accession, ",".join(s.modalities),
                      "?" if s.images is None else str(s.images), s.study_uid)
            for column, text in enumerate(values, 1):
                self.results.setItem(row, column, QTableWidgetItem(text))
        self.results.blockSignals(False)
        found = self.pacs.found
        self._say(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on "
                  f"{found.node if found else ''}: tick those to release.")

    def _show_look(self) -> None:
        look = self.pacs.look
        if look is None or look.folder is None:
            self._say("The look is closed: its staged copy was deleted.")
            return
        skipped = f"; {len(look.skipped)} skipped (not a chest radiograph)" if look.skipped \
            else ""
        self._say(f"Looking at {look.images} image(s) from the staged copy {look.folder} "
                  f"(deleted when the look is closed){skipped}.")
        self.open_folder(look.folder)

    def _show_buttons(self) -> None:
        node = self._current_node() is not None
        self.edit_node.setEnabled(node)
        self.echo.setEnabled(node and not self.pacs.waiting(Kind.PACS_ECHO))
        self.find.setEnabled(bool(self.source.currentText())
                             and not self.pacs.waiting(Kind.PACS_FIND))
        selected = bool(self.results.selectionModel().selectedRows())
        self.look.setEnabled(selected and not self.pacs.waiting(Kind.PACS_LOOK))
        look = self.pacs.look
        self.close_look.setEnabled(look is not None and look.folder is not None)
        self.release.setEnabled(bool(self.pacs.checked) and bool(self.destination.currentText()))
        self.release.setText(f"Release {len(self.pacs.checked)} selected…"
                             if self.pacs.checked else "Release selected…")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        self.status.setStyleSheet("color: #e06c5a;" if error else "")

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing the window closes the look: its staged copy is deleted."""
        self.pacs.close_look(self.path)
        super().closeEvent(event)


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if len(value) == 8 else value


class NodeDialog(QDialog):
    """One node's keys in the nodes file, and our own AE title and storage port."""

    def __init__(self, name: str | None, table: dict[str, Any], local: dict[str, Any],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Node {name}" if name else "Add a node")
        self.name_edit = QLineEdit(name or "")
        self.kind = QComboBox()
        for key, text in KINDS.items():
            self.kind.addItem(text, key)
        self.kind.setCurrentIndex(list(KINDS).index(table.get("kind", "dimse")))
        self.ae_title = QLineEdit(str(table.get("ae_title", "")))
        self.host = QLineEdit(str(table.get("host", "")))
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(int(table.get("port", 104)))
        self.retrieve = QComboBox()
        for key, text in RETRIEVE.items():
            self.retrieve.addItem(text, key)
        self.retrieve.setCurrentIndex(list(RETRIEVE).index(table.get("retrieve", "get")))
        self.url = QLineEdit(str(table.get("url", "")))
        self.url.setPlaceholderText("https://server/dicom-web")
        self.username = QLineEdit(str(table.get("username", "")))
        self.password_env = QLineEdit(str(table.get("password_env", "")))
        self.password_env.setPlaceholderText("the environment variable holding the password")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 3600)
        self.timeout.setValue(float(table.get("timeout", DEFAULT_TIMEOUT)))
        self.our_ae = QLineEdit(str(local.get("ae_title", "DPGLOW")))
        self.our_port = QSpinBox()
        self.our_port.setRange(1, 65535)
        self.our_port.setValue(int(local.get("port", 11112)))
        self.form = QFormLayout()
        self.form.addRow("Name", self.name_edit)
        self.form.addRow(KEY_LABELS["kind"], self.kind)
        self._dimse = (self.ae_title, self.host, self.port, self.retrieve)
        self._web = (self.url, self.username, self.password_env)
        for key, widget in zip(("ae_title", "host", "port", "retrieve", "url", "username",
                                "password_env", "timeout"), (*self._dimse, *self._web,
                                                            self.timeout), strict=True):
            self.form.addRow(KEY_LABELS[key], widget)
        self.form.addRow(LOCAL_LABELS["ae_title"], self.our_ae)
        self.form.addRow(LOCAL_LABELS["port"], self.our_port)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        note = QLabel("Passwords are never written by this window: give the name of an "
                      "environment variable that holds it.")
        note.setWordWrap(True)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.kind.currentIndexChanged.connect(self._show_kind)
        self._show_kind()

    def _show_kind(self) -> None:
        dimse = self.kind.currentData() == "dimse"
        for widget in self._dimse:
            self.form.setRowVisible(widget, dimse)
        for widget in self._web:
            self.form.setRowVisible(widget, not dimse)

    def name(self) -> str:
        return self.name_edit.text().strip()

    def values(self) -> dict[str, Any]:
        """The node's keys; the other kind's keys removed (None)."""
        dimse = self.kind.currentData() == "dimse"
        chosen = {"kind": self.kind.currentData(), "timeout": self.timeout.value(),
                  "ae_title": self.ae_title.text().strip(), "host": self.host.text().strip(),
                  "port": self.port.value(), "retrieve": self.retrieve.currentData(),
                  "url": self.url.text().strip(), "username": self.username.text().strip(),
                  "password_env": self.password_env.text().strip()}
        own = ("ae_title", "host", "port", "retrieve") if dimse else ("url", "username",
                                                                      "password_env")
        keep = {"kind", "timeout", *own}
        return {k: v if k in keep and v != "" else None for k, v in chosen.items()}

    def local(self) -> dict[str, Any]:
        return {"ae_title": self.our_ae.text().strip(), "port": self.our_port.value()}
