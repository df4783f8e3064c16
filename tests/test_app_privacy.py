"""One privacy message, offscreen: the budget panel, the export dialog, Help > Privacy notes
and the release report all say what glow_engine.privacy_statement says; at ε = ∞ nothing
promises noise; the export dialog shows what will be published."""

from __future__ import annotations

import math
import os
import re

import pytest
from test_app_support import TIMEOUT_MS
from test_app_viewer import write_dicom

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QLabel

from app.qt.dialogs import Document
from app.qt.export import ExportDialog
from glow_engine import privacy_statement
from glow_engine.release import report
from glow_engine.resources import USER_DOCUMENTS, document_path

# Paths of the development tree, which an installed viewer does not have.
DEVELOPMENT_PATHS = re.compile(
    r"\.\./shared|glow_engine/|tests/|benchmarks/|scripts/|resources/|docs/|/tmp/|app/[a-z]")


def open_export(window) -> ExportDialog:
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    dialog.one_patient.setChecked(dialog.needs_patient)  # a PNG: a patient of its own
    return dialog


def test_the_panel_says_what_the_statement_says(window) -> None:
    said = privacy_statement.statement("dpglow", "paper", 100, 32)
    c = window.controls
    assert c.headline.text() == said.headline == "No formal protection at this budget"
    assert c.total.text() == f"{said.formal} {said.measured}"
    labels = " ".join(label.text() for label in window.findChildren(QLabel))
    assert "still holds" not in labels


def test_export_and_help_use_the_same_words(qtbot, window) -> None:
    said = privacy_statement.statement("dpglow", "paper", 100, 32)
    dialog = open_export(window)
    assert said.headline in dialog.meaning.text() and said.formal in dialog.meaning.text()
    dialog.mechanism.setCurrentIndex(dialog.mechanism.findData("idldp"))
    assert "not measured for ID-LDP" in dialog.meaning.text()
    dialog.reject()
    window.show_document("Privacy notes")
    notes = window.findChildren(Document)[-1]
    assert said.formal in notes.preface.text() and said.headline in notes.preface.text()
    assert report.formal_meaning is privacy_statement.formal_meaning  # the release report


@pytest.mark.parametrize("title", USER_DOCUMENTS)
def test_help_documents_cite_no_development_paths(qtbot, title) -> None:
    shown = Document(title, document_path(USER_DOCUMENTS[title]))
    qtbot.addWidget(shown)
    text = shown.text.toPlainText()
    assert "epsilon" in text.lower() and DEVELOPMENT_PATHS.findall(text) == []


def test_the_evaluation_keeps_its_commands_for_developers(qtbot) -> None:
    path = document_path(USER_DOCUMENTS["Evaluation results"])
    shown = Document("Evaluation results", path)
    qtbot.addWidget(shown)
    command = "dpglow evaluate --data"
    assert command in path.read_text(encoding="utf-8")  # after the developers' marker
    assert command not in shown.text.toPlainText()
    assert "re-identification" in shown.text.toPlainText()


def test_no_noise_is_no_privacy_and_needs_a_yes(qtbot, window, tmp_path, settings) -> None:
    settings.setValue("export_dir", str(tmp_path / "out"))
    settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))
    window.controls.apply(math.inf)
    qtbot.waitUntil(lambda: window.state.settled, timeout=TIMEOUT_MS)
    assert window.controls.headline.text() == "No privacy: no noise is added"
    dialog = open_export(window)
    texts = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "fresh secure noise" not in texts and "No privacy" in texts
    assert not dialog.export_button.isEnabled()
    requests = []
    window.state.requested.connect(requests.append)
    dialog.accept()  # refused without the yes
    assert requests == [] and not (tmp_path / "out").exists()
    dialog.no_privacy.setChecked(True)
    assert dialog.export_button.isEnabled()
    dialog.reject()


def test_a_dicom_is_released_as_dicom_and_its_header_is_shown(qtbot, window, tmp_path) -> None:
    window.open_path(write_dicom(tmp_path / "study.dcm"))
    qtbot.waitUntil(lambda: window.state.source.name == "study.dcm", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.state.settled and window.state.rendered is not None,
                    timeout=TIMEOUT_MS)
    dialog = open_export(window)
    assert dialog.fmt.currentData() == "dicom"
    published = dialog.published.text()
    assert "16 random hex digits + .dcm" in published
    assert "generated pseudonym, not the patient" in published and "Modality DX" in published
    assert "32 × 32 pixels (the whole model frame) from a 48 × 64 source" in published
    assert "Doe" not in published and "PAT-123" not in published
    dialog.fmt.setCurrentIndex(dialog.fmt.findData("png"))
    assert "none (PNG: pixels only)" in dialog.published.text()
    dialog.reject()


def test_the_export_confirmation_states_sizes_in_one_number_format(qtbot, window, tmp_path,
                                                                   settings) -> None:
    settings.setValue("export_dir", str(tmp_path / "out"))
    settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))
    open_export(window).accept()
    qtbot.waitUntil(lambda: window.state.last_export is not None, timeout=TIMEOUT_MS)
    summary = window.state.last_export.summary
    assert "32 × 32 pixels from a 100 × 120 source" in summary
    assert "1.02 × 10⁵" in summary and "e+" not in summary
