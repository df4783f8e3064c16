"""The privacy-budget controls: e_px on a log slider with an infinity stop, a typed field that
applies exactly what it shows (or says why not), presets, and the mechanism's parameters.
A thin view: it writes to the state and mirrors it back."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPoint, QSignalBlocker, Qt
from PySide6.QtGui import QKeyEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.budget_scale import (
    SLIDER_INF,
    SLIDER_MAX,
    STEPS_PER_DECADE,
    TICKS,
    block_sides,
    budget_presets,
    e_px_to_position,
    position_to_e_px,
)
from app.core.dpglow_words import (
    ALPHA_TIP,
    ALPHA_UNUSED,
    ESTIMATE_LABELS,
    ESTIMATE_TIP,
    MODE_LABELS,
    MODE_TIP,
    NO_FITTED_BOX,
    rule_text,
)
from app.core.pane_keys import MECHANISMS
from app.core.state import Aspect, ViewState
from app.qt.widgets import FixedText
from glow_engine.budget import (
    E_PX_MAX,
    E_PX_MIN,
    format_e_px,
    parse_e_px,
    refusal,
)
from glow_engine.choices import DPGLOW_ESTIMATES, DPGLOW_MODES
from glow_engine.fitted_box import FittedBoxes
from glow_engine.mechanism_specs import spec_of
from glow_engine.privacy_statement import Statement, measured, scientific, statement

BLOCK_TIP = ("DP-Pix: the side b (pixels) of the blocks whose means get the noise. The same "
             "ε spread over fewer, larger blocks: less noise on each, a coarser picture "
             "(Fan 2018; PriCheXy-Net used b = 8).")





def noise_rule_box(mode: str, fitted: FittedBoxes | None) -> QComboBox:
    """DP-GLOW's noise rule (PrivacyParams.mode), `mode` chosen; the fitted box is offered
    where the model has one (offer_fitted)."""
    box = QComboBox()
    for key in DPGLOW_MODES:
        box.addItem(MODE_LABELS[key], key)
    box.setToolTip(MODE_TIP)
    # the long titles are read in full in the list: the closed box keeps the panel's width
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(len(MODE_LABELS["paper"]))
    offer_fitted(box, fitted)
    box.setCurrentIndex(DPGLOW_MODES.index(mode))
    return box


def offer_fitted(box: QComboBox, fitted: FittedBoxes | None) -> None:
    """The fitted entry enabled exactly when the model has fitted boxes; otherwise its
    tooltip names what is missing."""
    item = box.model().item(DPGLOW_MODES.index("fitted"))
    item.setEnabled(fitted is not None)
    item.setToolTip(MODE_TIP if fitted is not None else NO_FITTED_BOX)


def show_alpha(alpha: QDoubleSpinBox, label: QLabel | None, mode: str) -> None:
    """α is disabled, not hidden (nothing moves), where the noise rule does not use it."""
    used = mode != "fitted"
    for widget in (alpha, label):
        if widget is not None:
            widget.setEnabled(used)
            widget.setToolTip(ALPHA_TIP if used else ALPHA_UNUSED)


def decoding_box(estimate: str) -> QComboBox:
    """DP-GLOW's decoding choice (PrivacyParams.estimate), `estimate` chosen."""
    box = QComboBox()
    for key in DPGLOW_ESTIMATES:
        box.addItem(ESTIMATE_LABELS[key], key)
    box.setToolTip(ESTIMATE_TIP)
    box.setCurrentIndex(DPGLOW_ESTIMATES.index(estimate))
    return box


class TickLabels(QWidget):
    """The e_px values under the slider's ticks, placed where the slider's style puts them."""

    def __init__(self, slider: QSlider) -> None:
        super().__init__()
        self.slider = slider
        self.setMinimumHeight(self.fontMetrics().height() + 2)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().windowText().color())
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


# Keys a budget never contains: while the field has focus they stay the window's shortcuts
# (a line edit claims Ctrl+E, Ctrl+K... for editing on Linux, so Ctrl+E died there).
_PASSED_KEYS = {Qt.Key.Key_PageUp, Qt.Key.Key_PageDown, Qt.Key.Key_Escape}
_PASSED_TEXT = "[]{} ="
_EDITING_WITH_CTRL = {Qt.Key.Key_A, Qt.Key.Key_C, Qt.Key.Key_V, Qt.Key.Key_X, Qt.Key.Key_Z,
                      Qt.Key.Key_Y}


def is_window_shortcut(event: QKeyEvent) -> bool:
    modifiers = event.modifiers() & (Qt.KeyboardModifier.ControlModifier
                                     | Qt.KeyboardModifier.AltModifier
                                     | Qt.KeyboardModifier.MetaModifier)
    if modifiers:
        return not (modifiers == Qt.KeyboardModifier.ControlModifier
                    and Qt.Key(event.key()) in _EDITING_WITH_CTRL)
    return Qt.Key(event.key()) in _PASSED_KEYS or (bool(event.text())
                                                  and event.text() in _PASSED_TEXT)


