"""The Generation pane's widgets, built and laid out (no behaviour: pane.py wires them to the state)."""

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QSizePolicy,
    QSlider, QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget,
)

from app.generation.chart import ProbabilityChart, raw_pen
from app.generation.controls import DecodingControls
from app.generation.picker import ModelPicker
from app.generation.text_view import GeneratedText, Legend
from app.generation.vocab_search import VocabularySearch
from app.theme import banner_colors, hint_color, warning_color

SPEEDS = (1, 2, 3, 5, 8, 12, 20, 30, 50)  # tokens per second offered by the Run speed slider
PRECISION_TITLES = {"auto": "auto", "float32": "fp32", "bfloat16": "bf16"}
# The chart's legend: one entry per (colour, mark, words); an entry is never broken across lines
BARS_LEGEND = ((None, "▭", "raw"), ("#3465a4", "■", "after controls"), ("#969696", "▨", "cut"),
               ("#c82828", "- -", "top-p"))  # None: the chart's raw outline colour, which follows the palette
LEGEND_SEPARATOR = "&nbsp;&nbsp; "  # a wrapped line starts at an entry, not at the space before it


class ElidedLabel(QLabel):
    """A one-line label that ends in … when it is narrower than its text, the full text in its tooltip.

    ``text()`` stays the full text; only the painting is shortened. ``detail`` (a file path, say) is added to the
    tooltip under the text.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # takes the room there is
        self._detail = ""

    def setText(self, text: str):  # noqa: N802 - Qt override
        super().setText(text)
        self._update_tooltip()

    def set_detail(self, detail: str):
        self._detail = detail
        self._update_tooltip()

    def _update_tooltip(self):
        self.setToolTip("\n".join(part for part in (self.text(), self._detail) if part))

    def elided_text(self) -> str:
        """The text as painted: all of it, or as much as fits followed by …"""
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())

    def is_elided(self) -> bool:
        return self.elided_text() != self.text()

    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
                                  self.palette(), self.isEnabled(), self.elided_text(), self.foregroundRole())


class Banner(QLabel):
    """The pane's error banner: a red-tinted box whose colours come from the palette, set afresh with each message
    (a fixed light pink glared in a dark window)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setVisible(False)
        self._restyle()

    def setText(self, text: str):  # noqa: N802 - Qt override
        self._restyle()
        super().setText(text)

    def changeEvent(self, event):  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            self._restyle()

    def colors(self):
        """(background, text) for the current palette: the parent's, since the style sheet changes our own."""
        return banner_colors(self.parentWidget())

    def _restyle(self):
        background, text = self.colors()
        style = (f"background: {background.name()}; color: {text.name()}; padding: 4px 8px; border-radius: 3px; "
                 f"border: 1px solid rgba({text.red()}, {text.green()}, {text.blue()}, 70);")
        if style != self.styleSheet():
            self.setStyleSheet(style)


def bars_legend_html(widget=None) -> str:
    """The legend as rich text whose entries hold together: the line breaks only between entries (a narrow pane
    used to leave "- -" on one line and "top-p" on the next). Inside an entry the spaces are no-break spaces and the
    hyphens non-breaking hyphens."""
    def held(text: str) -> str:
        return text.replace(" ", "&nbsp;").replace("-", "&#8209;")

    return LEGEND_SEPARATOR.join(f"<span style='color:{color or raw_pen(widget).name()}'>{held(mark)}</span>&nbsp;"
                                 f"{held(words)}" for color, mark, words in BARS_LEGEND)


