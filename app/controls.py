"""The privacy-budget controls: e_px on a log slider with an infinity stop, and the
mechanism's parameters. A thin view: it writes to the state and mirrors it back."""

from __future__ import annotations

import math

from PySide6.QtCore import QPoint, QSignalBlocker, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QVBoxLayout,
    QWidget,
)

from app.state import E_PX_MAX, E_PX_MIN, Aspect, ViewState
from glow_engine.choices import DEFAULT_ALPHA, DPGLOW_MODES

STEPS_PER_DECADE = 100
SLIDER_MAX = round(STEPS_PER_DECADE * math.log10(E_PX_MAX / E_PX_MIN))  # e_px = 10^4
SLIDER_INF = SLIDER_MAX + 45  # the infinity end stop, set apart from the finite axis
TICKS = {0: "1", 100: "10", 200: "100", 300: "1000", 400: "10⁴", SLIDER_INF: "∞"}
MODE_LABELS = {"paper": "paper  (S = Δ, as published)", "tight": "tight  (S = w = α·Δ)"}
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def position_to_e_px(position: int) -> float:
    """Slider position -> e_px, rounded to 3 significant digits so the field reads well."""
    if position > SLIDER_MAX:
        return math.inf
    return float(f"{E_PX_MIN * 10 ** (position / STEPS_PER_DECADE):.3g}")


def e_px_to_position(e_px: float) -> int:
    if math.isinf(e_px):
        return SLIDER_INF
    return round(STEPS_PER_DECADE * math.log10(max(e_px, E_PX_MIN) / E_PX_MIN))


def parse_e_px(text: str) -> float | None:
    """"100", "1e3", "inf", "∞" -> a number; anything else -> None."""
    text = text.strip().lower()
    if text in ("inf", "infinity", "∞"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def format_e_px(e_px: float) -> str:
    return "∞" if math.isinf(e_px) else f"{e_px:g}"


def scientific(x: float) -> str:
    """1638400 -> "1.64 × 10⁶" (readable where the paper's budgets get large)."""
    if math.isinf(x):
        return "∞"
    if x == 0:
        return "0"
    exponent = math.floor(math.log10(abs(x)))
    if -2 <= exponent <= 3:
        return f"{x:.3g}"
    return f"{x / 10**exponent:.3g} × 10{str(exponent).translate(_SUPERSCRIPT)}"


class TickLabels(QWidget):
    """The e_px values under the slider's ticks, placed where the slider's style puts them."""

    def __init__(self, slider: QSlider) -> None:
        super().__init__()
        self.slider = slider
        self.setMinimumHeight(self.fontMetrics().height() + 2)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().placeholderText().color())
        metrics = self.fontMetrics()
        for value, text in TICKS.items():
            x = self._x_of(value) - metrics.horizontalAdvance(text) / 2
            x = min(max(x, 0), self.width() - metrics.horizontalAdvance(text))
            painter.drawText(int(x), metrics.ascent(), text)

    def _x_of(self, value: int) -> float:
        s = self.slider
        opt = QStyleOptionSlider()
        s.initStyleOption(opt)
        style = s.style()
        groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                      QStyle.SubControl.SC_SliderGroove, s)
        handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                      QStyle.SubControl.SC_SliderHandle, s)
        offset = QStyle.sliderPositionFromValue(s.minimum(), s.maximum(), value,
                                                groove.width() - handle.width())
        x = groove.x() + handle.width() / 2 + offset
        return self.mapFromGlobal(s.mapToGlobal(QPoint(int(x), 0))).x()


