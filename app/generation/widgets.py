"""The Generation pane's widgets, built and laid out (no behaviour: pane.py wires them to the state)."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QSizePolicy,
    QSlider, QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget,
)

from app.generation.chart import ProbabilityChart
from app.generation.controls import DecodingControls
from app.generation.picker import ModelPicker
from app.generation.text_view import GeneratedText, Legend
from app.generation.vocab_search import VocabularySearch
from app.theme import hint_color

SPEEDS = (1, 2, 3, 5, 8, 12, 20, 30, 50)  # tokens per second offered by the Run speed slider
PRECISION_TITLES = {"auto": "auto", "float32": "fp32", "bfloat16": "bf16"}


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
    p.model_info = QLabel()
    p.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    p.model_info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long: may be cut
    p.banner = QLabel()
    p.banner.setWordWrap(True)
    p.banner.setStyleSheet("background: #fde2e1; color: #7a1212; padding: 4px 8px; border-radius: 3px;")
    p.banner.setVisible(False)

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
    p.context_note.setStyleSheet("color: #8a5a00;")
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
    p.bars_legend = QLabel("<span style='color:#465a78'>▭</span> raw &nbsp;"
                           "<span style='color:#3465a4'>■</span> after controls &nbsp;"
                           "<span style='color:#969696'>▨</span> cut &nbsp;"
                           "<span style='color:#c82828'>- -</span> top-p")
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
