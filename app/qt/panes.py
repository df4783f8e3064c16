"""The image panes: the original beside its privatised versions, zoom/pan and window linked.

Every pane draws in the same coordinates, the source image's pixels (x right, y down): the
privatised images come back at model resolution and are stretched onto the same rectangle,
so one zoom/pan and one window/level apply to all, and a marker outline lands on the same
anatomy everywhere. Aspect ratios are locked: an image is never stretched.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QPen, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.pane_keys import (
    MAIN_KEYS,
    MECHANISM_KEYS,
    MECHANISMS,
    ORIGINAL,
    STRIP_BUDGETS,
    STRIP_KEYS,
    PaneKey,
)
from app.core.score_view import STALE, PaneScore, ScoredFrames, pane_score, score_text
from app.core.state import Aspect, ViewState
from app.qt.annotations import MARKER_PEN, MarkerHandles, Ruler, marker_rect, pixel_spacing
from app.qt.widgets import ElidedLabel
from glow_engine.budget import format_e_px, total_epsilon
from glow_engine.mechanism_specs import title_of
from glow_engine.overlays import BlockMarker
from glow_engine.privacy_statement import scientific
from glow_engine.scores import DEFAULT_SCORE_KIND, ScoreKind

DIFF_RANGE = 0.35  # difference maps show -0.35 .. +0.35 (beyond that saturates)
PANE_BACKGROUND = "#000000"  # radiographs are read on black, whatever the theme
ZOOM_STEP = 1.25  # + and - zoom by this factor


class Tool(Enum):
    """What a left drag on an image does besides panning."""

    MARKER = "place block markers"  # on the original only
    RULER = "measure distances"


def gray_lut(invert: bool) -> np.ndarray:
    ramp = np.arange(256, dtype=np.uint8)
    return np.repeat((ramp[::-1] if invert else ramp)[:, None], 3, axis=1)


DIFF_LUT = pg.colormap.get("CET-D1").getLookupTable(nPts=256)


class PaneViewBox(pg.ViewBox):
    """A view box where right-drag sets window/level, a double click asks to enlarge the pane,
    and with a tool chosen left click/drag places a marker or measures (instead of
    pyqtgraph's right-drag zoom and context menu)."""

    windowDragged = Signal(float, float, bool)  # screen dx, dy since press; True at start
    markerDrawn = Signal(QRectF)  # in image coordinates; zero size for a click
    rulerDragged = Signal(QPointF, QPointF)  # image coordinates: where the drag began, now
    doubleClicked = Signal()

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.tool: Tool | None = None
        self._band = QGraphicsRectItem()
        self._band.setPen(pg.mkPen(MARKER_PEN, width=1, style=Qt.PenStyle.DashLine, cosmetic=True))
        self._band.setVisible(False)
        self.addItem(self._band, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None) -> None:
        left = ev.button() == Qt.MouseButton.LeftButton
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.screenPos() - ev.buttonDownScreenPos()
            self.windowDragged.emit(delta.x(), delta.y(), ev.isStart())
        elif left and self.tool is Tool.MARKER:
            ev.accept()
            rect = QRectF(self.mapSceneToView(ev.buttonDownScenePos()),
                          self.mapSceneToView(ev.scenePos())).normalized()
            self._band.setRect(rect)
            self._band.setVisible(not ev.isFinish())
            if ev.isFinish():
                self.markerDrawn.emit(rect)
        elif left and self.tool is Tool.RULER:
            ev.accept()
            self.rulerDragged.emit(self.mapSceneToView(ev.buttonDownScenePos()),
                                   self.mapSceneToView(ev.scenePos()))
        else:
            super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:
        if ev.double() and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.doubleClicked.emit()
        elif self.tool is Tool.MARKER and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            point = self.mapSceneToView(ev.scenePos())
            self.markerDrawn.emit(QRectF(point.x(), point.y(), 0.0, 0.0))
        elif ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # no context menu: right button belongs to window/level
        else:
            super().mouseClickEvent(ev)


class Pane(QFrame):
    """Title, image with corner overlays, caption. Knows nothing about privacy: it shows what
    it is given."""

    def __init__(self, key: PaneKey, compact: bool = False) -> None:
        super().__init__()
        self.key = key
        self.setObjectName("pane")
        # Elided in the middle: the mechanism's name and the budget at the end both stay.
        self.title = ElidedLabel(Qt.TextElideMode.ElideMiddle)
        self.title.setObjectName("paneTitle")
        # Long titles are elided rather than widening their pane (panes stay equal).
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.caption = QLabel()
        self.caption.setObjectName("paneCaption")
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.view = PaneViewBox()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.graphics = pg.GraphicsView(background=PANE_BACKGROUND)
        self.graphics.setCentralItem(self.view)
        # Small enough for four main panes, or the strip's nine, across a 1366-pixel screen.
        self.graphics.setMinimumSize(72 if compact else 160, 72 if compact else 160)
        self.graphics.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        # Corner overlays, as on a reading station: what this is (top), the window (bottom).
        self.info, self.levels = (_overlay(self.graphics) for _ in range(2))
        self._corners = _Corners(self.graphics, self.info, self.levels)
        self.graphics.installEventFilter(self._corners)
        self._outlines: list[QGraphicsRectItem] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.caption)
        if compact:
            self.caption.hide()
            # the titles name the budget, the main panes the window: too small for more
            self.info.hide()
            self.levels.hide()
        else:  # two lines whatever the text, so the images of a row stay aligned
            self.caption.setFixedHeight(2 * self.caption.fontMetrics().lineSpacing() + 4)

    def chrome(self) -> int:
        """The pane's height besides its square image: title, caption, margins."""
        margins = self.layout().contentsMargins()
        caption = 0 if self.caption.isHidden() else self.caption.height()
        return (self.title.sizeHint().height() + caption + margins.top() + margins.bottom()
                + 2 * self.layout().spacing())

    def show_overlay(self, info: str, levels: str) -> None:
        self.info.setText(info)
        self.levels.setText(levels)
        self._corners.place()

    def show_pixels(self, pixels: np.ndarray | None, width: float, height: float) -> None:
        if pixels is None:
            self.image.clear()
            return
        self.image.setImage(pixels, autoLevels=False)
        self.image.setRect(QRectF(0, 0, width, height))

    def show_markers(self, markers: tuple[BlockMarker, ...], width: float, height: float,
                     visible: bool) -> None:
        for item in self._outlines:
            self.view.removeItem(item)
        self._outlines = []
        if not visible:
            return
        pen = QPen(MARKER_PEN)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        for m in markers:
            item = QGraphicsRectItem(marker_rect(m, width, height))
            item.setPen(pen)
            self.view.addItem(item, ignoreBounds=True)
            self._outlines.append(item)

    def value_at(self, x: float, y: float, width: float, height: float) -> float | None:
        """The displayed value under image coordinates (x, y), whatever this pane's size."""
        data = self.image.image
        if data is None or not (0 <= x < width and 0 <= y < height):
            return None
        row = int(y * data.shape[0] / height)
        col = int(x * data.shape[1] / width)
        return float(data[row, col])


