"""The decoding controls: greedy, temperature, top-k, top-p, min-p, repetition penalty, seed and the stage order.

The widget is a view of one :class:`engine.decoding.DecodeSettings` plus a seed: ``settings()`` reads it,
``set_settings()`` writes it without emitting, and any change by the user emits ``sig_changed`` once.
"""

import math
import random

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QDoubleSpinBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget,
    QListWidgetItem, QSlider, QSpinBox, QToolButton,
)

from app.generation.distribution import STAGE_TITLES
from app.settings import read
from app.theme import hint_color
from engine.decoding import STAGES, DecodeSettings

TEMP_MIN, TEMP_MAX = 0.01, 100.0
SLIDER_STEPS_PER_DECADE = 100  # the temperature slider moves on a log scale: 0.01 .. 100 is 400 steps


class OffSpinBox(QDoubleSpinBox):
    """A double spin box that shows "off" at the value where its stage does nothing (top-p 1, penalty 1)."""

    def __init__(self, off_value: float, parent=None):
        super().__init__(parent)
        self.off_value = off_value

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return "off" if abs(value - self.off_value) < 1e-9 else super().textFromValue(value)

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        return self.off_value if text.strip().lower() == "off" else super().valueFromText(text)

    def validate(self, text, pos):
        if "off".startswith(text.strip().lower()) and text.strip():
            from PySide6.QtGui import QValidator

            return QValidator.State.Acceptable if text.strip().lower() == "off" else QValidator.State.Intermediate, \
                text, pos
        return super().validate(text, pos)


def _temperature_to_slider(t: float) -> int:
    return round(math.log10(min(max(t, TEMP_MIN), TEMP_MAX)) * SLIDER_STEPS_PER_DECADE)


