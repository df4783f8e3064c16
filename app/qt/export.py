"""The export dialog: what will be written (the file's name, size and published header
values), that it is a NEW draw, what the budget means and what it costs. It scrolls where the
screen is short (1366x768), and stays open with every choice until the export is done: a
refusal is said inside it, naming its own boxes."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.messages import Kind
from app.core.option_words import BURNED_IN_BOX, FORCE_BOX, ONE_IMAGE_BOX, in_window_words
from app.core.pane_keys import MECHANISMS, PaneKey
from app.core.state import Aspect, ViewState
from app.qt.widgets import ask_ledger, fit_to_screen, with_browse
from glow_engine.budget import format_e_px
from glow_engine.choices import RELEASE_FORMATS
from glow_engine.privacy_statement import scientific, statement
from glow_engine.release.ledger import default_ledger_path


# A folder of its own, never the home directory: what is in it is what gets published.
def default_release_dir() -> Path:
    """Where releases go unless the user chose a folder: beside the user's files, looked up when
    asked (so a changed HOME, as in the tests, is honoured)."""
    return Path.home() / "DP-GLOW releases"


NO_PRIVACY_NOTICE = (
    "<b>No privacy: at ε = ∞ no noise is added.</b> The exported image is the original "
    "reconstructed by the model (clipped in its latent space for DP-GLOW, unchanged for "
    "ID-LDP, averaged over its blocks for DP-Pix): nothing in it is hidden. It is still "
    "recorded in the ledger.")
NEW_DRAW_NOTICE = (
    "<b>The exported image is a NEW draw, not the preview on screen.</b> It is privatised "
    "again with fresh secure noise (exact discrete Laplace from the operating system's random "
    "source); the preview uses a fast floating-point draw, so the noise in the file will "
    "differ. The file gets a random name in the release folder and a row in the folder's "
    "manifest.csv; which image it came from is kept only in the operator's record beside the "
    "ledger."
)


class ExportDialog(QDialog):
    def __init__(self, state: ViewState, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.settings = state, settings
        self.setWindowTitle("Export privatised image")
        self.exporting = False  # an export was asked for and its answer has not come
        no_privacy = math.isinf(state.params.e_px)
        notice = QLabel(NO_PRIVACY_NOTICE if no_privacy else NEW_DRAW_NOTICE)
        notice.setWordWrap(True)
        # At ε = ∞ there is nothing to protect the patient: Export waits for a yes to that.
        self.no_privacy = QCheckBox("Export it anyway, knowing it carries no privacy")
        self.no_privacy.setVisible(no_privacy)
        self.meaning = QLabel()
        self.meaning.setWordWrap(True)
        self.published = QLabel()
        self.published.setWordWrap(True)
        self.mechanism = QComboBox()
        p = state.params
        for name in MECHANISMS:  # with the parameters on screen
            self.mechanism.addItem(p.label_of(name), name)
        self.fmt = QComboBox()
        for key, fmt in RELEASE_FORMATS.items():
            self.fmt.addItem(fmt.title, key)
        if self._dataset() is not None:  # a DICOM source is released as DICOM by default
            self.fmt.setCurrentIndex(self.fmt.findData("dicom"))
        self.out = QLineEdit(str(self.settings.value("export_dir", str(default_release_dir()))))
        # One ledger for the CLI and the viewer by default: composition counts across both.
        self.ledger = QLineEdit(str(settings.value("ledger", str(default_ledger_path()))))
        self.cost = QLabel(self._cost_text())
        self.cost.setWordWrap(True)
        self.warning = QLabel(self._warning_text())
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
        self.warning.setVisible(bool(self.warning.text()))
        self.spent = QLabel()
        self.spent.setWordWrap(True)
        state.changed.connect(self._on_changed)  # until done()
        self.ledger.editingFinished.connect(self._read_ledger)
        self._read_ledger()
        self.burned_in = QCheckBox(BURNED_IN_BOX)
        self.burned_in.setVisible(self._burned_in_warning() != "")
        self.keep_aspect = QCheckBox("Keep the image's aspect ratio (publishes it unprotected)")
        self.force_budget = QCheckBox(FORCE_BOX)
        # Whose image this is: a DICOM says it; a PNG, JPEG or TIFF has no patient ID, so the
        # per-patient budget needs one typed here, or the officer's word that the image is a
        # patient of its own.
        self.patient_id = QLineEdit()
        self.patient_id.setPlaceholderText("the patient's ID (counted under a keyed pseudonym)")
        self.patient_id.setToolTip("The ledger keeps only a keyed hash of it, never the ID")
        self.one_patient = QCheckBox(ONE_IMAGE_BOX)
        self.needs_patient = self._needs_patient()
        self.refusal = QLabel()  # why the last export was refused, beside the buttons
        self.refusal.setObjectName("warning")
        self.refusal.setWordWrap(True)
        self.refusal.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export",
                                                    QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setEnabled(not no_privacy)
        self.no_privacy.toggled.connect(self.export_button.setEnabled)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        for box in (self.mechanism, self.fmt):
            box.currentIndexChanged.connect(self._show_release)
        self.keep_aspect.toggled.connect(self._show_release)
        self._show_release()
        form = QFormLayout()
        form.addRow("Mechanism", self.mechanism)
        form.addRow("Format", self.fmt)
        form.addRow("Release folder", with_browse(self.out, self._browse_out))
        form.addRow("Privacy ledger", with_browse(self.ledger, self._browse_ledger))
        if self.needs_patient:
            form.addRow("Patient ID", self.patient_id)
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.addWidget(notice)
        inner.addWidget(self.no_privacy)
        inner.addLayout(form)
        for widget in (self.meaning, self.published, self.cost, self.spent, self.warning,
                       self.burned_in, self.keep_aspect, self.force_budget, self.one_patient):
            inner.addWidget(widget)
        self.one_patient.setVisible(self.needs_patient)
        inner.addStretch(1)
        # The explanations keep their whole text and scroll on a short screen; the refusal
        # and the buttons stay in view.
        self.scroll = QScrollArea()
        self.scroll.setWidget(content)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.refusal)
        layout.addWidget(self.buttons)
        # wide enough for the widest row (a box's label does not wrap), tall as its content
        fit_to_screen(self, QSize(max(640, content.minimumSizeHint().width() + 60),
                                  content.sizeHint().height() + 120))

    # ----------------------------------------------------------------- content

    def _cost_text(self) -> str:
        e_px, total = self.state.params.e_px, self.state.total_epsilon
        return (f"Budget spent on this image: ε per pixel = {format_e_px(e_px)}, total ε = "
                f"{scientific(total)}. It is added to the image's (and, for DICOM, the "
                "patient's) total in the privacy ledger; releasing the same image again "
                "adds up.")

    def _show_release(self) -> None:
        """What the chosen mechanism's budget means, and what exactly will be published."""
        said = self._statement()
        if said is not None:
            self.meaning.setText(f"<b>{said.headline}.</b> {said.formal} {said.measured}")
        self.published.setText(self._published_text())

    def _statement(self):
        models, p = self.state.models, self.state.params
        if models is None:
            return None
        name = self.mechanism.currentData()
        return statement(name, p.mode_of(name), p.e_px, models.resolution, models.risk_card)

    def _published_text(self) -> str:
        fmt = self.fmt.currentData()
        name = f"16 random hex digits + {RELEASE_FORMATS[fmt].suffix} (drawn when written)"
        lines = [f"<b>File name:</b> {name}: nothing of the source's name or folder.",
                 f"<b>Size:</b> {self._size_text()}."]
        if fmt == "dicom":
            kept = self.state.source.kept_header if self.state.source else {}
            values = ", ".join(f"{k} {v}" for k, v in kept.items()) or "none"
            lines.append(
                "<b>Header:</b> a new de-identified Secondary Capture. Patient's Name and "
                "Patient ID are a generated pseudonym, not the patient's; new UIDs; no dates, "
                f"no free text. Kept from the source (defined terms only): {values}.")
        else:
            lines.append("<b>Header:</b> none (PNG: pixels only).")
        return "<br>".join(lines)

    def _size_text(self) -> str:
        src, rendered, r = self.state.source, self.state.rendered, self.state.resolution
        if src is None or r is None:
            return "the model's resolution"
        h, w = src.pixels.shape
        if self.keep_aspect.isChecked() and rendered is not None:
            ph, pw = rendered.panes[PaneKey("dpglow")].pixels.shape
            return f"{pw} × {ph} pixels (the source's aspect) from a {w} × {h} source"
        return f"{r} × {r} pixels (the whole model frame) from a {w} × {h} source"

    def _dataset(self):
        image = self.state.source.image if self.state.source else None
        return image.dataset if image is not None else None

    def _read_ledger(self) -> None:
        """On the engine thread: opening a ledger may wait for a batch release's lock."""
        self.state.read_ledger(Path(self.ledger.text()).expanduser())

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if Aspect.LEDGER in aspects:
            self.spent.setText(self._spent_text())
        if self.exporting and Aspect.EXPORTED in aspects:
            self.exporting = False
            super().accept()
        elif (self.exporting and Aspect.ERROR in aspects
              and not self.state.waiting(Kind.EXPORT)):
            self.exporting = False
            self._refuse(in_window_words(self.state.message))

    def _spent_text(self) -> str:
        """What the ledger already holds for this image (nothing for a sample, or where
        there is no ledger yet)."""
        spent = self.state.ledger
        if spent is None:
            image = self.state.source.image if self.state.source else None
            return "" if image is None else "Reading the privacy ledger…"
        if spent.error:
            return f"Ledger: {spent.error}"
        if not spent.exists:
            return ""
        limit = spent.patient_budget
        budget = f" (per-patient budget {scientific(limit)})" if limit else ""
        return (f"Already spent on this image: total ε {scientific(spent.on_image)}; on this "
                f"patient: {scientific(spent.on_patient)}{budget}.")

    def _warning_text(self) -> str:
        lines = []
        if self.state.markers or self.state.flip:
            lines.append("Your block markers / flip are part of the input and will be in the "
                         "exported image.")
        if warning := self._burned_in_warning():
            lines.append(warning)
        return "\n".join(lines)

    def _burned_in_warning(self) -> str:
        """Why the export needs the user's confirmation about burned-in text, if it does
        (the release policy: glow_engine.release.deid.check_burned_in)."""
        image = self.state.source.image if self.state.source else None
        if image is None or image.dataset is None or image.burned_in_annotation is False:
            return ""
        if image.burned_in_annotation:
            return ("The DICOM header says the image has burned-in annotation (text such as "
                    "names in the pixels): check the pixels before exporting.")
        return ("The DICOM header does not say whether text is burned into the pixels: check "
                "the pixels before exporting.")

    # ----------------------------------------------------------------- actions

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Release folder", self.out.text())
        if path:
            self.out.setText(path)

    def _browse_ledger(self) -> None:
        path = ask_ledger(self, self.ledger.text())
        if path:
            self.ledger.setText(path)
            self._read_ledger()

    def done(self, result: int) -> None:
        self.state.changed.disconnect(self._on_changed)
        super().done(result)

    def accept(self) -> None:
        """Export, and close once the file is written; a refusal keeps the dialog open."""
        if self.no_privacy.isVisibleTo(self) and not self.no_privacy.isChecked():
            return  # ε = ∞ is exported only on an explicit yes
        if (warning := self._burned_in_warning()) and not self.burned_in.isChecked():
            self._refuse(f"{warning} Tick “{BURNED_IN_BOX}” to export it.")
            return
        patient = self.patient_id.text().strip() or None
        if self.needs_patient and patient is None and not self.one_patient.isChecked():
            self._refuse("this image has no patient ID, so the per-patient budget cannot "
                         "count it with the patient's other images. Type the patient's ID "
                         f"under “Patient ID”, or tick “{ONE_IMAGE_BOX}”.")
            return
        out, ledger = Path(self.out.text()).expanduser(), Path(self.ledger.text()).expanduser()
        self.settings.setValue("export_dir", str(out))
        self.settings.setValue("ledger", str(ledger))
        self.refusal.setText("Exporting…")
        self.refusal.show()
        self.export_button.setEnabled(False)
        self.exporting = True
        self.state.export(self.mechanism.currentData(), out, self.fmt.currentData(), ledger,
                          allow_burned_in=self.burned_in.isChecked(),
                          force_budget=self.force_budget.isChecked(),
                          keep_aspect=self.keep_aspect.isChecked(), patient_id=patient,
                          one_patient_per_image=self.one_patient.isChecked())

    def _needs_patient(self) -> bool:
        """A file without a patient ID (a synthetic sample is nobody's)."""
        image = self.state.source.image if self.state.source else None
        return image is not None and not image.patient_id

    def _refuse(self, why: str) -> None:
        self.refusal.setText(f"Not exported: {why}")
        self.refusal.show()
        self.export_button.setEnabled(True)
