"""The anomaly score of the original and of every privatised image, placed against the
distribution of the validation normals and abnormals (when one ships with the loaded models,
see glow_engine.validation_scores), with the "outside the model's distribution" warning."""

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
from app.core.state import Aspect, ViewState
from app.qt.tools import fit_height
from glow_engine.scores import DEFAULT_SCORE_KIND, Score, ScoreKind
from glow_engine.validation_scores import ValidationScores

COLUMNS = ("M bits/dim", "N bits/dim", "log-ratio", "")
COLUMN_TIPS = ("bits/dim under the mixture model M: the score the viewer shows",
               "bits/dim under the normal-only model N",
               "log p_N − log p_M in bits per pixel (the paper's score; higher = more normal)",
               "OOD: outside the model's distribution")
# The main panes' legend colours, one per mechanism (app.core.state.MECHANISMS); "": text colour.
PANE_COLOURS = {"original": "", "dpglow": "#29b6f6", "idldp": "#ec407a", "dppix": "#b388ff"}
# The validation images' histograms (glow_engine.validation_scores), apart from the panes'
# colours.
REFERENCE_COLOURS = {"normal": "#66bb6a", "abnormal": "#ffa726"}


def ood_warning(scores: list[tuple[PaneKey, Score]]) -> str:
    """The panel's warning, "" when nothing is flagged. The input and the privatised images
    are flagged for different reasons: the input's finding comes with guesses at what it is;
    a privatised image's cause is known when its input was scored in distribution (the
    mechanism)."""
    original = dict(scores).get(ORIGINAL)
    flagged = {k: s for k, s in scores if s.out_of_distribution and not k.original}
    lines = []
    if original is not None and original.out_of_distribution:
        lines.append(f"⚠ The input is outside the model's distribution: "
                     f"{original.ood_description}. The budget's formal meaning covers every "
                     "input, this one too; the anomaly score and what the picture keeps do not "
                     "hold here.")
    if flagged:
        by_finding: dict[str, list[str]] = {}
        for key, score in flagged.items():
            by_finding.setdefault(score.ood_summary, []).append(key.label)
        findings = "; ".join(f"{finding}: {', '.join(panes)}"
                             for finding, panes in by_finding.items())
        in_distribution = original is not None and not original.out_of_distribution
        cause = " (by privatisation)" if in_distribution else ""
        lines.append(f"⚠ Outside the model's distribution{cause}, {findings}. Their anomaly "
                     "scores are not comparable with a chest X-ray's.")
    return "\n".join(lines)


