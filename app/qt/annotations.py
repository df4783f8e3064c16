"""What the user draws on the images: editable block markers on the original, and a distance
ruler on any pane.

Both live in the panes' shared coordinates, the source image's pixels (app.qt.panes), so a
distance measured on a privatised pane (decoded at model resolution, stretched onto the
source's rectangle) is the same anatomy's distance as on the original.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsLineItem

from glow_engine.overlays import BlockMarker

MARKER_PEN = QColor(255, 200, 0)
RULER_PEN = QColor(0, 230, 255)


def marker_rect(m: BlockMarker, width: float, height: float) -> QRectF:
    """A marker's square in image coordinates (its side is a fraction of the long side)."""
    s = m.size * max(width, height)
    return QRectF(m.col * width - s / 2, m.row * height - s / 2, s, s)


def marker_from_rect(rect: QRectF, width: float, height: float,
                     intensity: float) -> BlockMarker:
    """The inverse of marker_rect, the centre kept inside the image."""
    centre = rect.center()
    return BlockMarker(min(max(centre.y() / height, 0.0), 1.0),
                       min(max(centre.x() / width, 0.0), 1.0),
                       min(max(rect.width() / max(width, height), 1e-3), 1.0), intensity)


class MarkerHandles:
    """The block markers on the original pane as squares to select (click), move (drag) and
    resize (drag the corner handle). Every edit is reported once, when the drag ends."""

    def __init__(self, view: pg.ViewBox, selected: Callable[[int], None],
                 edited: Callable[[int, BlockMarker], None]) -> None:
        self.view = view
        self._selected, self._edited = selected, edited
        self.rois: list[pg.ROI] = []

    def show(self, markers: tuple[BlockMarker, ...], selected: int | None, width: float,
             height: float, visible: bool) -> None:
        for roi in self.rois:
            self.view.removeItem(roi)
        self.rois = []
        if not visible:
            return
        for i, m in enumerate(markers):
            rect = marker_rect(m, width, height)
            pen = pg.mkPen(MARKER_PEN, width=3 if i == selected else 1,
                           style=Qt.PenStyle.SolidLine if i == selected
                           else Qt.PenStyle.DashLine)
            roi = pg.ROI(rect.topLeft(), rect.size(), pen=pen, rotatable=False,
                         hoverPen=pg.mkPen(MARKER_PEN, width=2))
            roi.addScaleHandle([1, 1], [0, 0], lockAspect=True)
            roi.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
            roi.sigClicked.connect(lambda _roi, _ev, i=i: self._selected(i))
            roi.sigRegionChangeStarted.connect(lambda _roi, i=i: self._selected(i))
            roi.sigRegionChangeFinished.connect(
                lambda roi, i=i, m=m: self._finished(i, m, roi, width, height))
            self.view.addItem(roi, ignoreBounds=True)
            self.rois.append(roi)

    def _finished(self, index: int, before: BlockMarker, roi: pg.ROI, width: float,
                  height: float) -> None:
        rect = QRectF(QPointF(*roi.pos()), QPointF(*(roi.pos() + roi.size())))
        after = marker_from_rect(rect, width, height, before.intensity)
        if after != before:
            self._edited(index, after)


def distance_text(start: QPointF, end: QPointF, spacing: tuple[float, float] | None) -> str:
    """"12.3 mm" with the DICOM's (row, column) pixel spacing in mm, else "45 px"."""
    dx, dy = end.x() - start.x(), end.y() - start.y()
    if spacing is None:
        return f"{math.hypot(dx, dy):.0f} px"
    row_mm, col_mm = spacing
    return f"{math.hypot(dx * col_mm, dy * row_mm):.1f} mm"


class Ruler:
    """One measured distance on one pane: a line from where the drag started, labelled."""

    def __init__(self, view: pg.ViewBox) -> None:
        self.view = view
        pen = QPen(RULER_PEN)
        pen.setCosmetic(True)
        pen.setWidth(2)
        self.line = QGraphicsLineItem()
        self.line.setPen(pen)
        self.label = pg.TextItem(color=RULER_PEN, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
        for item in (self.line, self.label):
            item.setVisible(False)
            view.addItem(item, ignoreBounds=True)

    def draw(self, start: QPointF, end: QPointF, spacing: tuple[float, float] | None) -> str:
        text = distance_text(start, end, spacing)
        self.line.setLine(start.x(), start.y(), end.x(), end.y())
        self.label.setText(text)
        self.label.setPos(end)
        self.line.setVisible(True)
        self.label.setVisible(True)
        return text

    def clear(self) -> None:
        self.line.setVisible(False)
        self.label.setVisible(False)


def pixel_spacing(dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm of a DICOM's pixels: PixelSpacing, else the detector's
    ImagerPixelSpacing (projection radiographs often carry only that); None if neither is
    there or readable. The loader keeps the source's pixel grid, so it applies as it is."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(dataset, keyword, None) if dataset is not None else None
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0:
            return row, col
    return None