def build(pane: QWidget) -> None:
    """Create the pane's widgets as attributes of ``pane`` and lay them out."""
    p = pane
    p.source_box = ModelPicker()
    p.precision = QComboBox()
    for key, title in PRECISION_TITLES.items():
        p.precision.addItem(title, key)
    p.precision.setToolTip("Precision of a Hugging Face model's weights: fp32, bf16 (half the memory, a little "
                           "less exact), or auto (bf16 above 300 M parameters). Applies at the next load.")
    p.reload_button = QToolButton()
    p.reload_button.setText("↻")
    p.reload_button.setToolTip("Load the model again (for the latest training checkpoint: the newest one)")
    p.progress = QProgressBar()
    p.progress.setRange(0, 0)
    p.progress.setMaximumWidth(100)
    p.progress.setVisible(False)
    p.cancel_button = QPushButton("Cancel")
    p.cancel_button.setToolTip("Stop loading: the previous model stays")
    p.cancel_button.setVisible(False)
    p.model_info = ElidedLabel()
    p.banner = Banner(p)

    p.prompt = QPlainTextEdit()
    p.prompt.setPlaceholderText("Type a prompt…")
    p.prompt.setMaximumHeight(72)
    p.prompt.setToolTip("The text the model continues. Editing it starts the generation again.")
    p.chat = QCheckBox("Chat")
    p.chat.setToolTip("This model has a chat template: send the prompt as a user message, rendered by the "
                      "template with its special tokens (shown in the text below)")
    p.chat.setVisible(False)
    p.undo_button = QPushButton("◀ Undo")
    p.undo_button.setToolTip("Take back the last token, restoring the exact previous state (Ctrl+Left, Ctrl+Z)")
    p.step_button = QPushButton("Step ▶")
    p.step_button.setToolTip("Draw one token from the distribution on the right (Ctrl+Right)")
    p.run_button = QPushButton("Run ▶▶")
    p.run_button.setCheckable(True)
    p.run_button.setToolTip("Step automatically at the chosen speed; press again to pause (Ctrl+Return)")
    p.speed = QSlider(Qt.Orientation.Horizontal)
    p.speed.setRange(0, len(SPEEDS) - 1)
    p.speed.setValue(SPEEDS.index(8))
    p.speed.setMaximumWidth(90)
    p.speed.setMinimumWidth(40)
    p.speed.setToolTip("Run speed in tokens per second")
    p.speed_label = QLabel()
    p.reset_button = QPushButton("Reset")
    p.reset_button.setToolTip("Remove every generated token: back to the prompt")
    p.max_new = QSpinBox()
    p.max_new.setRange(0, 100_000)
    p.max_new.setSpecialValueText("no limit")
    p.max_new.setToolTip("Run stops after this many new tokens (0: no limit)")
    p.stop_sequences = QLineEdit()
    p.stop_sequences.setPlaceholderText(r"e.g. \n\n | END")
    p.stop_sequences.setToolTip("Run stops once the text it generated contains one of these, separated by | "
                                r"(write \n for a newline, \t for a tab, \| for a bar)")
    p.text = GeneratedText()
    p.text.setToolTip("")
    p.legend = Legend()
    p.context_note = QLabel()
    p.context_note.setWordWrap(True)
    p.context_note.setStyleSheet(f"color: {warning_color(p)};")
    p.context_note.setVisible(False)
    p.counts = QLabel()
    p.counts.setWordWrap(True)
    p.counts.setStyleSheet(f"color: {hint_color(p)};")
    p.search = VocabularySearch()

    p.top_n = QSpinBox()
    p.top_n.setRange(3, 40)
    p.top_n.setValue(15)
    p.top_n.setToolTip("How many of the most likely tokens the chart shows (fewer when it is too short for them)")
    p.scale = QComboBox()
    p.scale.addItem("probability", False)
    p.scale.addItem("log-probability", True)
    p.scale.setToolTip("Bars as probabilities, or as natural log-probabilities (the model's scores up to a "
                       "constant: small differences among unlikely tokens show)")
    p.bars_legend = QLabel(bars_legend_html(p))
    p.bars_legend.setToolTip("Outlined: the model's raw softmax. Solid: the probability after the decoding controls. "
                             "Hatched grey: a token a stage cut, drawn at the probability it had just before that "
                             "stage. Dashed red: where the top-p nucleus ends.")
    p.bars_legend.setWordWrap(True)
    p.chart = ProbabilityChart()
    p.chart.setMinimumHeight(200)
    p.controls = DecodingControls()

    top = QHBoxLayout()
    top.addWidget(QLabel("Model:"))
    top.addWidget(p.source_box, 2)
    top.addWidget(p.precision)
    top.addWidget(p.reload_button)
    top.addWidget(p.progress)
    top.addWidget(p.cancel_button)
    top.addWidget(p.model_info, 3)

    prompt_row = QHBoxLayout()
    prompt_row.addWidget(QLabel("Prompt"))
    prompt_row.addStretch(1)
    prompt_row.addWidget(p.chat)
    buttons = QHBoxLayout()
    for w in (p.undo_button, p.step_button, p.run_button, p.speed, p.speed_label):
        buttons.addWidget(w)
    buttons.addStretch(1)
    limits = QHBoxLayout()
    limits.addWidget(QLabel("Run stops after"))
    limits.addWidget(p.max_new)
    limits.addWidget(QLabel("or at"))
    limits.addWidget(p.stop_sequences, 1)
    limits.addWidget(p.reset_button)

    left = QWidget()
    lv = QVBoxLayout(left)
    lv.setContentsMargins(0, 0, 4, 0)
    lv.addLayout(prompt_row)
    lv.addWidget(p.prompt)
    lv.addLayout(buttons)
    lv.addLayout(limits)
    lv.addWidget(p.text, 1)
    lv.addWidget(p.legend)
    lv.addWidget(p.context_note)
    lv.addWidget(p.counts)
    lv.addWidget(p.search)

    chart_top = QHBoxLayout()
    chart_top.addWidget(QLabel("Next token: top"))
    chart_top.addWidget(p.top_n)
    chart_top.addWidget(p.scale)
    chart_top.addWidget(p.bars_legend, 1)
    chart_box = QWidget()
    cv = QVBoxLayout(chart_box)
    cv.setContentsMargins(0, 0, 0, 0)
    cv.addLayout(chart_top)
    cv.addWidget(p.chart, 1)
    p.right_splitter = QSplitter(Qt.Orientation.Vertical)  # the chart above the controls, the user sets the split
    p.right_splitter.addWidget(chart_box)
    p.right_splitter.addWidget(p.controls)
    p.right_splitter.setStretchFactor(0, 1)
    p.right_splitter.setStretchFactor(1, 0)
    p.right_splitter.setChildrenCollapsible(False)
    right = QWidget()
    rv = QVBoxLayout(right)
    rv.setContentsMargins(4, 0, 0, 0)
    rv.addWidget(p.right_splitter, 1)

    p.splitter = QSplitter(Qt.Orientation.Horizontal)
    p.splitter.addWidget(left)
    p.splitter.addWidget(right)
    p.splitter.setStretchFactor(0, 4)
    p.splitter.setStretchFactor(1, 5)
    p.splitter.setChildrenCollapsible(False)

    layout = QVBoxLayout(p)
    layout.addLayout(top)
    layout.addWidget(p.banner)
    layout.addWidget(p.splitter, 1)
