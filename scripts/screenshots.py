"""The viewer's documentation screenshots, from synthetic samples only (never patient data).

    xvfb-run -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshots.py docs/img 1366x768
    xvfb-run -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshots.py docs/img 1920x1080

After SIZE, the viewer's own model arguments may follow (--mixture, --normal, --model-dir).

Writes viewer-SIZE.png (the main window as it opens on that screen, strip and a marker on),
compare-SIZE.png (the original beside DP-GLOW, the plot drawing DP-GLOW's privatised
reference), export-SIZE.png (the export dialog), and where the mixture model holds fitted clip
boxes side-fitted-SIZE.png (the side panel with DP-GLOW's noise rule on the fitted box),
and with 1920x1080 also ledger.png and batch.png: three samples drawn from the shipped model,
released from the batch window into a scratch folder with a scratch ledger. Where Orthanc is
installed, also pacs-SIZE.png: the PACS window querying the test harness's hospital server
(tests/orthanc), which holds made-up radiographs of made-up patients only.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication

from app.__main__ import build_parser as viewer_arguments
from app.__main__ import model_paths
from app.core.pane_keys import ORIGINAL, PaneKey
from app.qt.collector import collect_on_gui_thread
from app.qt.export import ExportDialog
from app.qt.main_window import MainWindow
from app.qt.theme import apply_theme, configure_plots
from glow_engine.imaging.write import save_png
from glow_engine.overlays import BlockMarker

TIMEOUT_S = 300


def wait(app: QApplication, done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(30):  # let the last repaint through
        app.processEvents()


def main(out: Path, size: str, viewer_args: list[str]) -> None:
    app = QApplication(sys.argv[:1])
    configure_plots()
    collect_on_gui_thread()
    scratch = Path(tempfile.mkdtemp(prefix="dpglow-shots-"))
    settings = QSettings(str(scratch / "viewer.ini"), QSettings.Format.IniFormat)
    settings.setValue("ledger", str(scratch / "ledger.sqlite"))
    settings.setValue("export_dir", str(scratch / "released"))
    apply_theme(app, "dark")
    window = MainWindow(settings, model_paths(viewer_arguments().parse_args(viewer_args)))
    window.place_on_screen(restore=False)
    # maximised as it opens (Xvfb has no window manager to do it)
    window.setGeometry(window.screen().availableGeometry())
    window.state.set_display(strip=True)
    window.show()
    window.start()
    s = window.state
    wait(app, lambda: s.settled and s.rendered is not None and s.strip is not None, "panes")
    s.add_marker(BlockMarker(0.35, 0.7, 0.08))
    wait(app, lambda: s.settled and s.strip is not None and s.markers, "the marker")
    out.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out / f"viewer-{size}.png"))
    desk_views(app, window, out, size)
    side_fitted(app, window, out, size)
    if size == "1920x1080":
        officer_windows(app, window, scratch, out)
    pacs_window(app, window, scratch, out, size)
    window.close()


def desk_views(app: QApplication, window: MainWindow, out: Path, size: str) -> None:
    """compare-SIZE.png: the original beside DP-GLOW (C), its score row selected so the plot
    draws the privatised reference; export-SIZE.png: the export dialog on that screen."""
    window.compare_with(PaneKey("dpglow"))
    window.scores.select(PaneKey("dpglow"))
    for _ in range(30):
        app.processEvents()
    window.grab().save(str(out / f"compare-{size}.png"))
    window.toggle_compare()
    window.scores.select(ORIGINAL)
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    wait(app, dialog.isVisible, "the export dialog")
    dialog.grab().save(str(out / f"export-{size}.png"))
    dialog.reject()


def side_fitted(app: QApplication, window: MainWindow, out: Path, size: str) -> None:
    """side-fitted-SIZE.png: the side panel in fitted mode, then back to the rule it had."""
    s = window.state
    if s.fitted_box is None:
        print("the mixture model has no fitted clip box: no side-fitted screenshot",
              file=sys.stderr)
        return
    mode = s.params.mode
    s.set_mode("fitted")
    wait(app, lambda: s.settled and s.rendered is not None, "the fitted box's panes")
    window.side_scroll.grab().save(str(out / f"side-fitted-{size}.png"))
    s.set_mode(mode)
    wait(app, lambda: s.settled and s.rendered is not None, "the panes")


def officer_windows(app: QApplication, window: MainWindow, scratch: Path, out: Path) -> None:
    s = window.state
    folder = scratch / "samples"
    folder.mkdir()
    for i in range(3):  # synthetic samples, drawn from the model
        s.new_sample()
        wait(app, lambda: s.settled and s.rendered is not None, "a sample")
        save_png(s.source.pixels, folder / f"sample{i}.png")
    window.show_batch()
    batch = window.batch_window
    batch.inputs.setText(str(folder))
    batch.budget.setText("0.1")
    batch.one_patient.setChecked(True)  # synthetic samples: nobody's, each its own
    batch.preview_patients()
    wait(app, lambda: s.patients is not None, "the patient preview")
    batch.release()
    wait(app, lambda: batch.request is None, "the batch release")
    batch.grab().save(str(out / "batch.png"))
    window.show_ledger()
    ledger = window.ledger_window
    wait(app, lambda: ledger.tables["Releases"].rowCount() == 3, "the ledger")
    ledger.grab().save(str(out / "ledger.png"))


def pacs_window(app: QApplication, window: MainWindow, scratch: Path, out: Path,
                size: str) -> None:
    """The PACS window with a query's answer, two studies ticked (made-up patients on the
    test harness's Orthanc servers, started here and stopped after)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import requests
    from orthanc import harness
    from pacs_helpers import chest_dicom, to_bytes

    if not harness.installed():
        print("Orthanc is not installed: no pacs screenshot", file=sys.stderr)
        return
    folder = Path(tempfile.mkdtemp(prefix="dpglow-shots-orthanc-"))
    servers = harness.start(folder)
    try:
        for i, (modalities, date) in enumerate((("CR", "20240607"), ("DX", "20240611"),
                                                ("CR", "20240702"))):
            ds = chest_dicom(f"MRN-10{i}7", modality=modalities, accession=f"ACC24{i}31",
                             seed=i)
            ds.StudyDate = date
            requests.post(f"http://127.0.0.1:{servers.a_http}/instances", data=to_bytes(ds),
                          auth=(harness.USER, harness.PASSWORD), timeout=10).raise_for_status()
        nodes = scratch / "nodes.toml"
        nodes.write_text(f"""[local]
ae_title = "{servers.our_aet}"
port = {servers.our_port}

[nodes.hospital]
kind = "dimse"
ae_title = "{servers.a_aet}"
host = "127.0.0.1"
port = {servers.a_dicom}

[nodes.research]
kind = "dimse"
ae_title = "{servers.b_aet}"
host = "127.0.0.1"
port = {servers.b_dicom}
""", encoding="utf-8")
        window.settings.setValue("pacs_nodes", str(nodes))
        window.show_pacs()
        pacs = window.pacs_window
        wait(app, lambda: pacs.node_list.count() == 2, "the nodes")
        pacs.source.setCurrentText("hospital")
        pacs.destination.setCurrentText("research")
        pacs.date_from.setText("20240601")
        pacs.date_to.setText("20240731")
        pacs.find.click()
        wait(app, lambda: pacs.results.rowCount() == 3, "the query")
        for row in (0, 1):
            pacs.results.item(row, 0).setCheckState(Qt.CheckState.Checked)
        pacs.results.selectRow(2)
        pacs.node_list.setCurrentRow(0)
        pacs.grab().save(str(out / f"pacs-{size}.png"))
        pacs.close()
    finally:
        harness.stop(folder)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
