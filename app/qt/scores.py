"""The anomaly score of the original and of every privatised image, placed against the
distribution of the validation normals and abnormals (when one ships with the loaded models,
see glow_engine.validation_scores): the originals' for the original, the privatised ones of
the same mechanism at the same (or nearest measured) budget for the privatised pane selected
in the table (app.core.score_view), with the "outside the distribution" warning. A score whose
image has changed is marked as updating until its new score arrives."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.core.messages import Kind
from app.core.pane_keys import MAIN_KEYS, ORIGINAL, PaneKey
from app.core.score_view import (
    STALE,
    PaneScore,
    ScoredFrames,
    pane_budget,
    pane_score,
    score_text,
)
from app.core.state import Aspect, ViewState
from app.qt.tools import fit_height
from app.qt.widgets import FixedText
from glow_engine.budget import format_e_px
from glow_engine.scores import DEFAULT_SCORE_KIND, ScoreKind
from glow_engine.validation_scores import ReferenceMatch, ValidationGroup

COLUMNS = ("M bits/dim", "N bits/dim", "log-ratio", "")
COLUMN_TIPS = ("bits/dim under the mixture model M: the score the viewer shows",
               "bits/dim under the normal-only model N",
               "log p_N − log p_M in bits per pixel (the paper's score; higher = more normal)",
               "OOD: the original outside the model's distribution; a privatised image "
               "outside the range of the validation X-rays privatised the same way")
# The main panes' legend colours, one per mechanism (app.core.state.MECHANISMS); "": text colour.
PANE_COLOURS = {"original": "", "dpglow": "#29b6f6", "idldp": "#ec407a", "dppix": "#b388ff"}
# The validation images' histograms (glow_engine.validation_scores), apart from the panes'
# colours.
REFERENCE_COLOURS = {"normal": "#66bb6a", "abnormal": "#ffa726"}
# The plot's axis spans the reference's range this many times over on each side; a score
# further out is pinned to the edge with its value (an absurd 9654 bits/dim must not flatten
# the histograms).
AXIS_MARGIN = 1.0


def ood_warning(scores: list[PaneScore]) -> str:
    """The panel's warning, "" when nothing is flagged (stale scores are not judged). The
    input's finding comes with guesses at what it is; a privatised image judged against its
    privatised reference is atypical for that setting; one without a reference keeps the
    model's own finding, caused by privatisation when its input was scored in
    distribution."""
    current = [s for s in scores if not s.stale]
    original = next((s for s in current if s.key.original), None)
    flagged = [s for s in current if s.out_of_distribution and not s.key.original]
    lines = []
    if original is not None and original.out_of_distribution:
        lines.append(f"⚠ The input is outside the model's distribution: "
                     f"{original.score.ood_description}. The budget's formal meaning covers "
                     "every input, this one too; the anomaly score and what the picture keeps "
                     "do not hold here.")
    atypical = [s.key.label for s in flagged if s.match is not None]
    if atypical:
        lines.append(f"⚠ Atypical for a privatised X-ray at its setting: {', '.join(atypical)} "
                     "(a score outside the range of the validation X-rays privatised the same "
                     "way).")
    by_finding: dict[str, list[str]] = {}
    for s in flagged:
        if s.match is None:
            by_finding.setdefault(s.score.ood_summary, []).append(s.key.label)
    if by_finding:
        findings = "; ".join(f"{finding}: {', '.join(panes)}"
                             for finding, panes in by_finding.items())
        in_distribution = original is not None and not original.out_of_distribution
        cause = " (by privatisation)" if in_distribution else ""
        lines.append(f"⚠ Outside the model's distribution{cause}, {findings}. Their anomaly "
                     "scores are not comparable with a chest X-ray's.")
    return "\n".join(lines)


def reference_text(key: PaneKey, match: ReferenceMatch | None, e_px: float | None) -> str:
    """What a privatised pane's score is compared with, and what it can and cannot tell."""
    label = key.label
    if match is None:
        return (f"{label}: no validation X-rays privatised this way were measured with these "
                "models, so its score is judged by the model's own check, which was made for "
                "unprivatised X-rays.")
    ref = match.reference
    at = f"ε/px {format_e_px(ref.e_px)}"
    if not match.exact:
        at += (f" (the nearest measured setting; this pane is at ε/px {format_e_px(e_px)})"
               if e_px is not None and ref.e_px != e_px else " (measured with other options)")
    auc = ref.auc.get(DEFAULT_SCORE_KIND.value, {})
    told = ""
    if "auc" in auc:
        lo, hi = auc.get("ci95", (None, None))
        interval = f", 95% interval {lo:.2f}–{hi:.2f}" if lo is not None else ""
        told = (f" There this score told pneumonia from normal with an AUC of "
                f"{auc['auc']:.2f}{interval} (0.5 is chance).")
    return (f"{label} is compared with the validation X-rays privatised the same way at {at}."
            f"{told} It tells whether this picture is typical of such a privatised X-ray; it "
            "does not tell whether this patient has pneumonia.")


