"""The main window: assembles the views over one ViewState and one EngineWorker.

The window only wires things: menus and shortcuts call state methods; the state's requests
go to the worker; the worker's answers come back to the state on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSettings, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.core.option_words import in_window_words
from app.core.pacs_state import PacsState
from app.core.pane_keys import MECHANISMS, PaneKey
from app.core.state import Aspect, ViewState
from app.qt.batch_window import BatchWindow
from app.qt.browser import FolderBrowser
from app.qt.controls import EpsilonControl
from app.qt.dialogs import About, Document, ModelInfo, ReleaseReport, TagBrowser
from app.qt.export import ExportDialog
from app.qt.ledger_window import LedgerWindow
from app.qt.pacs_window import PacsWindow
from app.qt.panes import ZOOM_STEP, PaneGrid, Tool
from app.qt.scores import ScoresPanel
from app.qt.theme import apply_theme
from app.qt.tools import ReidPanel
from app.qt.widgets import available_area, guard_wheel
from app.qt.worker import EngineLanes, new_session
from glow_engine.imaging.load import SUPPORTED_SUFFIXES
from glow_engine.resources import USER_DOCUMENTS, document_path, resource_path

MAX_RECENT = 10
# The window opens maximised (the panes get the room); this is its size when the user
# restores it down, on screens that hold it. A saved geometry (maximised or not) wins.
DEFAULT_SIZE = QSize(1680, 1000)
IMAGE_FILTER = ("Images (" + " ".join(f"*{s}" for s in sorted(SUPPORTED_SUFFIXES))
                + ");;All files (*)")
MODEL_FILTER = "DP-GLOW model (model.json *.safetensors);;All files (*)"
# Window/level presets on the number keys, as reading stations have them: (name, key, (low,
# high) in the [0, 1] display units, or None for the image's 0.5-99.5 percentiles). A
# radiograph carries no Hounsfield units, so the chest presets are ranges of its grey scale.
WINDOW_PRESETS = (
    ("Full range (0 – 1)", "1", (0.0, 1.0)),
    ("Auto (0.5 – 99.5 %)", "2", None),
    ("Lungs (dark range)", "3", (0.0, 0.6)),
    ("Mediastinum (middle range)", "4", (0.25, 0.85)),
    ("Bone (bright range)", "5", (0.5, 1.0)),
)


@dataclass(frozen=True)
class ModelPaths:
    mixture: Path
    normal: Path | None


def icon(name: str) -> QIcon:
    return QIcon(str(resource_path("icons", f"{name}.svg")))


class MainWindow(QMainWindow):
    closed = Signal()  # after closeEvent has stopped the engine thread

    def __init__(self, settings: QSettings, models: ModelPaths, device: str = "auto",
                 threads: int | None = None) -> None:
        """`threads`: torch's (process-wide) thread count for the engine; None leaves it.
        Garbage must be collected on the GUI thread meanwhile (app.qt.collector): start that
        first and restore on `closed`, as app.__main__ does."""
        super().__init__()
        self.settings = settings
        self.model_paths = models
        self.state = ViewState()
        self.engine = EngineLanes(partial(new_session, device, threads))
        self.worker = self.engine.preview  # the lane that answers what the window shows
        self.state.requested.connect(self.engine.submit)
        self.state.cancelling.connect(self.engine.cancel)
        self.engine.answered.connect(self.state.accept)
        self.engine.progressed.connect(self.state.release_progressed)
        self.worker.busy.connect(self._on_busy)
        self.grid = PaneGrid(self.state)
        self.controls = EpsilonControl(self.state)
        self.reid = ReidPanel(self.state)
        self.scores = ScoresPanel(self.state)
        self.browser = FolderBrowser(self.state)
        self.pending_image: Path | None = None
        self.compare_key = PaneKey("dpglow")  # the pane C shows beside the original
        self.ledger_window: LedgerWindow | None = None  # made when first asked for
        self.batch_window: BatchWindow | None = None
        self.pacs_window: PacsWindow | None = None
        self.messages: list[str] = []  # every error shown, newest last (tests read it)
        self.setWindowTitle("DP-GLOW Viewer")
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.setCentralWidget(self.grid)
        self._build_docks()
        self._build_actions()
        self._build_status()
        self._connect()
        self.engine.start()

    # ----------------------------------------------------------------- construction

    def _build_docks(self) -> None:
        side = QWidget()
        layout = QVBoxLayout(side)
        for panel in (self.controls, self.reid):
            layout.addWidget(panel)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(420)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        guard_wheel(side)  # scrolling the panel never changes a setting under the pointer
        self.side_scroll = scroll
        # The side panel runs the window's full height (the score panel goes under the panes
        # only): on a 768 px screen the budget and the check table then fit without scrolling.
        self.setCorner(Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        side_dock = self._dock("Privacy and checks", scroll, Qt.DockWidgetArea.RightDockWidgetArea)
        scores = self._dock("Anomaly score", self.scores, Qt.DockWidgetArea.BottomDockWidgetArea)
        # The panes get the room; the panels start at the size their content needs.
        self.resizeDocks([side_dock], [440], Qt.Orientation.Horizontal)
        self.resizeDocks([scores], [230], Qt.Orientation.Vertical)
        self.folder_dock = QDockWidget("Folder")
        self.folder_dock.setObjectName("folderDock")
        self.folder_dock.setWidget(self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.folder_dock)
        self.folder_dock.hide()

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        dock.setTitleBarWidget(QWidget())  # the panels carry their own titles
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None,
                icon_name: str | None = None, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setToolTip(f"{text.replace('…', '')} ({QKeySequence(shortcut).toString()})")
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        self.addAction(action)  # shortcuts work even when the toolbar is hidden
        return action

    def _build_actions(self) -> None:
        s, a = self.state, self._action
        self.act = {
            "open": a("Open…", self.open_dialog, QKeySequence.StandardKey.Open, "open"),
            "folder": a("Open folder…", self.open_folder_dialog, "Ctrl+Shift+O", "folder"),
            "export": a("Export privatised image…", self.export_dialog, "Ctrl+E", "export"),
            "tags": a("DICOM tags…", self.show_tags, "Ctrl+T", "tags"),
            "quit": a("Quit", self.close, QKeySequence.StandardKey.Quit),
            "sample": a("New sample", s.new_sample, "N", "sample"),
            "marker": a("Place marker", lambda on: self._set_tool(Tool.MARKER, on), "M",
                        "marker", checkable=True),
            "ruler": a("Measure distance", lambda on: self._set_tool(Tool.RULER, on), "L",
                       checkable=True),
            "delete": a("Remove selected marker", self.reid.remove_selected,
                        QKeySequence.StandardKey.Delete),
            "escape": a("End tool, reset view", self.escape, "Esc"),
            "zoom_in": a("Zoom in", lambda: self.grid.zoom(ZOOM_STEP), "+"),
            "zoom_out": a("Zoom out", lambda: self.grid.zoom(1 / ZOOM_STEP), "-"),
            "fit": a("Zoom to fit", self.grid.reset_view, "="),
            "compare": a("Compare with the original", self.toggle_compare, "C"),
            "flip": a("Flip left-right", s.set_flip, "F", "flip", checkable=True),
            "noise": a("New noise draw", s.new_noise, "Space"),
            "up": a("ε up", lambda: self.controls.step(0.25), "]"),
            "down": a("ε down", lambda: self.controls.step(-0.25), "["),
            "up10": a("ε × 10", lambda: self.controls.step(1), "}"),
            "down10": a("ε ÷ 10", lambda: self.controls.step(-1), "{"),
            "invert": a("Invert", lambda on: s.set_display(invert=on), "I", "invert", True),
            "diff": a("Difference map", lambda on: s.set_display(difference=on), "D", "diff",
                      True),
            "strip": a("Fixed-budget strip", lambda on: s.set_display(strip=on), "S", "strip",
                       True),
            "outlines": a("Marker outlines", lambda on: s.set_display(outlines=on),
                          checkable=True),
            "reset": a("Reset view", self.grid.reset_view, "R", "reset"),
            "window": a("Reset window", lambda: self.set_window_preset(None), "W"),
            "next": a("Next image", lambda: self._step_folder(1), "PgDown"),
            "prev": a("Previous image", lambda: self._step_folder(-1), "PgUp"),
            "mixture": a("Open mixture model…", lambda: self.open_model_dialog("mixture")),
            "normal": a("Open normal model…", lambda: self.open_model_dialog("normal")),
            "info": a("Model information…", self.show_model_info),
            "about": a("About DP-GLOW Viewer…", self.show_about),
            "ledger": a("Privacy ledger…", self.show_ledger, "Ctrl+L"),
            "batch": a("Release a folder…", self.show_batch, "Ctrl+B"),
            "pacs": a("Release from a PACS…", self.show_pacs, "Ctrl+Shift+P"),
        }
        self.act["outlines"].setChecked(True)
        self._build_menus()
        self._build_toolbar()

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addActions([self.act["open"], self.act["folder"]])
        self.recent_menu = file.addMenu("Open recent")
        file.addSeparator()
        file.addActions([self.act["export"], self.act["tags"]])
        file.addSeparator()
        file.addAction(self.act["quit"])
        view = bar.addMenu("&View")
        view.addActions([self.act[k] for k in ("invert", "diff", "strip", "outlines", "reset",
                                                "zoom_in", "zoom_out", "fit", "escape")])
        view.addMenu(self._compare_menu())
        view.addMenu(self._window_menu())
        view.addMenu(self._theme_menu())
        view.addAction(self.folder_dock.toggleViewAction())
        image = bar.addMenu("&Image")
        image.addActions([self.act[k] for k in ("sample", "marker", "delete", "ruler", "flip",
                                                 "noise", "up", "down", "up10", "down10",
                                                 "next", "prev")])
        model = bar.addMenu("&Model")
        model.addActions([self.act["mixture"], self.act["normal"], self.act["info"]])
        privacy = bar.addMenu("&Privacy")
        privacy.addActions([self.act["ledger"], self.act["batch"], self.act["pacs"]])
        help_menu = bar.addMenu("&Help")
        for title in USER_DOCUMENTS:
            help_menu.addAction(f"{title}…", lambda title=title: self.show_document(title))
        help_menu.addSeparator()
        help_menu.addAction(self.act["about"])
        help_menu.addAction("About Qt", QApplication.aboutQt)
        self._fill_recent()

    def _compare_menu(self) -> QMenu:
        """The original beside one privatised pane, at the size the area allows (C toggles
        it with the last one chosen)."""
        menu = QMenu("Compare with the original", self)
        menu.addAction(self.act["compare"])
        menu.addSeparator()
        for name in MECHANISMS:
            menu.addAction(f"Original beside {PaneKey(name).label}",
                           lambda name=name: self.compare_with(PaneKey(name)))
        return menu

    def compare_with(self, key: PaneKey) -> None:
        self.compare_key = key
        if self.grid.compared != key:
            self.grid.compare(key)

    def toggle_compare(self) -> None:
        self.grid.compare(None if self.grid.compared else self.compare_key)

    def _window_menu(self) -> QMenu:
        menu = QMenu("Window / level", self)
        for name, key, levels in WINDOW_PRESETS:
            menu.addAction(self._action(name, partial(self.set_window_preset, levels), key))
        menu.addSeparator()
        menu.addAction(self.act["window"])
        return menu

    def _theme_menu(self) -> QMenu:
        menu = QMenu("Theme", self)
        for name in ("dark", "light"):
            menu.addAction(name.title(), lambda name=name: self.set_theme(name))
        return menu

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        for key in ("open", "folder", "sample", None, "marker", "flip", None, "invert", "diff",
                    "strip", "reset", None, "export"):
            if key is None:
                bar.addSeparator()
            else:
                bar.addAction(self.act[key])
        self.addToolBar(bar)

    def _build_status(self) -> None:
        status = self.statusBar()
        self.device_label = QLabel("Device: …")
        self.worker_label = QLabel("starting")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # indeterminate: the engine gives no fractions
        self.progress.setMaximumWidth(120)
        self.progress.hide()
        self.hover_label = QLabel()
        status.addWidget(self.hover_label, 1)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.worker_label)
        status.addPermanentWidget(self.device_label)

    def _connect(self) -> None:
        self.state.changed.connect(self._on_changed)
        self.grid.hovered.connect(self.hover_label.setText)
        self.grid.measured.connect(lambda text: self.statusBar().showMessage(text, 15000))
        # Arrow keys step through the folder while an image has the focus (elsewhere they
        # belong to the widget: a table, a spin box, the budget field).
        for key, delta in ((Qt.Key.Key_Left, -1), (Qt.Key.Key_Up, -1), (Qt.Key.Key_Right, 1),
                           (Qt.Key.Key_Down, 1)):
            shortcut = QShortcut(QKeySequence(key), self.grid)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(partial(self._step_folder, delta))
        self.grid.markerDrawn.connect(self.reid.add_marker)
        self.reid.place.toggled.connect(self.act["marker"].setChecked)
        self.browser.chosen.connect(self.open_path)

    # ----------------------------------------------------------------- start-up

    def place_on_screen(self, area: QRect | None = None, restore: bool = True) -> None:
        """Open where the saved geometry was if that still fits the screen's available area
        (monitors change), else at the default size, or maximised where that does not fit."""
        area = area if area is not None else available_area(self)
        saved = self.settings.value("geometry") if restore else None
        if saved is not None and self.restoreGeometry(saved) and (
                self.isMaximized() or area.contains(self.frameGeometry())):
            return
        rect, maximise = window_rect(area)
        self.setGeometry(rect)
        if maximise:
            self.setWindowState(self.windowState() | Qt.WindowState.WindowMaximized)

    def start(self, image: Path | None = None) -> None:
        """Load the models, then open `image` or draw a synthetic sample."""
        self.pending_image = image
        self.load_models(self.model_paths)
        if image is not None:
            self.open_path(image)

    def load_models(self, paths: ModelPaths) -> None:
        if not _model_exists(paths.mixture):
            self.grid.set_message(missing_models_text(paths))
            self.worker_label.setText("no model")
            return
        normal = paths.normal if paths.normal and _model_exists(paths.normal) else None
        self.grid.set_message("Loading models…")
        self.state.load_models(paths.mixture, normal)
        self.scores.refresh()  # "loading", not "no model", until the answer comes

    # ----------------------------------------------------------------- file actions

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self._last_dir(),
                                              IMAGE_FILTER)
        if path:
            self.open_path(Path(path))

    def open_path(self, path: Path) -> None:
        self.settings.setValue("last_dir", str(Path(path).parent))
        self.state.open(Path(path))

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self._last_dir())
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path) -> None:
        """Listed on the engine thread (a tree walk may take long), then shown by the
        browser and _on_folder."""
        self.state.open_folder(folder)

    def _on_folder(self) -> None:
        self.settings.setValue("last_dir", str(self.state.folder.folder))
        self.folder_dock.show()
        self.browser.table.selectRow(0)
        self.browser.table.setFocus()  # arrow keys now walk through the folder

    def _step_folder(self, delta: int) -> None:
        table = self.browser.table
        if table.rowCount():
            table.selectRow(min(max(table.currentRow() + delta, 0), table.rowCount() - 1))

    def open_model_dialog(self, which: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Open {which} model", self._last_dir(),
                                              MODEL_FILTER)
        if not path:
            return
        chosen = Path(path)
        if chosen.name in ("model.json", "weights.safetensors"):
            chosen = chosen.parent  # a model folder is chosen through one of its files
        current = self.model_paths
        paths = (ModelPaths(chosen, current.normal) if which == "mixture"
                 else ModelPaths(current.mixture, chosen))
        self.model_paths = paths
        self.load_models(paths)

    def export_dialog(self) -> None:
        if self.state.source is None or self.state.models is None:
            self._show_error("Open an image and load a model before exporting.")
            return
        dialog = ExportDialog(self.state, self.settings, self)
        dialog.open()

    def show_tags(self) -> None:
        src = self.state.source
        if src is None or src.image is None or src.image.dataset is None:
            self._show_error("The open image is not a DICOM file: it has no tags to show.")
            return
        TagBrowser(src.image.dataset, src.name, self).open()

    def show_model_info(self) -> None:
        if self.state.models is None:
            self._show_error(missing_models_text(self.model_paths))
            return
        ModelInfo(self.state.models, self).open()

    def show_document(self, title: str) -> None:
        path = document_path(USER_DOCUMENTS[title])
        if not path.is_file():
            self._show_error(f"{title}: the document is missing from this installation "
                             f"({path}).")
            return
        said = self.controls.statement() if title == "Privacy notes" else None
        preface = ("" if said is None else
                   f"<b>At the budget on screen — {said.headline}.</b> {said.formal} "
                   f"{said.measured}")
        Document(title, path, self, preface).open()

    def show_about(self) -> None:
        About(self.state.models, self).open()

    def show_ledger(self) -> None:
        """The privacy officer's view of every release (one window, brought to the front)."""
        if self.ledger_window is None:
            self.ledger_window = LedgerWindow(self.state, self.settings, self)
        self.ledger_window.show()
        self.ledger_window.raise_()
        self.ledger_window.reload()

    def show_batch(self) -> None:
        if self.batch_window is None:
            self.batch_window = BatchWindow(self.state, self.settings, self)
        self.batch_window.show()
        self.batch_window.raise_()

    def show_pacs(self) -> None:
        """The PACS window (query, look, release to a node); its state is wired to the
        engine lanes here, like the viewer's."""
        if self.pacs_window is None:
            pacs = PacsState(self.state.new_id)
            pacs.requested.connect(self.engine.submit)
            self.engine.answered.connect(pacs.accept)
            self.engine.progressed.connect(pacs.release_progressed)
            self.pacs_window = PacsWindow(pacs, self.state, self.settings, self.open_folder,
                                          self)
        self.pacs_window.show()
        self.pacs_window.raise_()

    def set_window_preset(self, levels: tuple[float, float] | None) -> None:
        original = self.state.original
        if levels is None and original is not None:
            lo, hi = np.percentile(original, (0.5, 99.5))
            levels = (float(lo), float(max(hi, lo + 0.01)))
        self.state.set_display(levels=levels or (0.0, 1.0))

    def set_theme(self, name: str) -> None:
        self.settings.setValue("theme", name)
        apply_theme(QApplication.instance(), name)

    def _set_tool(self, tool: Tool, on: bool) -> None:
        """One tool at a time: choosing one ends the other."""
        current = tool if on else (None if self.grid.tool is tool else self.grid.tool)
        self.grid.set_tool(current)
        for button, which in ((self.act["marker"], Tool.MARKER), (self.act["ruler"], Tool.RULER),
                              (self.reid.place, Tool.MARKER)):
            with QSignalBlocker(button):
                button.setChecked(current is which)

    def escape(self) -> None:
        """Esc, as on a reading station: end the tool, drop the selection, reset the view."""
        if self.grid.tool is not None:
            self._set_tool(self.grid.tool, False)
        self.state.select_marker(None)
        self.grid.enlarge(self.grid.enlarged)  # the enlarged pane (if any) back in the grid
        self.grid.compare(None)
        self.grid.reset_view()

    # ----------------------------------------------------------------- recent files

    def _remember(self, path: Path) -> None:
        recent = [p for p in self._recent() if p != str(path)]
        self.settings.setValue("recent", [str(path), *recent][:MAX_RECENT])
        self._fill_recent()

    def _recent(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self._recent():
            self.recent_menu.addAction(path, lambda p=path: self.open_path(Path(p)))
        self.recent_menu.setEnabled(bool(self._recent()))

    def _last_dir(self) -> str:
        return str(self.settings.value("last_dir", str(Path.home())))

    # ----------------------------------------------------------------- state -> window

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        s = self.state
        if Aspect.MODELS in aspects and s.models is not None:
            self.device_label.setText(f"Device: {s.models.device}")
            if s.source is None and self.pending_image is None:
                s.new_sample()
        if Aspect.SOURCE in aspects and s.source is not None:
            self._on_source()
        if Aspect.OVERLAYS in aspects:
            self.act["flip"].setChecked(s.flip)
        if Aspect.FOLDER in aspects and s.folder is not None:
            self._on_folder()
        if Aspect.ERROR in aspects:
            self._on_error()
        if Aspect.NOTICE in aspects:
            self.statusBar().showMessage(s.notice, 30000)
        if Aspect.EXPORTED in aspects and s.last_export is not None:
            self.statusBar().showMessage(s.last_export.summary, 15000)
            self._show_box(QMessageBox.Icon.Information, s.last_export.summary,
                           s.last_export.report)

    def _on_error(self) -> None:
        s = self.state
        self._show_error(s.message)
        if s.source is not None:
            return  # the previous image stays on screen
        if s.models is None:
            self.grid.set_message(s.message)
        elif self.pending_image is not None:
            self.pending_image = None  # the start-up image failed: show a sample instead
            s.new_sample()

    def _on_source(self) -> None:
        self.pending_image = None
        src = self.state.source
        self.setWindowTitle(f"DP-GLOW Viewer — {src.name}")
        self.act["tags"].setEnabled(src.image is not None and src.image.dataset is not None)
        if src.path is not None:
            self._remember(src.path)

    def _on_busy(self, label: str) -> None:
        self.worker_label.setText(label or "ready")
        self.progress.setVisible(bool(label))

    def _show_error(self, message: str) -> None:
        """In the window's words (its boxes, never a command-line flag); an export's refusal
        is said inside the export dialog, which stays open."""
        message = in_window_words(message)
        self.messages.append(message)
        if not any(d.exporting for d in self.findChildren(ExportDialog) if d.isVisible()):
            self._show_box(QMessageBox.Icon.Warning, message)

    def _show_box(self, kind: QMessageBox.Icon, message: str,
                  report: Path | None = None) -> None:
        box = QMessageBox(kind, "DP-GLOW Viewer", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if report is not None:  # an export's release report: what was released, at what risk
            button = box.addButton("Show the release report", QMessageBox.ButtonRole.ActionRole)
            button.clicked.connect(lambda: ReleaseReport(report, self).open())
        box.open()  # not exec(): the window (and the worker's answers) keep running

    # ----------------------------------------------------------------- Qt events

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if not urls:
            return
        path = Path(urls[0].toLocalFile())
        if path.is_dir():
            self.open_folder(path)
        else:
            self.open_path(path)
        event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:
        # Waits for the running requests (a folder release ends after the image in hand);
        # pending ones are dropped.
        self.engine.stop()
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.sync()
        event.accept()
        self.closed.emit()


def window_rect(area: QRect) -> tuple[QRect, bool]:
    """The main window's first geometry on a screen whose available area is `area` (the
    default size centred where it fits, else the whole area: what restoring it down gives),
    and whether to maximise it: always, on any screen, since the images need the room."""
    if DEFAULT_SIZE.width() <= area.width() and DEFAULT_SIZE.height() <= area.height():
        rect = QRect(QPoint(), DEFAULT_SIZE)
        rect.moveCenter(area.center())
        return rect, True
    return QRect(area), True


def _model_exists(path: Path) -> bool:
    path = Path(path)
    return path.is_file() or (path / "weights.safetensors").is_file()


def missing_models_text(paths: ModelPaths) -> str:
    return (
        "The DP-GLOW model is missing, so nothing can be privatised yet.\n\n"
        f"Expected the mixture model at:\n{paths.mixture}\n\n"
        "Open one with Model ▸ Open mixture model…, or start the viewer with "
        "--model-dir DIR (holding mixture/ and normal/) or --mixture PATH --normal PATH.\n"
        "You can still open images."
    )
