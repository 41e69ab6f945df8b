"""The Training pane's left column: the form (scrolling) with its parameter estimate and problems, then always in
sight the run buttons, the progress bar and line, the status and the failure details. Widgets and their rendering
only; the pane decides what they say.
"""

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton,
                               QScrollArea, QVBoxLayout, QWidget)

from app.theme import hint_color, is_dark
from app.training.form import TrainingForm
from app.training.state import Progress


class RunControls(QWidget):
    """The form and what belongs to it; the pane connects the buttons."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.form = TrainingForm()
        self.params = QLabel()
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.follow_button = QPushButton("Follow run folder…")
        self.follow_button.setToolTip("Show the curves of a run folder and follow them as they grow "
                                      "(e.g. a torchrun job writing to a shared folder)")
        self.use_button = QPushButton("Use in Generation")
        self.use_button.setToolTip("Open the latest checkpoint in the Generation pane")
        self.progress = QProgressBar()
        # the figures go in a label below: a bar's own text is split and clipped by its chunk in several styles
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)
        self.progress_text = QLabel()
        self.progress_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_text.setToolTip(
            "tok/s: tokens trained per second over the last steps. MFU: model FLOPs utilisation, the FLOPs the model "
            "needs per second (6 per weight per token plus attention) over the matmul peak the run measured when it "
            "started, in its own precision: a bf16 run is measured against the bf16 peak, which is several times "
            "fp32's on GPUs and on CPUs with AMX")
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.failure = QPlainTextEdit()
        self.failure.setReadOnly(True)
        self.failure.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.failure.setMaximumHeight(160)
        self.failure.hide()

        form_box = QGroupBox("Run")
        form_layout = QVBoxLayout(form_box)
        form_layout.addWidget(self.form)
        form_layout.addWidget(self.params)
        form_layout.addWidget(self.problems)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        more = QHBoxLayout()
        more.addWidget(self.follow_button)
        more.addWidget(self.use_button)
        # the form scrolls; the buttons, the progress and the status stay in sight below it, however low the window
        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        inner_layout.setContentsMargins(0, 0, 6, 0)
        inner_layout.addWidget(form_box)
        inner_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(inner)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setMinimumWidth(inner.sizeHint().width() + self.scroll.verticalScrollBar().sizeHint().width())
        self.scroll.setMinimumHeight(120)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll, 1)
        layout.addLayout(buttons)
        layout.addLayout(more)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_text)
        layout.addWidget(self.status)
        layout.addWidget(self.failure)

    def show_problems(self, errors: list[str], notes: list[str], visible: bool) -> None:
        """Errors in red, advice in amber (a note starting with ⚠ is a warning), in colours that read on the
        palette, light or dark."""
        red, amber = ("#ef9a9a", "#ffd54f") if is_dark(self) else ("#c62828", "#8d6e00")
        lines = [f"<span style='color:{red}'>✖ {html.escape(e)}</span>" for e in errors]
        lines += [f"<span style='color:{amber}'>{'' if n.startswith('⚠') else 'ⓘ '}{html.escape(n)}</span>"
                  for n in notes]
        self.problems.setText("<br>".join(lines))
        self.problems.setVisible(bool(lines) and visible)

    def show_params(self, text: str) -> None:
        self.params.setText(text)
        self.params.setStyleSheet(f"color: {hint_color(self)};")  # from the palette as it is now

    def show_buttons(self, phase: str, start_problem: str, resume_problem: str, can_use: bool) -> None:
        """Enable what the phase allows. ``*_problem``: why Start or Resume cannot be pressed ("" when they can)."""
        idle = phase == "idle"
        self.start_button.setEnabled(idle and not start_problem)
        self.start_button.setToolTip(start_problem if idle and start_problem else "Train a new model in the run folder")
        self.stop_button.setEnabled(phase in ("running", "stopping", "following"))
        self.stop_button.setText({"following": "Stop following", "stopping": "Kill"}.get(phase, "Stop"))
        self.stop_button.setToolTip("End the processes now, without saving (the last checkpoint stays)"
                                    if phase == "stopping" else "Save a checkpoint and stop")
        self.resume_button.setEnabled(idle and not resume_problem)
        self.resume_button.setToolTip(resume_problem or "Continue the run folder's checkpoint (up to the Steps above)")
        self.follow_button.setEnabled(idle)
        self.use_button.setEnabled(can_use)
        self.form.setEnabled(idle)

    def show_progress(self, p: Progress) -> None:
        if p.busy:
            self.progress.setRange(0, 0)  # moves without a known end
        else:
            # QProgressBar holds C ints: a run of 2^31 steps or more (a followed file may say anything) is scaled
            scale = max(1, -(-p.maximum // (2**31 - 1)))
            self.progress.setRange(0, max(1, p.maximum // scale))
            self.progress.setValue(max(0, min(p.value, p.maximum)) // scale)
        self.progress_text.setText(p.text)

    def show_status(self, text: str, rich: bool) -> None:
        self.status.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.status.setText(text)

    def show_failure(self, text: str) -> None:
        self.failure.setPlainText(text)
        self.failure.setVisible(bool(text))