class ScoresPanel(QGroupBox):
    def __init__(self, state: ViewState) -> None:
        super().__init__("Anomaly score")
        self.state = state
        self.frames = ScoredFrames()
        self.selected = ORIGINAL  # the pane whose reference the plot draws
        # Fixed heights that scroll: a longer text never pushes the table or the plot.
        self.explain = FixedText(3)
        self.explain.setObjectName("hint")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setToolTip("Select a row to draw that image's reference in the plot")
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.plot = pg.PlotWidget(background=None)
        self.plot.setMinimumHeight(110)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.getPlotItem().setMenuEnabled(False)
        self.plot.getPlotItem().hideAxis("left")
        self.plot.setLabel("bottom", DEFAULT_SCORE_KIND.label)
        self.legend = QLabel()
        self.legend.setObjectName("hint")
        self.legend.setWordWrap(True)
        self.reference_info = FixedText(3)
        self.reference_info.setObjectName("hint")
        self.histograms: dict[str, pg.PlotCurveItem] = {}
        self.shown_range: tuple[float, float] | None = None  # the plot's x range
        self.warning = FixedText(3)
        self.warning.setObjectName("warning")
        # Wide and short: it sits under the panes, table on the left, distribution right.
        left = QVBoxLayout()
        left.addWidget(self.explain)
        left.addWidget(self.table)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.plot, 1)
        right.addWidget(self.legend)
        right.addWidget(self.reference_info)
        right.addWidget(self.warning)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 1)
        self.table.itemSelectionChanged.connect(self._on_selection)
        state.changed.connect(self._on_changed)
        self.refresh()

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if Aspect.SCORES in aspects:
            self.frames.scored(self.state)
        if aspects & {Aspect.SCORES, Aspect.MODELS, Aspect.SOURCE, Aspect.DISPLAY,
                      Aspect.ERROR, Aspect.RENDERED, Aspect.STRIP, Aspect.PARAMS}:
            self.refresh()

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        keys = [s.key for s in self._scores()]
        if rows and rows[0].row() < len(keys) and keys[rows[0].row()] != self.selected:
            self.select(keys[rows[0].row()])

    def select(self, key: PaneKey) -> None:
        """Draw the reference of pane `key` (its row is selected in the table)."""
        self.selected = key
        self.refresh()

    def refresh(self) -> None:
        models = self.state.models
        if models is None and self.state.waiting(Kind.MODELS):
            self.explain.setText("Loading the models…")
        elif models is None:
            self.explain.setText("No model is loaded: the anomaly score needs the normal and "
                                 "the mixture model.")
        elif models.normal_path is None:
            self.explain.setText("No normal-only model is loaded: the anomaly score needs both "
                                 "the normal and the mixture model.")
        else:
            self.explain.setText(
                "Shown under each image: bits/dim under the mixture model M (higher = less "
                "typical of the training X-rays). The paper's log p_N − log p_M (higher = "
                "more normal) is listed too. Select a row to see its reference.")
        scores = self._scores()
        if self.selected not in {s.key for s in scores}:
            self.selected = ORIGINAL
        self._fill_table(scores)
        self._draw(scores)
        warning = ood_warning(scores)
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))

    def _scores(self) -> list[PaneScore]:
        keys = list(MAIN_KEYS)
        if self.state.display.strip and self.state.strip is not None:
            keys += list(self.state.strip.panes)
        found = (pane_score(self.state, self.frames, k) for k in keys)
        return [s for s in found if s is not None]

    def _fill_table(self, scores: list[PaneScore]) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(len(scores))
        for r, ps in enumerate(scores):
            s = ps.score
            self.table.setVerticalHeaderItem(r, QTableWidgetItem(ps.key.label))
            flag = STALE if ps.stale else ("⚠ OOD" if ps.out_of_distribution else "")
            cells = (score_text(s.bpd_mixture), score_text(s.bpd_normal),
                     f"{s.ratio_bits_per_pixel:+.4f}", flag)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if ps.stale:  # the previous image's score: greyed until the new one comes
                    item.setForeground(QColor("#9e9e9e"))
                    item.setToolTip("The image changed: this is its previous score; the new "
                                    "one is being computed.")
                elif c == len(cells) - 1 and ps.out_of_distribution:
                    item.setToolTip(s.ood_description if ps.match is None else
                                    "Outside the range of the validation X-rays privatised "
                                    "the same way")
                self.table.setItem(r, c, item)
            if ps.key == self.selected:
                self.table.selectRow(r)
        self.table.blockSignals(False)
        fit_height(self.table, max_rows=6)

    def _colour(self, key: PaneKey) -> str:
        """The pane's legend colour; the original in the theme's text colour (white on dark,
        black on light)."""
        return PANE_COLOURS.get(key.mechanism) or self.palette().windowText().color().name()

    def _draw(self, scores: list[PaneScore]) -> None:
        self.plot.clear()
        self.histograms = {}
        chosen = next((s for s in scores if s.key == self.selected), None)
        match = chosen.match if chosen is not None else None
        reference = self.state.models.reference if self.state.models is not None else None
        gap = "&nbsp;&nbsp;&nbsp;"
        legend = [f'<span style="color:{self._colour(k)}">━</span> {k.label}'
                  for k in MAIN_KEYS]
        legend.append('<span style="color:#9e9e9e">│</span> strip')
        groups: dict[str, ValidationGroup] | None = None
        if match is not None:
            groups = {"normal": match.reference.normal, "abnormal": match.reference.abnormal}
            legend.append("┆ range at this setting")
            legend += [f'<span style="color:{REFERENCE_COLOURS[g]}">▆</span> val. {g}, '
                       f"privatised ({len(v)})" for g, v in groups.items()]
            self.reference_info.setText(reference_text(self.selected, match,
                                                       pane_budget(self.state, self.selected)))
        elif reference is not None:
            groups = {"normal": reference.normal, "abnormal": reference.abnormal}
            legend.append("┆ OOD limit")
            legend += [f'<span style="color:{REFERENCE_COLOURS[g]}">▆</span> val. {g} '
                       f"({len(v)})" for g, v in groups.items()]
            self.reference_info.setText(
                reference_text(self.selected, None, None) if not self.selected.original
                else f"Histograms: the validation X-rays' scores ({reference.description}), "
                     "computed with exactly the loaded models.")
        else:
            legend.append("┆ reference")
            self.reference_info.setText(
                "No validation reference for these models: the distribution of the validation "
                "normals and abnormals ships only with the models it was computed with.")
        self.legend.setText(gap.join(legend))
        if groups is not None:
            self._draw_histograms(groups)
        limits = self._draw_lines(groups is not None, match)
        values = [s.score.bpd_mixture if DEFAULT_SCORE_KIND is ScoreKind.BPD_MIXTURE
                  else s.score.ratio_bits_per_pixel for s in scores]
        self.shown_range = lo, hi = _axis_range(groups, limits, values)
        self.plot.setXRange(lo, hi, padding=0.02)
        self._pinned = 0
        for ps, value in zip(scores, values, strict=True):
            self._draw_marker(ps, value, lo, hi)

    def _draw_marker(self, ps: PaneScore, value: float, lo: float, hi: float) -> None:
        """A pane's score as a vertical line: main panes in their legend colours, the strip
        thin and grey; a stale one dotted; one beyond the axis pinned to its edge with its
        value written beside it."""
        style = Qt.PenStyle.DotLine if ps.stale else Qt.PenStyle.SolidLine
        pen = (pg.mkPen("#9e9e9e", width=1, style=style) if ps.key.in_strip
               else pg.mkPen(self._colour(ps.key), width=2, style=style))
        shown = min(max(value, lo), hi)
        label = None
        if shown != value and not ps.key.in_strip:  # the strip's are in the table
            label = f"{ps.key.label} {score_text(value)} {'→' if value > hi else '←'}"
            self._pinned += 1
        self.plot.addItem(pg.InfiniteLine(
            shown, angle=90, pen=pen, label=label,
            # one above the other, so that two pinned at one edge stay readable
            labelOpts={"position": 0.85 - 0.2 * self._pinned, "color": self._colour(ps.key),
                       "anchors": [(1, 0.5), (1, 0.5)] if value > hi else [(0, 0.5), (0, 0.5)]}))

    def _draw_histograms(self, groups: dict[str, ValidationGroup]) -> None:
        """The reference normals' and abnormals' scores as two semi-transparent step
        histograms on common bins, each normalised to its own count (the groups differ in
        size), behind the images' markers."""
        values = {g: v.values(DEFAULT_SCORE_KIND) for g, v in groups.items()}
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())),
                                       bins=self.state.models.histogram_bins)
        for name, group in values.items():
            share = np.histogram(group, edges)[0] / len(group)
            colour = QColor(REFERENCE_COLOURS[name])
            fill = QColor(colour)
            fill.setAlpha(80)
            item = pg.PlotCurveItem(edges, share, stepMode="center", fillLevel=0,
                                    pen=pg.mkPen(colour, width=1.5), brush=pg.mkBrush(fill))
            item.setZValue(-10)  # behind the markers
            self.plot.addItem(item)
            self.histograms[name] = item

    def _draw_lines(self, with_histograms: bool,
                    match: ReferenceMatch | None) -> list[float]:
        """Where the model's own images lie, returned for the axis. A privatised reference:
        the range its images reached (what is typical at that setting). The originals'
        histograms: the out-of-distribution limit (calibration) only; without them also the
        training images' median and the validation images' mean."""
        models = self.state.models
        if models is None or DEFAULT_SCORE_KIND is not ScoreKind.BPD_MIXTURE:
            return []  # these lines are bits/dim under M
        if match is not None:
            values = match.reference.values(DEFAULT_SCORE_KIND)
            lines = [(float(values.min()), "", 0.85), (float(values.max()), "range", 0.85)]
        else:
            calibration = models.mixture_meta.get("calibration", {})
            # Label heights differ: the median and the validation mean usually lie close.
            lines = [(calibration.get("bpd_p995"), "OOD limit",
                      0.85 if with_histograms else 0.12)]
            if not with_histograms:
                lines += [(calibration.get("bpd_p50"), "training median", 0.12),
                          (models.mixture_meta.get("validation", {}).get("bpd"),
                           "validation mean", 0.5)]
        drawn = []
        for value, text, height in lines:
            if value is not None:
                drawn.append(float(value))
                self.plot.addItem(pg.InfiniteLine(
                    value, angle=90, label=text or None,
                    pen=pg.mkPen((150, 150, 150), style=Qt.PenStyle.DashLine),
                    labelOpts={"position": height, "color": (170, 170, 170)}))
        return drawn


def _axis_range(groups: dict[str, ValidationGroup] | None, limits: list[float],
                values: list[float]) -> tuple[float, float]:
    """The plot's x range: the reference and its limits, widened by AXIS_MARGIN times their
    span on each side to take in the scores that lie near; scores further out are pinned to
    the edge (ScoresPanel._draw_marker). Without a reference, the scores themselves decide,
    as far as they lie within the same margin of their median."""
    base = list(limits)
    if groups is not None:
        base += [float(v) for g in groups.values() for v in g.values(DEFAULT_SCORE_KIND)]
    finite = [v for v in values if np.isfinite(v)]
    if not base and finite:  # the scores near their median (by the median deviation)
        median = float(np.median(finite))
        spread = 3 * max(float(np.median(np.abs(np.subtract(finite, median)))),
                         0.05 * abs(median), 0.1)
        base = [v for v in finite if abs(v - median) <= spread]
    base = base or [0.0, 1.0]
    lo, hi = min(base), max(base)
    span = max(hi - lo, 0.1)
    near = [v for v in finite if lo - AXIS_MARGIN * span <= v <= hi + AXIS_MARGIN * span]
    return min([lo, *near]), max([hi, *near])