class EpsilonControl(QGroupBox):
    def __init__(self, state: ViewState) -> None:
        super().__init__("Privacy budget")
        self.state = state
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_INF)
        self.slider.setPageStep(STEPS_PER_DECADE // 4)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(STEPS_PER_DECADE)
        self.slider.setToolTip("Per-pixel budget e_px on a log scale; the right end stop is ∞")
        self.field = QLineEdit()
        self.field.setFixedWidth(70)
        self.field.setToolTip("Type a per-pixel budget (1 – 10000) or inf")
        self.total = QLabel()
        self.noise = QLabel()
        self.noise.setWordWrap(True)
        self.mode = QComboBox()
        for mode in DPGLOW_MODES:
            self.mode.addItem(MODE_LABELS[mode], mode)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.05, 1.0)
        self.alpha.setSingleStep(0.05)
        self.alpha.setDecimals(2)
        self.alpha.setToolTip(f"Clip width w = α·Δ of the latent box (paper: {DEFAULT_ALPHA:g})")
        self.clip = QCheckBox("Without clip (plain reconstruction — no privacy)")
        self.clip.setToolTip("Only at ε = ∞: the paper's 'inf without clip' reference")
        self.redraw = QPushButton("New noise draw")
        self.redraw.setToolTip("Draw another preview noise pattern (Space)")
        note = QLabel("Preview noise is a fast, fixed draw for the slider. "
                      "Export draws fresh secure noise.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        self._layout(note)
        self._connect()
        state.changed.connect(self._on_changed)
        self._show()

    def _layout(self, note: QLabel) -> None:
        row = QGridLayout()
        row.addWidget(QLabel("ε per pixel"), 0, 0)
        row.addWidget(self.slider, 0, 1)
        row.addWidget(self.field, 0, 2)
        row.addWidget(TickLabels(self.slider), 1, 1)
        row.setColumnStretch(1, 1)
        form = QFormLayout()
        form.addRow("Sensitivity", self.mode)
        form.addRow("α (clip width)", self.alpha)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.total)
        layout.addWidget(self.noise)
        layout.addLayout(form)
        layout.addWidget(self.clip)
        layout.addWidget(self.redraw)
        layout.addWidget(note)

    def _connect(self) -> None:
        self.slider.valueChanged.connect(lambda p: self.state.set_e_px(position_to_e_px(p)))
        self.field.editingFinished.connect(self._on_field)
        self.mode.currentIndexChanged.connect(
            lambda _: self.state.set_mode(self.mode.currentData()))
        self.alpha.valueChanged.connect(self.state.set_alpha)
        self.clip.toggled.connect(lambda on: self.state.set_clip(not on))
        self.redraw.clicked.connect(self.state.new_noise)

    def step(self, decades: float) -> None:
        """Keyboard: move e_px by a fraction of a decade (from ∞, step back onto the axis)."""
        position = min(self.slider.value(), SLIDER_MAX + (1 if decades > 0 else 0))
        self.slider.setValue(position + round(decades * STEPS_PER_DECADE))

    def _on_field(self) -> None:
        value = parse_e_px(self.field.text())
        if value is None:
            self.field.setText(format_e_px(self.state.params.e_px))  # reject, show current
            return
        self.state.set_e_px(value)

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if aspects & {Aspect.PARAMS, Aspect.MODELS, Aspect.RENDERED}:
            self._show()

    def _show(self) -> None:
        p = self.state.params
        with QSignalBlocker(self.slider), QSignalBlocker(self.mode), \
                QSignalBlocker(self.alpha), QSignalBlocker(self.clip):
            self.slider.setValue(e_px_to_position(p.e_px))
            self.mode.setCurrentIndex(DPGLOW_MODES.index(p.mode))
            self.alpha.setValue(p.alpha)
            self.clip.setChecked(not p.clip)
        self.clip.setEnabled(math.isinf(p.e_px))
        if not self.field.hasFocus():
            self.field.setText(format_e_px(p.e_px))
        self.total.setText(self._total_text())
        self.noise.setText(self._noise_text())

    def _total_text(self) -> str:
        r = self.state.resolution
        if r is None:
            return "Total ε: (no model)"
        total = self.state.total_epsilon
        return f"Total ε = e_px × {r} × {r} = <b>{scientific(total)}</b>"

    def _noise_text(self) -> str:
        rendered = self.state.rendered
        if rendered is None or not rendered.noise_scale:
            return ""
        if math.isinf(self.state.params.e_px):
            return "No noise at ε = ∞" + (" (latent still clipped)" if self.state.params.clip
                                          else "")
        b = rendered.noise_scale
        return (f"Laplace scale b: DP-GLOW {scientific(b['dpglow'])} (mean, latent units) · "
                f"ID-LDP {scientific(b['idldp'])} (pixel units)")
