"""Train your own byte-level BPE: pick a corpus and a vocabulary size, watch it train, see how well it compresses.

Training runs in a separate process (see ``bpe_training``) with a progress bar and Cancel; the tokenizer is saved into
``app.paths.tokenizers_dir()`` and offered in the pane's encoding selector (and the Training pane).
"""

import math
import threading
import time
from html import escape
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from app.jobs import JobFailed, JobRunner
from app.theme import error_color, style_plots
from app.tokenization.bpe_training import TrainResult, train_in_process

class BPEPanel(QWidget):
    """The train-your-own-BPE tab."""

    sig_trained = Signal(str)
    """Path of a tokenizer just trained and saved."""

    def __init__(self, parent=None, reporter=None):
        super().__init__(parent)
        self.reporter = reporter
        self._runner = JobRunner(self, torch_threads=None)  # a BPE trainer: no torch
        self._runner.sig_done.connect(self._on_done)
        self._runner.sig_progress.connect(self._on_progress)
        self._cancel = threading.Event()
        self.last_result: TrainResult | None = None

        self.source = QComboBox()
        self.source.setMinimumContentsLength(18)
        self._add_builtin_corpora()
        self.browse = QPushButton("Text file…")
        self.browse.clicked.connect(self._choose_file)
        source_row = QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(self.browse)
        self.vocab = QSpinBox()
        self.vocab.setRange(260, 65_536)
        self.vocab.setSingleStep(256)
        self.vocab.setValue(1024)
        self.vocab.setToolTip("256 byte tokens + merges + 1 special token (<|endoftext|>)")
        self.name = QLineEdit("my-bpe")
        form = QFormLayout()
        form.addRow("Corpus", source_row)
        form.addRow("Vocabulary size", self.vocab)
        form.addRow("Name", self.name)

        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        self.status = QLabel("Train a byte-level BPE on a corpus; the result joins the encoding selector.")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)  # messages are escaped HTML (auto-detection showed &#x27;)

        self.plot = pg.PlotWidget()
        self.plot.setLogMode(x=True, y=False)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "vocabulary size (log)")
        self.plot.setLabel("left", "bytes per token")
        self.plot.setTitle("Compression: bigger vocabularies pack more bytes into a token", color="#333", size="9pt")
        self.plot.setMouseEnabled(x=False, y=False)
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#1f6feb", width=2), symbol="o", symbolSize=6,
                                    symbolBrush="#1f6feb", name="yours")
        self.reference_points = pg.ScatterPlotItem(size=9, brush=pg.mkBrush("#d9822b"), pen=None)
        self.plot.addItem(self.reference_points)
        self._reference_labels: list[pg.TextItem] = []

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.plot, 1)
        style_plots(self.plot)  # palette colours: readable in a dark theme too

    # ---- corpus choice -------------------------------------------------------------------------------------------
    def _add_builtin_corpora(self) -> None:
        try:
            from engine.corpora import corpora

            for info in corpora():
                self.source.addItem(info.title, info.name)
                self.source.setItemData(self.source.count() - 1, info.description, 3)  # 3 = ToolTipRole
        except Exception as exc:  # noqa: BLE001 - a broken corpus package must not take the pane down
            self.source.addItem(f"(built-in corpora unavailable: {exc})", None)

    def set_corpus_file(self, path: str) -> None:
        """Use a text file as the corpus (also what the file dialog does)."""
        index = self.source.findData(path)
        if index < 0:
            self.source.addItem(f"file: {Path(path).name}", path)
            index = self.source.count() - 1
            self.source.setItemData(index, path, 3)
        self.source.setCurrentIndex(index)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Train on a text file", str(Path.home()),
                                              "Text files (*.txt *.md *.csv *.json *.py);;All files (*)")
        if path:
            self.set_corpus_file(path)

    def corpus(self) -> str | None:
        return self.source.currentData()

    # ---- training ----------------------------------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self._runner.busy_with("train")

    def train(self) -> None:
        if self.training:
            return
        source = self.corpus()
        if not source:
            self._show_error("Choose a corpus or a text file first.")
            return
        self._cancel.clear()
        vocab, name = self.vocab.value(), self.name.text().strip()

        def job(job):
            last_emit = [0.0]

            def progress(done: int, total: int) -> None:
                now = time.monotonic()
                if now - last_emit[0] > 0.05 or done == total:  # at most ~20 updates a second
                    last_emit[0] = now
                    job.progress((done, total))

            return train_in_process(source, vocab, name, progress, self._cancel.is_set)

        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first progress report (loading the corpus)
        self.status.setStyleSheet("")
        self.status.setText(f"Loading {escape(self.source.currentText())} and training {vocab} tokens…")
        self._runner.submit("train", job)

    def cancel(self) -> None:
        if self.training:
            self._cancel.set()
            self.status.setText("Cancelling…")

    def _on_progress(self, _kind: str, value) -> None:
        done, total = value
        if not self.training or self._cancel.is_set():
            return
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.status.setText(f"Training: merge {done:,} of {total:,}")

    def _on_done(self, kind: str, result) -> None:
        from engine.tokenizers import Cancelled

        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if isinstance(result, JobFailed):
            if isinstance(result.exc, Cancelled):
                self.status.setStyleSheet("")
                self.status.setText("Training cancelled; nothing was saved.")
            else:
                self._show_error(result.message)
                if not result.expected and self.reporter is not None:
                    self.reporter.report_message(f"BPE training failed: {result.message}", result.traceback)
            return
        self.progress.setValue(1)
        self.last_result = result
        self._show_curve(result)
        self.status.setStyleSheet("")
        short = (f" <b>{result.asked:,} asked, {result.n_vocab:,} possible: the corpus ran out of pairs</b> "
                 "(every pair of neighbouring tokens was already merged; a bigger corpus allows more)."
                 if result.n_vocab < result.asked else "")
        self.status.setText(f"Trained <b>{escape(result.name)}</b> ({result.n_vocab:,} tokens) on "
                            f"{result.corpus_chars:,} characters in {result.seconds:.1f} s; saved to "
                            f"<code>{escape(result.path)}</code>.{short}")
        self.sig_trained.emit(result.path)

    def _show_error(self, message: str) -> None:
        self.status.setStyleSheet(f"color: {error_color(self)};")
        self.status.setText(escape(message))

    def _show_curve(self, result: TrainResult) -> None:
        sizes = [size for size, _ in result.curve]
        self.curve.setData(sizes, [bpt for _, bpt in result.curve])
        for item in self._reference_labels:
            self.plot.removeItem(item)
        self._reference_labels = []
        self.reference_points.setData([math.log10(n) for _, n, _ in result.references],
                                      [bpt for _, _, bpt in result.references])
        for k, (encoding, n_vocab, bpt) in enumerate(result.references):
            # labels alternate above and below their points, so neighbours do not overlap
            text = pg.TextItem(encoding, color="#8a4b0f", anchor=(0.5, 1.3) if k % 2 == 0 else (0.5, -0.3))
            text.setPos(math.log10(n_vocab), bpt)
            self.plot.addItem(text)
            self._reference_labels.append(text)
        xs = sizes + [n for _, n, _ in result.references]
        self.plot.setXRange(math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.35, padding=0)
        self.plot.enableAutoRange(axis="y")

    # ---- settings ----------------------------------------------------------------------------------------------------
    def save_settings(self, s) -> None:
        s.setValue("bpe/vocab", self.vocab.value())
        s.setValue("bpe/name", self.name.text())
        s.setValue("bpe/corpus", self.corpus() or "")

    def restore_settings(self, s) -> None:
        from app.settings import read

        self.vocab.setValue(read(s, "bpe/vocab", self.vocab.value()))
        self.name.setText(read(s, "bpe/name", self.name.text()))
        corpus = read(s, "bpe/corpus", "")
        if corpus:
            index = self.source.findData(corpus)
            if index >= 0:
                self.source.setCurrentIndex(index)
            elif Path(corpus).is_file():
                self.set_corpus_file(corpus)

    def shutdown(self) -> None:
        self._cancel.set()
        self._runner.close()
