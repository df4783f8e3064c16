"""The batch window's settings for a release from a PACS: the same mechanism, budget, ledger
and checkboxes (app.qt.batch_window.BatchWindow), with the checked studies in place of the
folder, the destination node in place of the release folder (DICOM only), and the linkage
the officer chooses. Runs on the release lane; progress per image, phase by phase
(retrieving, privatising, sending), and Cancel between images."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QWidget

from app.core.messages import Kind, PacsRelease
from app.core.pacs_state import PacsAspect, PacsState
from app.core.state import Aspect, ViewState
from app.qt.batch_window import BatchWindow
from app.qt.dialogs import ReleaseReport
from glow_engine.budget import parse_e_px, refusal
from glow_engine.release.deid import DEFAULT_LINKAGE, LINKAGES

# The batch window's rows about a folder: a PACS release has studies, a destination node,
# DICOM output and the PatientID of each retrieved header instead.
HIDDEN_ROWS = ("Images (folder)", "Format", "Release folder", "Patient IDs", "Pattern")


class PacsReleaseWindow(BatchWindow):
    def __init__(self, pacs: PacsState, view: ViewState, settings: QSettings,
                 parent: QWidget | None = None) -> None:
        self.pacs = pacs
        self.studies = QLabel()
        self.studies.setWordWrap(True)
        self.destination = QComboBox()
        self.linkage = QComboBox()
        for key, text in LINKAGES.items():
            self.linkage.addItem(text, key)
        self.linkage.setCurrentIndex(list(LINKAGES).index(DEFAULT_LINKAGE))
        self.nodes_path, self.source, self.uids = Path(), "", ()
        super().__init__(view, settings, parent)
        self.setWindowTitle("Release from a PACS")
        self.start.setText("Release to the destination node")
        self._target_rows()
        pacs.changed.connect(self._on_pacs)

    def _target_rows(self) -> None:
        form = next(f for f in self.findChildren(QFormLayout)
                    if f.getWidgetPosition(self.mechanism)[0] >= 0)
        for row in range(form.rowCount()):
            label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if label is not None and label.widget().text() in HIDDEN_ROWS:
                form.setRowVisible(row, False)
        if (preview := getattr(self, "patient_preview", None)) is not None:
            form.setRowVisible(preview, False)  # the folder's patient IDs
        if (per_image := getattr(self, "one_patient", None)) is not None:
            per_image.hide()  # the folder release's choice; release_from_pacs has its own
        form.insertRow(0, "Studies", self.studies)
        form.addRow("Destination node", self.destination)
        form.addRow("Linkage", self.linkage)

    def prepare(self, nodes_path: Path, source: str, uids: tuple[str, ...],
                nodes: list[str], destination: str) -> None:
        """The checked studies of `source`, to `destination` (changeable here)."""
        if self.request is not None:  # a release is running: its studies stay
            return
        self.nodes_path, self.source, self.uids = nodes_path, source, uids
        self.studies.setText(f"{len(uids)} stud{'y' if len(uids) == 1 else 'ies'} from "
                             f"{source} (their CR and DX images)")
        self.destination.clear()
        self.destination.addItems([n for n in nodes if n != source])
        self.destination.setCurrentText(destination)

    # ----------------------------------------------------------------- the release

    def release(self) -> None:
        if refusal(self.budget.text()) is not None or not self.destination.currentText():
            return
        self.settings.setValue("ledger", self.ledger.text())
        self.cancelled = False
        self.request = self.pacs.release(PacsRelease(
            nodes_path=self.nodes_path, source=self.source, study_uids=self.uids,
            to_node=self.destination.currentText(), mechanism=self.mechanism.currentData(),
            params=self._params(parse_e_px(self.budget.text())),
            ledger_path=Path(self.ledger.text()).expanduser(),
            linkage=self.linkage.currentData(), keep_aspect=self.keep_aspect.isChecked(),
            force_budget=self.force_budget.isChecked(),
            allow_burned_in=self.allow_burned_in.isChecked()))
        self.summary.setText(f"Releasing from {self.source} to "
                             f"{self.destination.currentText()}…")
        self.problems.clear()
        self.progress.setRange(0, 0)
        self._show_running(True)

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        """The viewer's state: only a model load matters here (Release waits for one)."""
        if Aspect.MODELS in aspects:
            self._show_meaning()

    def _on_pacs(self, aspects: frozenset[PacsAspect]) -> None:
        p = self.pacs
        if self.request is None:
            return
        if PacsAspect.PROGRESS in aspects and p.progress is not None:
            phase, done, total = p.progress
            self.progress.setFormat(f"{phase}: %v of %m images")
            self._on_progress(done, total)  # total 0: the PACS did not say (busy bar)
            if total == 0:
                self.progress.setRange(0, 0)
        if PacsAspect.RELEASE in aspects and p.released is not None:
            self._show_released()
        elif PacsAspect.ERROR in aspects and p.failed is Kind.PACS_RELEASE:
            self.summary.setText(f"Not released: {p.message}")
            self._finish()

    def _show_released(self) -> None:
        done = self.pacs.released
        if done.batch is not None:
            self._show_done(done.batch)
        else:
            self._finish()
            self.summary.setText("<b>Nothing privatised</b> (cancelled before the first "
                                 "image).")
        lines = [f"Studies: {done.studies}; images retrieved: {done.retrieved}; skipped (not "
                 f"a chest radiograph): {len(done.skipped)}.",
                 f"Sent to {done.destination}: {done.sent}; already there: "
                 f"{done.already_there}" + (f"; NOT sent (cancelled): {done.not_sent}."
                                            if done.not_sent else "."),
                 f"Staging: {done.staging}."]
        self.summary.setText(self.summary.text() + "<br>" + "<br>".join(lines))
        problems = self.problems.toPlainText()
        self.problems.setPlainText("\n".join([*([problems] if problems else []),
                                              *done.skipped]))
        self.open_report.setVisible(self._report() is not None)

    def _show_running(self, running: bool) -> None:
        super()._show_running(running)
        for widget in (self.destination, self.linkage):
            widget.setEnabled(not running)
        self.open_report.setVisible(not running and self._report() is not None)

    def _report(self) -> Path | None:
        done = self.pacs.released
        return None if done is None or done.batch is None else done.batch.report

    def _open_report(self) -> None:
        if (report := self._report()) is not None:
            self.report_dialog = ReleaseReport(report, self)
            self.report_dialog.open()
