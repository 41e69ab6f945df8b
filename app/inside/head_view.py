"""The head: at the chosen position, the last hidden state -> logits -> softmax, the path that ends in the Generation
pane's bar chart.

Left: the hidden state (the final norm's output), one bar per dimension. Right: the head multiplies it by the
unembedding matrix, one logit per vocabulary entry; softmax turns logits into probabilities,
p = exp(logit - logsumexp). The table lists the tokens with the largest probabilities.
"""

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from app.theme import strength_color, style_plots

BAR_COLOR = QColor(52, 101, 164)


class HeadView(QWidget):
    """``set_head(summary, vocab_label, context_label)``: summary is an ``app.inside.analysis.HeadSummary``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.plot = pg.PlotWidget(self)
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.setLabel("bottom", "dimension of the hidden state")
        self.plot.setMouseEnabled(x=True, y=False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush=BAR_COLOR, pen=None)
        self.plot.addItem(self.bars)
        style_plots(self.plot)
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["token", "logit", "p = softmax"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.formula = QLabel("")
        self.formula.setWordWrap(True)
        left = QVBoxLayout()
        left.addWidget(QLabel("1. the last hidden state h (after the final norm)"))
        left.addWidget(self.plot, 1)
        right = QVBoxLayout()
        right.addWidget(QLabel("2. logits = h · Wᵀ   3. p = softmax(logits)"))
        right.addWidget(self.table, 1)
        right.addWidget(self.formula)
        row = QHBoxLayout()
        row.addLayout(left, 1)
        row.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(row, 1)
        self.summary = None

    def set_head(self, summary, vocab_label, context_label: str):
        self.summary = summary
        hidden = np.asarray(summary.hidden, dtype=np.float32)
        self.bars.setOpts(x=np.arange(hidden.size), height=hidden, width=0.8)
        self.plot.setXRange(-1, hidden.size, padding=0)
        self.plot.setYRange(float(min(hidden.min(), 0)), float(max(hidden.max(), 0)), padding=0.05)
        self.title.setText(f"Position {summary.position}, after {context_label!r}: what comes next?")
        self.table.setRowCount(len(summary.rows))
        for r, row in enumerate(summary.rows):
            cells = (vocab_label(row.id), f"{row.logit:.3f}", f"{row.prob:.4f}")
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self._shade_probs()
        lo, hi = summary.logit_range
        self.formula.setText(
            f"‖h‖ = {summary.hidden_norm:.2f} over {hidden.size} dimensions → {summary.vocab} logits from {lo:.2f} "
            f"to {hi:.2f}; logsumexp = {summary.logsumexp:.3f}, so p = exp(logit − {summary.logsumexp:.3f}). "
            "These are the raw probabilities the Generation pane's chart starts from (before temperature, top-k, "
            "top-p).")

    def _shade_probs(self):
        """The p column shaded by each row's share of the top probability, in the palette's colours."""
        if self.summary is None or not self.summary.rows:
            return
        top = self.summary.rows[0].prob or 1.0
        for r, row in enumerate(self.summary.rows):
            item = self.table.item(r, 2)
            if item is not None:
                item.setBackground(QBrush(strength_color(0.8 * row.prob / top, self)))

    def changeEvent(self, event):  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() in (event.Type.PaletteChange, event.Type.ApplicationPaletteChange):
            style_plots(self.plot)
            self._shade_probs()