def _overlay(parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setObjectName("paneOverlay")
    label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    return label


class _Corners(QObject):
    """Keeps the two overlays in their corners when the image view is resized."""

    def __init__(self, graphics: QWidget, top: QLabel, bottom: QLabel) -> None:
        super().__init__(graphics)
        self.graphics, self.top, self.bottom = graphics, top, bottom

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.place()
        return False

    def place(self) -> None:
        for label in (self.top, self.bottom):
            label.adjustSize()
        self.top.move(4, 4)
        self.bottom.move(4, self.graphics.height() - self.bottom.height() - 4)


class SquareGrid(QWidget):
    """Lays its shown panes out as equal squares, centred, in the number of columns that
    makes them largest: four panes in a row on a wide area, two by two on a tall one, two
    side by side at full height when comparing."""

    SPACING = 4

    def __init__(self, panes: list[Pane]) -> None:
        super().__init__()
        self.panes = panes
        for pane in panes:
            pane.setParent(self)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def minimumSizeHint(self) -> QSize:
        return QSize(160, 160)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.relayout()

    def relayout(self) -> None:
        shown = [p for p in self.panes if not p.isHidden()]
        if not shown:
            return
        chrome = max(p.chrome() for p in shown)
        columns, side = max(((c, self._side(len(shown), c, chrome))
                             for c in range(1, len(shown) + 1)), key=lambda cs: cs[1])
        rows = -(-len(shown) // columns)
        width, height = side, side + chrome
        left = (self.width() - columns * width - (columns - 1) * self.SPACING) // 2
        top = (self.height() - rows * height - (rows - 1) * self.SPACING) // 2
        for i, pane in enumerate(shown):
            row, col = divmod(i, columns)
            pane.setGeometry(left + col * (width + self.SPACING),
                             top + row * (height + self.SPACING), width, height)

    def _side(self, n: int, columns: int, chrome: int) -> int:
        """The image side that `columns` columns of n panes allow."""
        rows = -(-n // columns)
        across = (self.width() - (columns - 1) * self.SPACING) // columns
        down = (self.height() - (rows - 1) * self.SPACING) // rows - chrome
        return max(min(across, down), 1)


class PaneGrid(QWidget):
    """All panes plus the shared histogram/window control, driven by the view-state."""

    hovered = Signal(str)  # "x, y: values" for the status bar ("" on a new image)
    markerDrawn = Signal(float, float, float)  # row, col (fractions), size (fraction; 0=click)
    measured = Signal(str)  # the ruler's distance, for the status bar

    def __init__(self, state: ViewState) -> None:
        super().__init__()
        self.state = state
        self.panes = {k: Pane(k) for k in MAIN_KEYS}
        self.panes.update({k: Pane(k, compact=True) for k in STRIP_KEYS})
        self.handles = MarkerHandles(self.panes[ORIGINAL].view, state.select_marker,
                                     state.replace_marker)
        self.rulers = {k: Ruler(p.view) for k, p in self.panes.items()}
        self.enlarged: PaneKey | None = None  # the pane shown alone (double click), if any
        self.compared: str | None = None  # the pane shown beside the original, if any
        self.scored = ScoredFrames()  # which images the captions' scores belong to
        self.strip_titles: dict[str, QLabel] = {}  # mechanism -> over its strip panes
        self.tool: Tool | None = None
        self._drag_levels = (0.0, 1.0)
        self.message = QLabel()
        self.message.setObjectName("placeholder")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(self._build_grid())
        self.histogram = self._build_histogram()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.histogram)
        self._connect_views()
        state.changed.connect(self._on_changed)
        self.set_message("Loading models…")

    # ----------------------------------------------------------------- construction

    def _build_grid(self) -> QWidget:
        """The main panes as the largest squares their area holds; under them the strip, its
        panes grouped under their mechanism's title, sharing the width equally."""
        grid = QWidget()
        layout = self.grid_layout = QVBoxLayout(grid)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.main_area = SquareGrid([self.panes[key] for key in MAIN_KEYS])
        strip = _row()
        per_group = len(STRIP_BUDGETS)
        for i, name in enumerate(MECHANISMS):
            title = self.strip_titles[name] = QLabel(title_of(name))
            title.setObjectName("paneTitle")
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            panes = _row()
            for key in STRIP_KEYS[i * per_group:(i + 1) * per_group]:
                panes.addWidget(self.panes[key], 1)
            group = QVBoxLayout()
            group.setSpacing(2)
            group.addWidget(title)
            group.addLayout(panes, 1)
            strip.addLayout(group, 1)
        layout.addWidget(self.main_area, 3)
        layout.addLayout(strip, 1)
        return grid

    def _build_histogram(self) -> pg.GraphicsView:
        self.hist = pg.HistogramLUTItem(fillHistogram=True)
        self.hist.gradient.hide()  # the LUT is the state's (gray or inverted), not edited here
        self.hist.fillHistogram(True, color=(110, 120, 135, 140))
        self.hist.sigLevelsChanged.connect(self._on_histogram_levels)
        view = pg.GraphicsView(background=PANE_BACKGROUND)
        view.setCentralItem(self.hist)
        view.setFixedWidth(80)
        view.setToolTip("Window: drag the band or its edges (or right-drag on any image)")
        return view

    def _connect_views(self) -> None:
        for pane in self.panes.values():
            pane.view.sigRangeChangedManually.connect(
                lambda _mask, view=pane.view: self._on_user_range(view))
            pane.view.windowDragged.connect(self._on_window_drag)
            pane.graphics.scene().sigMouseMoved.connect(
                lambda pos, view=pane.view: self._on_mouse_moved(view, pos))
            pane.view.rulerDragged.connect(
                lambda start, end, key=pane.key: self._on_ruler(key, start, end))
            pane.view.doubleClicked.connect(lambda key=pane.key: self.enlarge(key))
        self.panes[ORIGINAL].view.markerDrawn.connect(self._on_marker_drawn)

    # ----------------------------------------------------------------- public

    def set_message(self, text: str) -> None:
        """Show a message instead of the panes (no image yet, models missing...)."""
        self.message.setText(text)
        self.stack.setCurrentIndex(0)

    def set_tool(self, tool: Tool | None) -> None:
        """Markers are placed on the original; distances are measured on any pane."""
        self.tool = tool
        for key, pane in self.panes.items():
            on = tool is Tool.RULER or (tool is Tool.MARKER and key.original)
            pane.view.tool = tool if on else None
            pane.graphics.setCursor(Qt.CursorShape.CrossCursor if on
                                    else Qt.CursorShape.ArrowCursor)
        if tool is not Tool.RULER:
            self._clear_rulers()

    def reset_view(self) -> None:
        size = self._image_size()
        if size is not None:
            for pane in self.panes.values():
                pane.view.setRange(QRectF(0, 0, *size), padding=0.02)

    def zoom(self, factor: float) -> None:
        """Zoom every pane about its centre (factor > 1 zooms in)."""
        view = self.panes[ORIGINAL].view
        view.scaleBy((1 / factor, 1 / factor))
        self._on_user_range(view)

    def enlarge(self, key: PaneKey | None) -> None:
        """Show one pane alone in the grid (again: all of them), as a double click does."""
        self.enlarged = None if key == self.enlarged else key
        self.compared = None
        self._show_visibility()

    def compare(self, key: PaneKey | None) -> None:
        """The original and one privatised main pane side by side, as large as the area
        allows (the strip hidden); None, or the same key again, ends it."""
        self.compared = None if key in (None, self.compared) else key
        self.enlarged = None
        self._show_visibility()

    # ----------------------------------------------------------------- state -> view

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if aspects & {Aspect.SOURCE, Aspect.OVERLAYS}:
            self._show_original(reset=Aspect.SOURCE in aspects)
        if aspects & {Aspect.RENDERED, Aspect.STRIP, Aspect.SOURCE, Aspect.DISPLAY}:
            self._show_privatised()
        if aspects & {Aspect.DISPLAY, Aspect.SOURCE}:
            self._show_display()
        if aspects & {Aspect.OVERLAYS, Aspect.DISPLAY, Aspect.SOURCE}:
            self._show_outlines()
        if Aspect.SCORES in aspects:
            self.scored.scored(self.state)
        if aspects & {Aspect.SCORES, Aspect.RENDERED, Aspect.STRIP, Aspect.PARAMS}:
            self._show_captions()
        if aspects & {Aspect.OVERLAYS, Aspect.SELECTION, Aspect.DISPLAY, Aspect.SOURCE}:
            self._show_handles()
        if aspects & {Aspect.RENDERED, Aspect.STRIP, Aspect.SOURCE, Aspect.DISPLAY}:
            self._show_overlays()
        if Aspect.SOURCE in aspects:
            self.hovered.emit("")  # the last image's pixel values no longer apply
            self._clear_rulers()
        if Aspect.MODELS in aspects and self.state.source is None:
            self.set_message("Drawing a synthetic sample from the model…")

    def _image_size(self) -> tuple[int, int] | None:
        src = self.state.source
        return None if src is None else (src.pixels.shape[1], src.pixels.shape[0])

    def _show_original(self, reset: bool) -> None:
        original = self.state.original
        if original is None:
            return
        w, h = self._image_size()
        pane = self.panes[ORIGINAL]
        pane.show_pixels(original, w, h)
        note = f" ({self.state.source.note})" if self.state.source.note else ""
        flip = "  · flipped L-R" if self.state.flip else ""
        pane.title.setText(f"Original — {self.state.source.name}{flip}")
        pane.title.setToolTip(f"{self.state.source.name}{note}")
        self.hist.plot.setData(*_histogram(original))
        self.stack.setCurrentIndex(1)
        if reset:
            self.reset_view()

    def _show_visibility(self) -> None:
        strip = self.state.display.strip and self.compared is None
        shown = {key for key in self.panes if (key in MAIN_KEYS or strip)
                 and self.enlarged in (None, key)}
        if self.compared is not None:
            shown = {ORIGINAL, self.compared}
        for key, pane in self.panes.items():
            pane.setVisible(key in shown)
        for name, title in self.strip_titles.items():  # over its shown strip panes only
            title.setVisible(any(key.in_strip and key.mechanism == name for key in shown))
        main_row = self.enlarged is None or self.enlarged in MAIN_KEYS
        strip_row = strip and (self.enlarged is None or self.enlarged in STRIP_KEYS)
        self.grid_layout.setStretch(0, 3 if main_row else 0)
        self.grid_layout.setStretch(1, 1 if strip_row else 0)  # no empty band when hidden
        self.main_area.setVisible(main_row)
        self.main_area.relayout()

    def _show_privatised(self) -> None:
        size = self._image_size()
        shown = self.state.display
        self._show_visibility()
        if size is None:
            return
        for result, keys in ((self.state.rendered, MECHANISM_KEYS), (self.state.strip, STRIP_KEYS)):
            for key in keys:
                pane = self.panes[key]
                p = None if result is None else result.panes.get(key)
                if p is None:
                    pane.show_pixels(None, *size)
                    pane.title.setText(key.pending_title(self.state.models is not None))
                    continue
                pixels = p.pixels - result.original if shown.difference else p.pixels
                pane.show_pixels(pixels, *size)
                # "Δ" fits a strip pane's narrow title; the tooltip says it in full
                title = p.title + ("  Δ" if shown.difference else "")
                pane.title.setText(title)
                pane.title.setToolTip(f"{p.title}{' (difference map)' if shown.difference else ''}"
                                      f"\n{p.caption}")
        self._show_display()

    def _show_display(self) -> None:
        d = self.state.display
        lut = gray_lut(d.invert)
        for key, pane in self.panes.items():
            if d.difference and not key.original:
                pane.image.setLookupTable(DIFF_LUT)
                pane.image.setLevels((-DIFF_RANGE, DIFF_RANGE))
            else:
                pane.image.setLookupTable(lut)
                pane.image.setLevels(d.levels)
        self.hist.blockSignals(True)
        self.hist.setLevels(*d.levels)
        self.hist.blockSignals(False)

    def _show_outlines(self) -> None:
        size = self._image_size()
        if size is None:
            return
        for key, pane in self.panes.items():  # the original's markers are handles instead
            pane.show_markers(self.state.markers if not key.original else (), *size,
                              self.state.display.outlines)

    def _show_handles(self) -> None:
        size = self._image_size()
        if size is not None:
            self.handles.show(self.state.markers, self.state.selected, *size,
                              self.state.display.outlines or self.state.selected is not None)

    def _show_overlays(self) -> None:
        """Each main pane's corners: what it shows, at which budget and size; the window."""
        src, d = self.state.source, self.state.display
        if src is None:
            return
        h, w = src.pixels.shape
        lo, hi = d.levels
        window = f"W {hi - lo:.2f}  L {(lo + hi) / 2:.2f}"
        self.panes[ORIGINAL].show_overlay(f"Original · {w} × {h} px", window)
        for key in (*MECHANISM_KEYS, *STRIP_KEYS):
            result = self.state.strip if key.in_strip else self.state.rendered
            content = None if result is None else result.panes.get(key)
            levels = f"difference ±{DIFF_RANGE:g}" if d.difference else window
            self.panes[key].show_overlay("" if content is None else _info(content,
                                                                          self.state), levels)

    def _show_captions(self) -> None:
        for key, pane in self.panes.items():
            text = _caption(pane_score(self.state, self.scored, key))
            pane.caption.setText(text)
            pane.caption.setToolTip(text)  # whole, where the pane is too narrow for it

    # ----------------------------------------------------------------- view -> state

    def _on_histogram_levels(self) -> None:
        lo, hi = self.hist.getLevels()
        self.state.set_display(levels=(float(lo), float(hi)))

    def _on_window_drag(self, dx: float, dy: float, start: bool) -> None:
        """Right-drag: horizontal changes the window width, vertical the level (centre)."""
        if start:
            self._drag_levels = self.state.display.levels
        lo, hi = self._drag_levels
        width = max(0.01, (hi - lo) * float(np.exp(dx / 300.0)))
        centre = (lo + hi) / 2 - dy / 600.0
        self.state.set_display(levels=(centre - width / 2, centre + width / 2))

    def _on_user_range(self, view: pg.ViewBox) -> None:
        """Link zoom/pan by hand: pyqtgraph's own links line views up on screen, which
        misplaces panes of different sizes. Only the user's zoom/pan is copied: copying every
        range change would let each pane's aspect lock widen the others without end."""
        (x0, x1), (y0, y1) = view.viewRange()
        for pane in self.panes.values():
            if pane.view is not view:
                pane.view.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _on_ruler(self, key: str, start: QPointF, end: QPointF) -> None:
        self._clear_rulers()
        image = self.state.source.image if self.state.source is not None else None
        spacing = pixel_spacing(image.dataset if image is not None else None)
        self.measured.emit(f"Distance: {self.rulers[key].draw(start, end, spacing)}")

    def _clear_rulers(self) -> None:
        for ruler in self.rulers.values():
            ruler.clear()

    def _on_mouse_moved(self, view: pg.ViewBox, pos: QPointF) -> None:
        size = self._image_size()
        if size is None or not view.sceneBoundingRect().contains(pos):
            return
        point = view.mapSceneToView(pos)
        x, y = point.x(), point.y()
        parts = []
        for key in (*MAIN_KEYS, *(STRIP_KEYS if self.state.display.strip else ())):
            value = self.panes[key].value_at(x, y, *size)
            if value is not None:
                parts.append(f"{key.short} {value:.3f}")
        if parts:
            self.hovered.emit(f"x {int(x)}, y {int(y)}:  " + "   ".join(parts))

    def _on_marker_drawn(self, rect: QRectF) -> None:
        w, h = self._image_size() or (0, 0)
        if not w:
            return
        centre = rect.center()
        row, col = centre.y() / h, centre.x() / w
        if 0 <= row <= 1 and 0 <= col <= 1:
            self.markerDrawn.emit(row, col, max(rect.width(), rect.height()) / max(w, h))


def _row() -> QHBoxLayout:
    row = QHBoxLayout()
    row.setSpacing(4)
    return row


def _histogram(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts, edges = np.histogram(pixels, bins=128, range=(0.0, 1.0))
    return edges[:-1], np.log1p(counts)  # log: the black background would flatten the rest


def _info(content, state: ViewState) -> str:
    """"DP-GLOW · ε/px 100 · total ε 1.64 × 10⁶ · 27 × 32 px": the privatised image's size is
    the model's resolution (its aspect kept), whatever the source's."""
    h, w = content.pixels.shape
    r = state.resolution or 0
    return (f"{content.key.title} · ε/px {format_e_px(content.e_px)} · total ε "
            f"{scientific(total_epsilon(content.e_px, r))}\n{w} × {h} px")


def _caption(shown: PaneScore | None) -> str:
    """Under each pane: the anomaly score the viewer shows, marked while its image has
    changed, and a flag: the original outside the model's distribution, a privatised image
    atypical for its setting (app.core.score_view)."""
    if shown is None:
        return ""
    score, kind = shown.score, DEFAULT_SCORE_KIND
    main = (f"{score_text(score.bpd_mixture)} bits/dim" if kind is ScoreKind.BPD_MIXTURE
            else f"{score.ratio_bits_per_pixel:+.4f} bits/px")
    if shown.stale:
        return f"Score: {main} ({STALE})"
    # its own short line: the caption holds two lines, even in a quarter of a 1366 screen
    flag = ""
    if shown.out_of_distribution:
        flag = ("\n⚠ out of distribution" if shown.match is None
                else "\n⚠ atypical for this setting")
    return f"Score: {main}{flag}"
