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
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.dpglow_words import FELL_BACK, PUBLISHED_MODE, rule_text
from app.core.messages import BatchDone, BatchRequest, FolderRelease, Kind, PrivacyParams
from app.core.option_words import (
    BURNED_IN_BOX,
    FORCE_BOX,
    ONE_PATIENT_BOX,
    in_window_words,
)
from app.core.pane_keys import MECHANISMS
from app.core.release_summary import release_summary
from app.core.state import Aspect, ViewState
from app.qt.controls import (
    BLOCK_TIP,
    BudgetField,
    decoding_box,
    noise_rule_box,
    offer_fitted,
    show_alpha,
    show_blocks,
)
from app.qt.dialogs import ReleaseReport
from app.qt.export import default_release_dir
from app.qt.widgets import FixedText, ask_ledger, fit_to_screen, guard_wheel, with_browse
from glow_engine.budget import format_e_px, parse_e_px, refusal
from glow_engine.choices import RELEASE_FORMATS
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
        # The patient preview last asked for and last shown ((folder, release folder,
        # pattern)); a release waits for the preview of its own inputs.
        self._asked: tuple | None = None
        self._previewed: tuple | None = None
        self._release_after_preview = False
        self.setWindowTitle("Release a folder")
        fit_to_screen(self, QSize(760, 720))
        p = state.params
        self.inputs = QLineEdit(str(settings.value("batch_inputs", "")))
        self.mechanism = QComboBox()
        for name in MECHANISMS:
            self.mechanism.addItem(title_of(name), name)
        self.mode = noise_rule_box(p.mode, state.fitted_box)
        self.decoding = decoding_box(p.estimate)
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
        self.force_budget = QCheckBox(FORCE_BOX)
        # a DICOM source declaring burned-in text, or not saying (the release policy)
        self.allow_burned_in = QCheckBox(BURNED_IN_BOX)
        self.no_privacy = QCheckBox("Release without privacy (ε = ∞: no noise)")
        # Whose image is whose: the per-patient budget counts a patient's images together.
        self.patients = QComboBox()
        self.patients.addItem("From DICOM headers and CSV lists (patient_id column)", "lists")
        self.patients.addItem("From the file names, by a pattern", "pattern")
        self.patients.setCurrentIndex(max(self.patients.findData(
            settings.value("patient_source", "lists")), 0))
        self.pattern = QLineEdit(str(settings.value("patient_pattern", r"^(\d+)_")))
        self.pattern.setToolTip("A regular expression searched in each file's path within the "
                                "folder; its first group (in parentheses) is the patient ID. "
                                r"^(\d+)_ takes 00001389 from 00001389_001.png; ^([^/]+)/ "
                                "takes a folder per patient.")
        self.patient_preview = FixedText(4)
        self.one_patient = QCheckBox(ONE_PATIENT_BOX)
        self.one_patient.setToolTip("Each such image is then a patient of its own in the "
                                    "ledger: the per-patient budget cannot add up a patient's "
                                    "images that carry no patient ID")
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
        self.preview_patients()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Images (folder)", with_browse(self.inputs, self._browse_inputs))
        form.addRow("Mechanism", self.mechanism)
        form.addRow("Noise (DP-GLOW)", self.mode)
        form.addRow("Decoding (DP-GLOW)", self.decoding)
        form.addRow("α (DP-GLOW clip width)", self.alpha)
        form.addRow("Blocks (DP-Pix)", self.block)
        form.addRow("ε per pixel", self.budget)
        form.addRow("Format", self.fmt)
        form.addRow("Release folder", with_browse(self.out, self._browse_out))
        form.addRow("Privacy ledger", with_browse(self.ledger, self._browse_ledger))
        form.addRow("Patient IDs", self.patients)
        form.addRow("Pattern", self.pattern)
        form.addRow("", self.patient_preview)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start)
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.progress, 1)
        # The choices scroll where the screen is short; Release, the progress and the
        # summary stay in view.
        choices = QWidget()
        inner = QVBoxLayout(choices)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addLayout(form)
        for box in (self.one_patient, self.keep_aspect, self.force_budget,
                    self.allow_burned_in, self.no_privacy):
            inner.addWidget(box)
        inner.addWidget(self.meaning)
        scroll = QScrollArea()
        scroll.setWidget(choices)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 3)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)
        layout.addWidget(self.problems, 1)
        layout.addWidget(self.open_report)

    def _connect(self) -> None:
        for box in (self.mechanism, self.mode, self.decoding, self.block):
            box.currentIndexChanged.connect(self._show_meaning)
        self.budget.textChanged.connect(self._show_meaning)
        self.alpha.valueChanged.connect(self._show_meaning)
        self.no_privacy.toggled.connect(self._show_meaning)
        for edit in (self.inputs, self.out, self.pattern):
            edit.editingFinished.connect(self.preview_patients)
        self.patients.currentIndexChanged.connect(self.preview_patients)
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
        show_alpha(self.alpha, None, self.mode.currentData())
        models = self.state.models
        if why is not None:
            self.meaning.setText(why)
        elif models is not None:
            name = self.mechanism.currentData()
            said = statement(name, self._params(e_px).mode_of(name), e_px, models.resolution,
                             models.risk_card)
            rule = "" if name != "dpglow" else "<br>" + rule_text(
                self.mode.currentData(), self.alpha.value(), e_px, models.fitted_box)
            self.meaning.setText(f"<b>{said.headline}.</b> {said.formal} {said.measured}{rule}")
        self.start.setEnabled(self.request is None and why is None and models is not None
                              and (not math.isinf(e_px or 0) or self.no_privacy.isChecked()))

    # ----------------------------------------------------------------- patients

    def _pattern(self) -> str | None:
        return self.pattern.text() if self.patients.currentData() == "pattern" else None

    def _patients_asked(self) -> tuple:
        """What a preview depends on: the folder, the release folder, the pattern."""
        return self.inputs.text(), self.out.text(), self._pattern()

    def preview_patients(self) -> None:
        """Ask the engine which patient ID each image would get (it lists the folder)."""
        self.pattern.setEnabled(self._pattern() is not None)
        if not self.inputs.text().strip():
            self.patient_preview.setText("")
            return
        self.patient_preview.setText("Reading the patient IDs…")
        self._asked = self._patients_asked()
        self.state.preview_patients((Path(self.inputs.text()).expanduser(),),
                                    Path(self.out.text()).expanduser(), self._pattern())

    def _show_patients(self) -> None:
        found = self.state.patients
        if found is None:
            return
        self._previewed = self._asked  # the state takes only the newest request's answer
        if self._release_after_preview:
            self._release_after_preview = False
            self.release()
        if found.error:
            self.patient_preview.setText(in_window_words(found.error))
            return
        rows = [f"{name} → {patient or 'no patient ID'}" for name, patient in found.rows]
        more = found.images - len(found.rows)
        head = (f"{found.without} of {found.images} images have no patient ID."
                if found.without else f"Every one of the {found.images} images has a "
                "patient ID (a DICOM file's is read when it is released).")
        self.patient_preview.setText("\n".join([head, *rows]
                                               + ([f"… and {more} more"] if more > 0 else [])))

    def _confirm_without_patients(self) -> bool:
        """The plain warning before images without a patient ID are released: each would
        then count as a patient of its own. True to go on (the box is then ticked)."""
        found = self.state.patients
        if self.one_patient.isChecked() or found is None or not found.without:
            return True
        answer = QMessageBox.question(
            self, "Images without a patient ID",
            f"{found.without} of the {found.images} images have no patient ID. Released, "
            "each counts as a patient of its own: if one patient has several of them, the "
            "per-patient budget cannot add them up.\n\nRelease them as separate patients? "
            "(No: nothing is released; give the patient IDs by a pattern or a CSV list.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.one_patient.setChecked(True)
        return True

    def release(self) -> None:
        if refusal(self.budget.text()) is not None:
            return
        if not self.one_patient.isChecked() and self._previewed != self._patients_asked():
            # the warning about images without a patient needs the preview of these inputs
            self._release_after_preview = True
            self.preview_patients()
            self.summary.setText("Reading the patient IDs before releasing…")
            return
        if not self._confirm_without_patients():
            self.summary.setText("Not released: some images have no patient ID (see above).")
            return
        self.settings.setValue("patient_source", self.patients.currentData())
        self.settings.setValue("patient_pattern", self.pattern.text())
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
            allow_burned_in=self.allow_burned_in.isChecked(),
            patient_id_pattern=self._pattern(),
            one_patient_per_image=self.one_patient.isChecked()))
        if self.request is not None:
            self.summary.setText("Releasing…")
            self.problems.clear()
            self.progress.setRange(0, 0)  # until the first image reports the count
            self._show_running(True)

    def _params(self, e_px: float) -> PrivacyParams:
        return PrivacyParams(e_px=e_px, alpha=self.alpha.value(), mode=self.mode.currentData(),
                             estimate=self.decoding.currentData(),
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
            self.summary.setText(f"Not released: {in_window_words(self.state.message)}")
            self._finish()
        if Aspect.MODELS in aspects:
            self._offer_modes()
            self._show_meaning()
        if Aspect.PATIENTS in aspects:
            self._show_patients()

    def _offer_modes(self) -> None:
        """The fitted box where the new model has one; without one, back to the published
        rule, said in the summary."""
        offer_fitted(self.mode, self.state.fitted_box)
        if self.mode.currentData() == "fitted" and self.state.fitted_box is None:
            self.mode.setCurrentIndex(self.mode.findData(PUBLISHED_MODE))
            self.summary.setText(FELL_BACK)

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
        self.problems.setPlainText("\n".join(map(in_window_words, done.problems)))
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
        for widget in (self.inputs, self.mechanism, self.mode, self.decoding, self.alpha,
                       self.block, self.budget, self.fmt, self.out, self.ledger, self.patients,
                       self.pattern, self.one_patient):
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