class DecodingControls(QGroupBox):
    sig_changed = Signal()
    """Any decoding setting (not the seed) changed: redraw the distribution."""

    def __init__(self, parent=None):
        super().__init__("Decoding controls", parent)
        self._quiet = False

        self.greedy = QCheckBox("Greedy")
        self.greedy.setToolTip("Always take the most likely token (temperature 0): the draw no longer matters.")
        self.temp_slider = QSlider(Qt.Orientation.Horizontal)
        self.temp_slider.setRange(_temperature_to_slider(TEMP_MIN), _temperature_to_slider(TEMP_MAX))
        self.temp_slider.setToolTip("Temperature on a log scale, 0.01 to 100. Logits are divided by it: below 1 the "
                                    "likely tokens get likelier, above 1 the distribution flattens toward uniform.")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(TEMP_MIN, TEMP_MAX)
        self.temperature.setDecimals(2)
        self.temperature.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.temperature.setToolTip(self.temp_slider.toolTip())

        self.top_k = QSpinBox()
        self.top_k.setRange(0, 999_999)  # above any vocabulary; 6 digits keep the box narrow
        self.top_k.setSpecialValueText("off")
        self.top_k.setToolTip("Keep only the k most likely tokens (0 = off).")
        self.top_p = OffSpinBox(1.0)
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setDecimals(3)
        self.top_p.setSingleStep(0.01)
        self.top_p.setToolTip("Nucleus: keep the smallest set of most likely tokens whose probabilities add up to "
                              "at least p (1 = off).")
        self.min_p = QDoubleSpinBox()
        self.min_p.setRange(0.0, 1.0)
        self.min_p.setDecimals(3)
        self.min_p.setSingleStep(0.01)
        self.min_p.setSpecialValueText("off")
        self.min_p.setToolTip("Drop tokens less likely than min-p times the most likely one (0 = off).")
        self.penalty = OffSpinBox(1.0)
        self.penalty.setRange(0.1, 5.0)
        self.penalty.setDecimals(2)
        self.penalty.setSingleStep(0.05)
        self.penalty.setToolTip("Repetition penalty: tokens already in the text have positive logits divided by it "
                                "and negative ones multiplied (1 = off).")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Seed of the draws: the same prompt, seed and settings give the same text.")
        self.dice = QToolButton()
        self.dice.setText("⚄")  # a die face from DejaVu Sans: the 🎲 emoji is a blank box without an emoji font
        self.dice.setToolTip("A new random seed")

        self.order = QListWidget()
        self.order.setFlow(QListWidget.Flow.LeftToRight)
        self.order.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.order.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.order.setFixedHeight(self.order.fontMetrics().height() + 14)
        self.order.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.order.setSpacing(2)
        self.order.setToolTip("The order the stages run in: drag to reorder (or select one and use the arrows). "
                              "Grey stages are off at their current values.")
        self.left = QToolButton()
        self.left.setArrowType(Qt.ArrowType.LeftArrow)
        self.left.setToolTip("Run the selected stage earlier")
        self.right = QToolButton()
        self.right.setArrowType(Qt.ArrowType.RightArrow)
        self.right.setToolTip("Run the selected stage later")

        self.hint = QLabel("Both temperature and top-p are changed: providers advise adjusting one or the other, "
                           "not both.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet(f"color: {hint_color(self)}; font-style: italic;")
        policy = self.hint.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # its room is kept: the controls do not jump when it appears
        self.hint.setSizePolicy(policy)
        self.hint.setVisible(False)
        self.reset_button = QToolButton()
        self.reset_button.setText("Reset controls")
        self.reset_button.setToolTip("Back to plain sampling: temperature 1, top-k, top-p, min-p and the repetition "
                                     "penalty off, the default stage order (the seed stays)")

        grid = QGridLayout(self)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        temp_row = QHBoxLayout()
        temp_row.addWidget(QLabel("Temperature"))
        temp_row.addWidget(self.temp_slider, 1)
        temp_row.addWidget(self.temperature)
        # four columns (label, field, label, field): narrow enough for a 900-pixel window beside the text
        right = Qt.AlignmentFlag.AlignRight
        grid.addWidget(self.greedy, 0, 0)
        grid.addLayout(temp_row, 0, 1, 1, 3)
        for row, col, text, widget in ((1, 0, "Top-k", self.top_k), (1, 2, "Top-p", self.top_p),
                                       (2, 0, "Min-p", self.min_p), (2, 2, "Rep. penalty", self.penalty)):
            grid.addWidget(QLabel(text), row, col, right)
            grid.addWidget(widget, row, col + 1)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        grid.addWidget(QLabel("Seed"), 3, 0, right)
        grid.addLayout(seed_row, 3, 1)
        grid.addWidget(self.reset_button, 3, 2, 1, 2, right)
        order_row = QHBoxLayout()
        order_row.addWidget(self.order, 1)
        order_row.addWidget(self.left)
        order_row.addWidget(self.right)
        grid.addWidget(QLabel("Order"), 4, 0, right)
        grid.addLayout(order_row, 4, 1, 1, 3)
        grid.addWidget(self.hint, 5, 0, 1, 4)
        for col in (1, 3):
            grid.setColumnStretch(col, 1)

        self.set_settings(DecodeSettings(), seed=1234)

        self.greedy.toggled.connect(self._on_changed)
        self.temp_slider.valueChanged.connect(self._on_slider)
        self.temperature.valueChanged.connect(self._on_temperature)
        for spin in (self.top_k, self.top_p, self.min_p, self.penalty):
            spin.valueChanged.connect(self._on_changed)
        self.dice.clicked.connect(lambda: self.seed.setValue(random.randrange(2**31)))
        self._order_timer = QTimer(self)
        self._order_timer.setSingleShot(True)
        self._order_timer.setInterval(0)
        self._order_timer.timeout.connect(self._on_changed)
        self.order.model().rowsMoved.connect(self._order_timer.start)
        self.order.model().rowsInserted.connect(self._order_timer.start)
        self.reset_button.clicked.connect(self.reset)
        self.left.clicked.connect(lambda: self._move_selected(-1))
        self.right.clicked.connect(lambda: self._move_selected(+1))

    # ---- model <-> view ----------------------------------------------------------------------------------------
    def settings(self) -> DecodeSettings:
        return DecodeSettings(temperature=0.0 if self.greedy.isChecked() else self.temperature.value(),
                              top_k=self.top_k.value(), top_p=self.top_p.value(), min_p=self.min_p.value(),
                              repetition_penalty=self.penalty.value(), order=self.stage_order())

    def stage_order(self) -> tuple[str, ...]:
        return tuple(self.order.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.order.count()))

    def set_settings(self, settings: DecodeSettings, seed: int | None = None):
        """Show ``settings`` (temperature 0 = greedy) without emitting sig_changed."""
        self._quiet = True
        try:
            self.greedy.setChecked(settings.temperature == 0)
            if settings.temperature > 0:
                self.temperature.setValue(settings.temperature)
                self.temp_slider.setValue(_temperature_to_slider(settings.temperature))
            self.top_k.setValue(settings.top_k)
            self.top_p.setValue(settings.top_p)
            self.min_p.setValue(settings.min_p)
            self.penalty.setValue(settings.repetition_penalty)
            if seed is not None:
                self.seed.setValue(seed)
            self.set_order(settings.order, emit=False)
        finally:
            self._quiet = False
        self._refresh()

    def reset(self):
        """Every control back to its default (the seed stays); emits sig_changed once if anything changed."""
        before = self.settings()
        self.set_settings(DecodeSettings())
        if self.settings() != before:
            self.sig_changed.emit()

    def set_order(self, order, emit: bool = True):
        self.order.blockSignals(True)
        self.order.model().blockSignals(True)
        self.order.clear()
        for name in order:
            item = QListWidgetItem(STAGE_TITLES[name])
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.order.addItem(item)
        self.order.model().blockSignals(False)
        self.order.blockSignals(False)
        self.order.reset()
        self._refresh()
        if emit:
            self._on_changed()

    def _move_selected(self, delta: int):
        row = self.order.currentRow()
        order = list(self.stage_order())
        if row < 0 or not 0 <= row + delta < len(order):
            return
        order[row], order[row + delta] = order[row + delta], order[row]
        self.set_order(order)
        self.order.setCurrentRow(row + delta)

    # ---- reactions ---------------------------------------------------------------------------------------------
    def _on_slider(self, value: int):
        if self._quiet:
            return
        self.temperature.setValue(10 ** (value / SLIDER_STEPS_PER_DECADE))  # emits via _on_temperature

    def _on_temperature(self, value: float):
        self.temp_slider.blockSignals(True)
        self.temp_slider.setValue(_temperature_to_slider(value))
        self.temp_slider.blockSignals(False)
        self._on_changed()

    def _on_changed(self, *_):
        if self._quiet:
            return
        self._refresh()
        self.sig_changed.emit()

    def _refresh(self):
        greedy = self.greedy.isChecked()
        self.temp_slider.setEnabled(not greedy)
        self.temperature.setEnabled(not greedy)
        active = {
            "temperature": not greedy and self.temperature.value() != 1.0,
            "top_k": self.top_k.value() > 0,
            "top_p": self.top_p.value() < 1.0,
            "min_p": self.min_p.value() > 0,
            "repetition_penalty": self.penalty.value() != 1.0,
        }
        for i in range(self.order.count()):
            item = self.order.item(i)
            on = active.get(item.data(Qt.ItemDataRole.UserRole), False)
            item.setForeground(self.palette().text().color() if on else QColor(150, 150, 150))
        self.hint.setVisible(active["temperature"] and active["top_p"])

    # ---- persistence -------------------------------------------------------------------------------------------
    def save_settings(self, s):
        st = self.settings()
        s.setValue("greedy", self.greedy.isChecked())
        s.setValue("temperature", self.temperature.value())
        s.setValue("top_k", st.top_k)
        s.setValue("top_p", st.top_p)
        s.setValue("min_p", st.min_p)
        s.setValue("repetition_penalty", st.repetition_penalty)
        s.setValue("order", ",".join(st.order))
        s.setValue("seed", self.seed.value())

    def restore_settings(self, s):
        default = DecodeSettings()
        order = tuple(x for x in str(read(s, "order", ",".join(STAGES))).split(",") if x)
        try:
            settings = DecodeSettings(
                temperature=min(max(read(s, "temperature", default.temperature), TEMP_MIN), TEMP_MAX),
                top_k=max(read(s, "top_k", default.top_k), 0),
                top_p=min(max(read(s, "top_p", default.top_p), 0.01), 1.0),
                min_p=min(max(read(s, "min_p", default.min_p), 0.0), 1.0),
                repetition_penalty=min(max(read(s, "repetition_penalty", default.repetition_penalty), 0.1), 5.0),
                order=order if sorted(order) == sorted(STAGES) else STAGES)
        except ValueError:  # a hand-edited settings file: fall back to the defaults
            settings = default
        self.set_settings(settings, seed=read(s, "seed", 1234))
        self._quiet = True
        self.greedy.setChecked(read(s, "greedy", False))
        self._quiet = False
        self._refresh()
