"""The PACS window, offscreen, against the two real Orthanc servers of tests/orthanc (A the
hospital PACS, B the research PACS; skipped with a reason where Orthanc is not installed,
failed in CI): nodes added, edited and echoed (saved to the nodes file, its comments kept),
a query's studies listed, the checked ones released to B from the batch window's settings,
Cancel between images, a bad node said in the window's words, and a look at a study whose
staged copy is deleted when the look is closed. On the tiny test models."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pydicom
import pytest
from pacs_helpers import to_bytes, write_nodes
from test_app_support import TIMEOUT_MS, Gate, make_window
from test_pacs_orthanc import at_b, nodes_text, orthanc, patient  # noqa: F401 (a fixture)

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from app.qt.pacs_window import NodeDialog, PacsWindow
from glow_engine.pacs import release as pacs_release
from glow_engine.pacs.nodes import load_nodes
from glow_engine.release.ledger import Ledger

pytestmark = pytest.mark.slow
NETWORK_MS = 30_000


@pytest.fixture
def nodes(orthanc, tmp_path) -> Path:  # noqa: F811
    return write_nodes(tmp_path / "nodes.toml", "# the officer's own comment\n"
                       + nodes_text(orthanc))


@pytest.fixture
def pacs(qtbot, settings, models, nodes, tmp_path) -> PacsWindow:
    settings.setValue("pacs_nodes", str(nodes))
    settings.setValue("ledger", str(tmp_path / "led" / "ledger.sqlite"))
    main = make_window(qtbot, settings, models)
    main.start()
    main.show_pacs()
    window = main.pacs_window
    qtbot.waitUntil(lambda: window.node_list.count() > 0, timeout=NETWORK_MS)
    return window


def find(qtbot, window: PacsWindow, accession: str) -> None:
    window.source.setCurrentText("hospital")
    window.accessions.setText(accession)
    window.find.click()
    qtbot.waitUntil(lambda: window.results.rowCount() > 0 or bool(window.pacs.message),
                    timeout=NETWORK_MS)


def check_all(window: PacsWindow) -> None:
    for row in range(window.results.rowCount()):
        window.results.item(row, 0).setCheckState(Qt.CheckState.Checked)


def fill_dialog(monkeypatch, **fields) -> None:
    """The node dialog, filled with `fields` and saved (instead of waiting for a user)."""
    def run(dialog: NodeDialog) -> int:
        for name, value in fields.items():
            widget = getattr(dialog, name)
            if hasattr(widget, "setValue"):
                widget.setValue(value)
            elif hasattr(widget, "setCurrentIndex"):
                widget.setCurrentIndex(widget.findData(value))
            else:
                widget.setText(value)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(NodeDialog, "exec", run)


def test_nodes_are_added_edited_and_echoed(qtbot, pacs, nodes, orthanc, monkeypatch) -> None:  # noqa: F811
    fill_dialog(monkeypatch, name_edit="research2", ae_title=orthanc.b_aet, host="127.0.0.1",
                port=orthanc.b_dicom, retrieve="move")
    pacs.add_node.click()
    qtbot.waitUntil(lambda: "research2" in pacs.pacs.nodes.nodes, timeout=NETWORK_MS)
    saved = load_nodes(nodes).get("research2")
    assert (saved.ae_title, saved.port, saved.retrieve) == (orthanc.b_aet, orthanc.b_dicom,
                                                            "move")
    assert nodes.read_text().startswith("# the officer's own comment")  # kept
    fill_dialog(monkeypatch, name_edit="research3", timeout=12.0)  # rename and edit
    pacs.node_list.setCurrentRow(pacs._node_names().index("research2"))
    pacs.edit_node.click()
    qtbot.waitUntil(lambda: "research3" in pacs.pacs.nodes.nodes, timeout=NETWORK_MS)
    edited = load_nodes(nodes)
    assert "research2" not in edited.nodes and edited.get("research3").timeout == 12.0
    pacs.echo.click()
    qtbot.waitUntil(lambda: "answers" in pacs.status.text(), timeout=NETWORK_MS)


def test_a_query_lists_the_studies(qtbot, pacs, orthanc) -> None:  # noqa: F811
    pid, accession = patient(orthanc, "CR", "DX")
    find(qtbot, pacs, accession)
    assert pacs.results.rowCount() == 1, pacs.status.text()
    row = [pacs.results.item(0, c).text() for c in range(1, pacs.results.columnCount())]
    assert row[:5] == [pid, "2024-06-07", accession, "CR,DX", "2"]
    assert not pacs.release.isEnabled()  # nothing ticked yet
    check_all(pacs)
    assert pacs.release.isEnabled() and pacs.release.text() == "Release 1 selected…"


def release_window(qtbot, pacs: PacsWindow, accession: str):
    find(qtbot, pacs, accession)
    check_all(pacs)
    pacs.destination.setCurrentText("research")
    pacs.release.click()
    window = pacs.release_window
    qtbot.waitUntil(lambda: window.start.isEnabled(), timeout=TIMEOUT_MS)  # models loaded
    assert window.destination.currentText() == "research"
    window.budget.setText("10")
    return window


def test_release_selected_reaches_the_destination(qtbot, pacs, orthanc, tmp_path) -> None:  # noqa: F811
    pid, accession = patient(orthanc, "CR", "DX", "CT")
    window = release_window(qtbot, pacs, accession)
    window.linkage.setCurrentIndex(window.linkage.findData("patient"))
    window.start.click()
    qtbot.waitUntil(lambda: window.request is None, timeout=120_000)
    done = pacs.pacs.released
    assert done is not None, window.summary.text()
    assert done.batch.counts == {"written": 2} and done.sent == 2
    assert "Sent to research: 2" in window.summary.text()
    assert "retrieved originals deleted" in window.summary.text()
    assert any("modality CT" in line for line in done.skipped)
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
            for p in (tmp_path / "led").glob("*.outbox-research/*.dcm")}
    there = [ds for ds in at_b(orthanc) if ds.SOPInstanceUID in uids]
    assert len(there) == 2 and all(pid.encode() not in to_bytes(ds) for ds in there)
    assert len({ds.StudyInstanceUID for ds in there}) == 1  # linked, as chosen
    assert not list((tmp_path / "led").rglob(".dpglow-retrieved-*"))
    assert window.progress.text().startswith("Sending")


def test_cancel_stops_between_images(qtbot, pacs, orthanc, tmp_path, monkeypatch) -> None:  # noqa: F811
    _, accession = patient(orthanc, "CR", "CR", "DX")
    gate = Gate(monkeypatch, at=1, release_job=pacs_release)
    window = release_window(qtbot, pacs, accession)
    window.start.click()
    assert gate.reached.wait(120)
    window.cancel.click()
    gate.open.set()
    qtbot.waitUntil(lambda: window.request is None, timeout=120_000)
    done = pacs.pacs.released
    assert done.batch.counts == {"written": 1, "not-started": 2}, window.summary.text()
    assert "Not started: 2 (cancelled)" in window.summary.text()
    # Cancel stops the sending too: the released image waits in the outbox for a rerun
    assert done.sent == 0 and "NOT sent (cancelled): 1" in window.summary.text()
    with Ledger(tmp_path / "led" / "ledger.sqlite") as ledger:
        assert len(ledger.releases()) == 1
    assert not list((tmp_path / "led").rglob(".dpglow-retrieved-*"))


def test_a_bad_node_is_said_with_the_windows_controls(qtbot, pacs, nodes, orthanc) -> None:  # noqa: F811
    write_nodes(nodes, nodes_text(orthanc, a_aet="NOT_A"))
    pacs.reload()
    qtbot.waitUntil(lambda: pacs.node_list.count() > 0, timeout=NETWORK_MS)
    pacs.node_list.setCurrentRow(pacs._node_names().index("hospital"))
    pacs.patient_id.setText("MRN-kept")
    pacs.echo.click()
    qtbot.waitUntil(lambda: bool(pacs.pacs.message), timeout=NETWORK_MS)
    message = pacs.status.text()
    assert "not called NOT_A" in message and "'AE title' of node hospital" in message
    assert "(Edit node)" in message and not re.search(r"--\w|nodes file|ae_title", message)
    assert pacs.patient_id.text() == "MRN-kept"  # the user's entries stay
    pacs.date_from.setText("2024-01-01")
    pacs.find.click()
    assert "'Study date'" in pacs.status.text() or "study date" in pacs.status.text()
    assert pacs.date_from.text() == "2024-01-01"


def test_the_staged_copy_is_deleted_when_the_look_closes(qtbot, pacs, orthanc, tmp_path) -> None:  # noqa: F811
    _, accession = patient(orthanc, "CR", "CT")
    find(qtbot, pacs, accession)
    pacs.results.selectRow(0)
    pacs.look.click()
    qtbot.waitUntil(lambda: pacs.pacs.look is not None, timeout=NETWORK_MS)
    folder = pacs.pacs.look.folder
    assert folder is not None, pacs.status.text()
    assert folder.parent == tmp_path / "led" and (folder.stat().st_mode & 0o777) == 0o700
    assert len(list(folder.rglob("*.dcm"))) == 1  # the CT left out
    main = pacs.parent()
    qtbot.waitUntil(lambda: main.state.folder is not None, timeout=NETWORK_MS)
    assert main.state.folder.folder == folder  # the viewer shows the staged copy
    pacs.close()
    qtbot.waitUntil(lambda: not folder.exists(), timeout=NETWORK_MS)
    assert pacs.pacs.look.folder is None
