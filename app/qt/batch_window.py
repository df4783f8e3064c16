"""Release a folder from the window, through the same release path as `dpglow privatize`
(glow_engine.release.batch.release_folder, run on the release lane): choose the mechanism,
its noise rule, the budget, the format and the folders; a progress bar with Cancel; then how
many files were released, skipped, refused or failed, and the release report.

Cancel stops between images: the image in hand is finished, the rest are never opened and
nothing is spent on them; the summary says which is which ("8 of 12").
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import BatchDone, BatchRequest, FolderRelease, Kind, PrivacyParams
from app.core.pane_keys import MECHANISMS
from app.core.release_summary import release_summary
from app.core.state import Aspect, ViewState
from app.qt.controls import (
    BLOCK_TIP,
    MODE_LABELS,
    BudgetField,
    show_blocks,
)
from app.qt.dialogs import ReleaseReport
from app.qt.export import default_release_dir
from app.qt.widgets import ask_ledger, fit_to_screen, guard_wheel, with_browse
from glow_engine.budget import format_e_px, parse_e_px, refusal
from glow_engine.choices import DPGLOW_MODES, RELEASE_FORMATS
from glow_engine.mechanism_specs import title_of
from glow_engine.privacy_statement import statement
from glow_engine.release.ledger import default_ledger_path


class BatchWindow(QWidget):
    def __init__(self, state: ViewState, settings: QSettings,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.state, self.settings = state, settings
        self.request: BatchRequest | None = None  # the release running, if any
        self.cancelled = False  # Cancel was pressed during the release running
        self.report_dialog: ReleaseReport | None = None  # the last report shown
        self.setWindowTitle("Release a folder")
        fit_to_screen(self, QSize(760, 720))
        p = state.params
        self.inputs = QLineEdit(str(settings.value("batch_inputs", "")))
        self.mechanism = QComboBox()
        for name in MECHANISMS:
            self.mechanism.addItem(title_of(name), name)
        self.mode = QComboBox()
        for mode in DPGLOW_MODES:
            self.mode.addItem(MODE_LABELS[mode], mode)
        self.mode.setCurrentIndex(DPGLOW_MODES.index(p.mode))
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.05, 1.0)
        self.alpha.setSingleStep(0.05)
        self.alpha.setValue(p.alpha)
        self.block = QComboBox()
        self.block.setToolTip(BLOCK_TIP)
        show_blocks(self.block, state.resolution, p.block)
        self.budget = BudgetField(format_e_px(p.e_px))
        self.fmt = QComboBox()
        for key, fmt in RELEASE_FORMATS.items():
            self.fmt.addItem(fmt.title, key)
        self.out = QLineEdit(str(settings.value("export_dir", str(default_release_dir()))))
        self.ledger = QLineEdit(str(settings.value("ledger", str(default_ledger_path()))))
        self.keep_aspect = QCheckBox("Keep each image's aspect ratio (publishes it unprotected)")
        self.force_budget = QCheckBox("Release past the per-patient budget (recorded as forced)")
        self.allow_burned_in = QCheckBox("Release sources that declare burned-in text")
        self.no_privacy = QCheckBox("Release without privacy (ε = ∞: no noise)")
        self.meaning = QLabel()
        self.meaning.setWordWrap(True)
        self.start = QPushButton("Release")
        self.cancel = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setFormat("%v of %m images")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.problems = QPlainTextEdit()
        self.problems.setReadOnly(True)
        self.problems.setPlaceholderText("Files not released, and why, are listed here.")
        self.open_report = QPushButton("Show the release report")
        self._layout()
        guard_wheel(self)
        self._connect()
        self._show_meaning()
        self._show_running(False)

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Images (folder)", with_browse(self.inputs, self._browse_inputs))
        form.addRow("Mechanism", self.mechanism)
        form.addRow("Noise (DP-GLOW)", self.mode)
        form.addRow("α (DP-GLOW clip width)", self.alpha)
        form.addRow("Blocks (DP-Pix)", self.block)
        form.addRow("ε per pixel", self.budget)
        form.addRow("Format", self.fmt)
        form.addRow("Release folder", with_browse(self.out, self._browse_out))
        form.addRow("Privacy ledger", with_browse(self.ledger, self._browse_ledger))
        buttons = QHBoxLayout()
        buttons.addWidget(self.start)
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for box in (self.keep_aspect, self.force_budget, self.allow_burned_in,
                    self.no_privacy):
            layout.addWidget(box)
        layout.addWidget(self.meaning)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)
        layout.addWidget(self.problems, 1)
        layout.addWidget(self.open_report)

    def _connect(self) -> None:
        for box in (self.mechanism, self.mode, self.block):
            box.currentIndexChanged.connect(self._show_meaning)
        self.budget.textChanged.connect(self._show_meaning)
        self.no_privacy.toggled.connect(self._show_meaning)
        self.start.clicked.connect(self.release)
        self.cancel.clicked.connect(self.stop)
        self.open_report.clicked.connect(self._open_report)
        self.state.changed.connect(self._on_changed)

    def _browse_inputs(self) -> None:
        self._pick_folder(self.inputs, "Images to release")

    def _browse_out(self) -> None:
        self._pick_folder(self.out, "Release folder")

    def _pick_folder(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    def _browse_ledger(self) -> None:
        path = ask_ledger(self, self.ledger.text())
        if path:
            self.ledger.setText(path)

    # ----------------------------------------------------------------- the release

    def _show_meaning(self) -> None:
        """What the chosen budget means (the privacy statement); Release waits for a usable
        budget, and at ε = ∞ for an explicit yes."""
        why = refusal(self.budget.text())
        e_px = None if why else parse_e_px(self.budget.text())
        self.no_privacy.setVisible(e_px is not None and math.isinf(e_px))
        models = self.state.models
        if why is not None:
            self.meaning.setText(why)
        elif models is not None:
            name = self.mechanism.currentData()
            said = statement(name, self._params(e_px).mode_of(name), e_px, models.resolution,
                             models.risk_card)
            self.meaning.setText(f"<b>{said.headline}.</b> {said.formal} {said.measured}")
        self.start.setEnabled(self.request is None and why is None and models is not None
                              and (not math.isinf(e_px or 0) or self.no_privacy.isChecked()))

    def release(self) -> None:
        if refusal(self.budget.text()) is not None:
            return
        params = self._params(parse_e_px(self.budget.text()))
        self.settings.setValue("batch_inputs", self.inputs.text())
        self.settings.setValue("export_dir", self.out.text())
        self.settings.setValue("ledger", self.ledger.text())
        self.cancelled = False
        self.request = self.state.release_folder(FolderRelease(
            inputs=(Path(self.inputs.text()).expanduser(),),
            mechanism=self.mechanism.currentData(), params=params,
            out_dir=Path(self.out.text()).expanduser(), fmt=self.fmt.currentData(),
            ledger_path=Path(self.ledger.text()).expanduser(),
            keep_aspect=self.keep_aspect.isChecked(),
            force_budget=self.force_budget.isChecked(),
            allow_burned_in=self.allow_burned_in.isChecked()))
        if self.request is not None:
            self.summary.setText("Releasing…")
            self.problems.clear()
            self.progress.setRange(0, 0)  # until the first image reports the count
            self._show_running(True)

    def _params(self, e_px: float) -> PrivacyParams:
        return PrivacyParams(e_px=e_px, alpha=self.alpha.value(), mode=self.mode.currentData(),
                             block=self.block.currentData())

    def stop(self) -> None:
        """Cancel: the release lane finishes the image in hand and starts no other."""
        if self.request is not None:
            self.cancelled = True
            self.state.cancel_release(self.request.id)
            self.summary.setText("Cancelling: the image in hand is finished, no other is "
                                 "started…")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        progress = self.state.batch_progress
        if Aspect.BATCH_PROGRESS in aspects and progress is not None and self.request is not None:
            self._on_progress(*progress)
        done = self.state.batch_done
        if (Aspect.BATCH in aspects and done is not None and self.request is not None
                and done.request_id == self.request.id):
            self._show_done(done)
        elif Aspect.ERROR in aspects and self.request is not None \
                and not self.state.waiting(Kind.BATCH):
            self.summary.setText(f"Not released: {self.state.message}")
            self._finish()
        if Aspect.MODELS in aspects:
            self._show_meaning()

    def _show_done(self, done: BatchDone) -> None:
        lines = release_summary(done.counts, self.cancelled)
        if done.error:
            lines.append(f"Stopped early: {done.error}")
        if done.manifest is not None:
            lines.append(f"Published manifest: {done.manifest} (publish it with the images).")
        if done.record is not None:
            lines.append(f"Operator's record: {done.record} (names the sources: keep it "
                         "private).")
        if done.report is not None:
            lines.append(f"Release report: {done.report}")
        self.summary.setText("<br>".join(lines))
        self.problems.setPlainText("\n".join(done.problems))
        self.open_report.setVisible(done.report is not None)
        self._finish()
        images = sum(n for status, n in done.counts.items() if status != "skipped")
        self._on_progress(images - done.counts.get("not-started", 0), images)

    def _finish(self) -> None:
        self.request = None
        if self.progress.maximum() == 0:  # still waiting for the first count
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        self._show_running(False)

    def _show_running(self, running: bool) -> None:
        self.cancel.setEnabled(running)
        for widget in (self.inputs, self.mechanism, self.mode, self.alpha, self.block,
                       self.budget, self.fmt, self.out, self.ledger):
            widget.setEnabled(not running)
        if not running:
            self._show_meaning()
        else:
            self.start.setEnabled(False)
        done = self.state.batch_done
        self.open_report.setVisible(not running and done is not None
                                    and done.report is not None)

    def _open_report(self) -> None:
        done = self.state.batch_done
        if done is not None and done.report is not None:
            self.report_dialog = ReleaseReport(done.report, self)
            self.report_dialog.open()