class ScoresPanel(QGroupBox):
    def __init__(self, state: ViewState) -> None:
        super().__init__("Anomaly score")
        self.state = state
        self.explain = QLabel()
        self.explain.setObjectName("hint")
        self.explain.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
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
        self.reference_info = QLabel("no validation reference for this model")
        self.reference_info.setObjectName("hint")
        self.reference_info.setToolTip(
            "The distribution of the validation normals and abnormals ships only with the "
            "models it was computed with (dpglow evaluate --write-reference).")
        self.histograms: dict[str, pg.PlotCurveItem] = {}
        self.warning = QLabel()
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
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
        state.changed.connect(self._on_changed)
        self.refresh()

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if aspects & {Aspect.SCORES, Aspect.MODELS, Aspect.SOURCE, Aspect.DISPLAY,
                      Aspect.ERROR}:
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
                "more normal) is listed too.")
        scores = self._scores()
        self._fill_table(scores)
        self._draw(scores)
        warning = ood_warning(scores)
        self.warning.setText(warning)
        self.warning.setVisible(bool(warning))

    def _scores(self) -> list[tuple[PaneKey, Score]]:
        keys = list(MAIN_KEYS)
        if self.state.display.strip and self.state.strip is not None:
            keys += list(self.state.strip.panes)
        return [(k, self.state.scores[k]) for k in keys if k in self.state.scores]

    def _fill_table(self, scores: list[tuple[PaneKey, Score]]) -> None:
        self.table.setRowCount(len(scores))
        for r, (key, s) in enumerate(scores):
            self.table.setVerticalHeaderItem(r, QTableWidgetItem(key.label))
            cells = (f"{s.bpd_mixture:.3f}", f"{s.bpd_normal:.3f}",
                     f"{s.ratio_bits_per_pixel:+.4f}", "⚠ OOD" if s.out_of_distribution else "")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if c == len(cells) - 1 and s.out_of_distribution:
                    item.setToolTip(s.ood_description)
                self.table.setItem(r, c, item)
        fit_height(self.table, max_rows=6)

    def _colour(self, key: PaneKey) -> str:
        """The pane's legend colour; the original in the theme's text colour (white on dark,
        black on light)."""
        return PANE_COLOURS.get(key.mechanism) or self.palette().windowText().color().name()

    def _draw(self, scores: list[tuple[PaneKey, Score]]) -> None:
        self.plot.clear()
        self.histograms = {}
        reference = self.state.models.reference if self.state.models is not None else None
        gap = "&nbsp;&nbsp;&nbsp;"
        legend = [f'<span style="color:{self._colour(k)}">━</span> {k.label}'
                  for k in MAIN_KEYS]
        legend.append('<span style="color:#9e9e9e">│</span> strip')
        if reference is not None:
            self._draw_histograms(reference)
            legend.append("┆ OOD limit")
            legend += [f'<span style="color:{REFERENCE_COLOURS[g]}">▆</span> val. {g} '
                       f"({len(getattr(reference, g))})" for g in REFERENCE_COLOURS]
            self.legend.setToolTip(
                f"Histograms: the validation images' scores ({reference.description}), "
                "computed with exactly the loaded models; each normalised to its own count.")
        else:
            legend.append("┆ reference")
            self.legend.setToolTip("")
        self.legend.setText(gap.join(legend))
        self.reference_info.setVisible(reference is None)
        self._draw_lines(with_histograms=reference is not None)
        for key, s in scores:
            value = (s.bpd_mixture if DEFAULT_SCORE_KIND is ScoreKind.BPD_MIXTURE
                     else s.ratio_bits_per_pixel)
            # Main panes in their legend colours; the strip thin and grey (the table names it).
            pen = (pg.mkPen(self._colour(key), width=2) if key in PANE_COLOURS
                   else pg.mkPen("#9e9e9e", width=1))
            self.plot.addItem(pg.InfiniteLine(value, angle=90, pen=pen))

    def _draw_histograms(self, reference: ValidationScores) -> None:
        """The validation normals' and abnormals' scores as two semi-transparent step
        histograms on common bins, each normalised to its own count (the groups differ in
        size), behind the images' markers."""
        groups = {g: getattr(reference, g).values(DEFAULT_SCORE_KIND) for g in REFERENCE_COLOURS}
        edges = np.histogram_bin_edges(np.concatenate(list(groups.values())),
                                       bins=self.state.models.histogram_bins)
        for name, values in groups.items():
            share = np.histogram(values, edges)[0] / len(values)
            colour = QColor(REFERENCE_COLOURS[name])
            fill = QColor(colour)
            fill.setAlpha(80)
            item = pg.PlotCurveItem(edges, share, stepMode="center", fillLevel=0,
                                    pen=pg.mkPen(colour, width=1.5), brush=pg.mkBrush(fill))
            item.setZValue(-10)  # behind the markers
            self.plot.addItem(item)
            self.histograms[name] = item

    def _draw_lines(self, with_histograms: bool) -> None:
        """Where the model's own images lie. With the validation histograms: the
        out-of-distribution limit (calibration) only; without them also the training images'
        median and the validation images' mean."""
        models = self.state.models
        if models is None or DEFAULT_SCORE_KIND is not ScoreKind.BPD_MIXTURE:
            return  # these lines are bits/dim under M
        calibration = models.mixture_meta.get("calibration", {})
        # Label heights differ: the median and the validation mean usually lie close together.
        lines = [(calibration.get("bpd_p995"), "OOD limit", 0.85 if with_histograms else 0.12)]
        if not with_histograms:
            lines += [(calibration.get("bpd_p50"), "training median", 0.12),
                      (models.mixture_meta.get("validation", {}).get("bpd"), "validation mean",
                       0.5)]
        for value, text, height in lines:
            if value is not None:
                self.plot.addItem(pg.InfiniteLine(
                    value, angle=90, label=text,
                    pen=pg.mkPen((150, 150, 150), style=Qt.PenStyle.DashLine),
                    labelOpts={"position": height, "color": (170, 170, 170)}))