class BudgetField(QLineEdit):
    """The typed e_px; leaves the window's shortcuts alone (is_window_shortcut)."""

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and is_window_shortcut(event):
            event.ignore()  # not overridden: the shortcut fires
            return True
        return super().event(event)


class EpsilonControl(QGroupBox):
    def __init__(self, state: ViewState) -> None:
        super().__init__("Privacy budget")
        self.state = state
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_INF)
        self.slider.setPageStep(STEPS_PER_DECADE // 4)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(2 * STEPS_PER_DECADE)
        self.slider.setToolTip("Per-pixel budget e_px on a log scale; the right end stop is ∞")
        self.field = BudgetField()
        self.field.setMinimumWidth(self.field.fontMetrics().horizontalAdvance("6.103515625e-05")
                                   + 16)
        self.field.setToolTip(f"Type a per-pixel budget ({format_e_px(E_PX_MIN)} – "
                              f"{format_e_px(E_PX_MAX)}) or inf; Enter applies it")
        self.presets = QToolButton()
        self.presets.setText("Presets")
        self.presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.presets.setMenu(QMenu(self.presets))
        self.presets.menu().aboutToShow.connect(self._fill_presets)
        self.refused = QLabel()
        self.refused.setObjectName("warning")
        self.refused.setWordWrap(True)
        self.refused.hide()
        # What this budget means, from glow_engine.privacy_statement (the words the export
        # dialog, the Help and the release report use too); the arithmetic is its tooltip.
        self.headline = QLabel()
        self.headline.setObjectName("statement")
        # A fixed height that scrolls: a longer statement never pushes the controls down.
        self.total = FixedText(5)
        self.mode = noise_rule_box(state.params.mode, state.fitted_box)
        # What the noise rule clips and adds at this budget (for the fitted box: which one).
        self.rule = FixedText(2)
        self.decoding = decoding_box(state.params.estimate)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.05, 1.0)
        self.alpha.setSingleStep(0.05)
        self.alpha.setDecimals(2)
        self.alpha_label = QLabel("α")
        self.block = QComboBox()
        self.block.setToolTip(BLOCK_TIP)
        self.clip = QCheckBox("Without clip (no privacy)")
        self.clip.setToolTip("Only at ε = ∞: the plain reconstruction, the paper's 'inf "
                             "without clip' reference")
        self.redraw = QPushButton("New noise draw")
        self.redraw.setToolTip("Draw another preview noise pattern (Space). The preview's "
                               "noise is a fast draw for the slider; an export draws fresh "
                               "secure noise.")
        self._layout()
        self._connect()
        state.changed.connect(self._on_changed)
        self._show()

    def _layout(self) -> None:
        # The slider gets the panel's whole width: ten decades and their labels need it.
        row = QGridLayout()
        row.addWidget(QLabel("ε per pixel"), 0, 0)
        row.addWidget(self.field, 0, 1)
        row.addWidget(self.presets, 0, 2)
        row.setColumnStretch(3, 1)
        row.addWidget(self.slider, 1, 0, 1, 4)
        row.addWidget(TickLabels(self.slider), 2, 0, 1, 4)
        # DP-GLOW's noise and its decoding, closer together than the rows around them: the
        # panel fits a 768-pixel screen with both.
        noise = QGridLayout()
        noise.setVerticalSpacing(2)
        noise.addWidget(QLabel("Noise"), 0, 0)
        noise.addWidget(self.mode, 0, 1)
        noise.addWidget(self.alpha_label, 0, 2)
        noise.addWidget(self.alpha, 0, 3)
        noise.addWidget(self.rule, 1, 1, 1, 3)
        noise.addWidget(QLabel("Decoding"), 2, 0)
        noise.addWidget(self.decoding, 2, 1, 1, 3)
        noise.setColumnStretch(1, 1)
        reference = QHBoxLayout()
        reference.addWidget(self.redraw)
        reference.addWidget(self.clip, 1)
        reference.addWidget(QLabel("DP-Pix"))
        reference.addWidget(self.block)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.refused)
        layout.addWidget(self.headline)
        layout.addWidget(self.total)
        layout.addLayout(noise)
        layout.addLayout(reference)

    def _connect(self) -> None:
        self.slider.valueChanged.connect(lambda p: self.apply(position_to_e_px(p)))
        self.field.editingFinished.connect(self._on_field)
        self.mode.currentIndexChanged.connect(
            lambda _: self.state.set_mode(self.mode.currentData()))
        self.decoding.currentIndexChanged.connect(
            lambda _: self.state.set_estimate(self.decoding.currentData()))
        self.alpha.valueChanged.connect(self.state.set_alpha)
        self.block.currentIndexChanged.connect(
            lambda _: self.state.set_block(self.block.currentData()))
        self.clip.toggled.connect(lambda on: self.state.set_clip(not on))
        self.redraw.clicked.connect(self.state.new_noise)

    def apply(self, e_px: float) -> None:
        self.refused.hide()
        self.state.set_e_px(e_px)
        self.field.setText(format_e_px(self.state.params.e_px))  # "100.0" typed reads "100"

    def step(self, decades: float) -> None:
        """Keyboard: move e_px by a fraction of a decade (from ∞, step back onto the axis)."""
        position = min(self.slider.value(), SLIDER_MAX + (1 if decades > 0 else 0))
        self.slider.setValue(position + round(decades * STEPS_PER_DECADE))

    def _on_field(self) -> None:
        text = self.field.text()
        if text == format_e_px(self.state.params.e_px):
            return  # nothing typed (focus left, or Enter then focus out)
        reason = refusal(text)
        if reason is not None:
            self.refused.setText(f"{reason} Still applied: {format_e_px(self.state.params.e_px)}.")
            self.refused.show()
            self.field.setText(format_e_px(self.state.params.e_px))
            return
        self.apply(parse_e_px(text))

    def _fill_presets(self) -> None:
        menu = self.presets.menu()
        menu.clear()
        for text, e_px in budget_presets(self.state.resolution):
            menu.addAction(text, lambda e_px=e_px: self.apply(e_px))

    def _on_changed(self, aspects: frozenset[Aspect]) -> None:
        if aspects & {Aspect.PARAMS, Aspect.MODELS}:
            self._show()
        if Aspect.RENDERED in aspects:
            self.total.setToolTip(self._noise_text())

    def _show(self) -> None:
        p = self.state.params
        with QSignalBlocker(self.slider), QSignalBlocker(self.mode), \
                QSignalBlocker(self.decoding), QSignalBlocker(self.alpha), \
                QSignalBlocker(self.clip), QSignalBlocker(self.block):
            self.slider.setValue(e_px_to_position(p.e_px))
            offer_fitted(self.mode, self.state.fitted_box)
            self.mode.setCurrentIndex(DPGLOW_MODES.index(p.mode))
            self.decoding.setCurrentIndex(DPGLOW_ESTIMATES.index(p.estimate))
            self.alpha.setValue(p.alpha)
            self.clip.setChecked(not p.clip)
            show_blocks(self.block, self.state.resolution, p.block)
        self.clip.setEnabled(math.isinf(p.e_px))
        show_alpha(self.alpha, self.alpha_label, p.mode)
        self.rule.setText(rule_text(p.mode, p.alpha, p.e_px, self.state.fitted_box))
        self.rule.setToolTip(self.rule.text())  # whole, where it scrolls
        self.field.setText(format_e_px(p.e_px))
        said = self.statement()
        self.headline.setText(said.headline if said else "")
        self.headline.setProperty("level", said.level.name if said else "")
        self.headline.style().polish(self.headline)  # the level's colour (app.qt.theme)
        self.total.setText(" ".join(part for part in (said.formal, said.measured) if part)
                           if said else "Total ε: (no model)")
        others = [measured(name, p.mode_of(name), p.e_px, self.state.models.risk_card)
                  for name in MECHANISMS if name != "dpglow"] if said and said.measured else []
        self.total.setToolTip("\n".join([self._total_text(), self._noise_text(), *others]))

    def statement(self) -> Statement | None:
        """What the budget on screen means for the DP-GLOW pane (None without a model)."""
        models, p = self.state.models, self.state.params
        if models is None:
            return None
        return statement("dpglow", p.mode_of("dpglow"), p.e_px, models.resolution,
                         models.risk_card)

    def _total_text(self) -> str:
        r = self.state.resolution
        if r is None:
            return ""
        total = self.state.total_epsilon
        return f"Total ε = e_px × {r} × {r} = {scientific(total)}"

    def _noise_text(self) -> str:
        rendered = self.state.rendered
        if rendered is None or not rendered.noise_scale:
            return ""
        if math.isinf(self.state.params.e_px):
            return "No noise at ε = ∞" + (" (latent still clipped)" if self.state.params.clip
                                          else "")
        b = rendered.noise_scale
        return "Laplace scale b: " + " · ".join(
            f"{spec_of(n).title} {scientific(b[n])} ({spec_of(n).noise_units})"
            for n in MECHANISMS)



def show_blocks(box: QComboBox, resolution: int | None, block: int) -> None:
    """DP-Pix's block sides that divide the model's resolution, `block` chosen."""
    sides = block_sides(resolution)
    if [box.itemData(i) for i in range(box.count())] != sides:
        box.clear()
        for side in sides:
            box.addItem(f"{side}×{side}", side)
    box.setCurrentIndex(box.findData(block))
