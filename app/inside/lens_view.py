"""The logit lens: what the model would predict if it stopped after each layer.

A table of layers (rows, first to last) by positions (columns, ending at the chosen one). A cell shows the top token
when that layer's residual stream goes straight through the final norm and the head; its shade is the probability
that layer gives the token the model finally chooses there (the last row's top token), so one can watch the final
answer form layer by layer.
"""

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, \
    QWidget

MAX_CELL = 10  # characters of a token in a cell


def _short(label: str, n: int = MAX_CELL) -> str:
    return label if len(label) <= n else label[:n - 1] + "…"


def shade(p: float) -> QColor:
    """White (p=0) to a strong blue (p=1); black text stays readable on every shade."""
    p = min(max(p, 0.0), 1.0)
    return QColor(int(255 - 150 * p), int(255 - 110 * p), 255)


class LensView(QWidget):
    """``set_lens(lens, labels, vocab_labels, next_ids)``: lens is an ``app.inside.analysis.LensView``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(self)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.note = QLabel("Each cell: the top token if the model stopped after that layer (through the final norm "
                           "and the head). Shade: that layer's probability of the token finally chosen (last row).")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        self.lens = None

    def set_lens(self, lens, labels: list[str], vocab_label, next_ids: list[int]):
        """labels: the input tokens' visible text; vocab_label(id) -> text; next_ids[t]: the id after position t."""
        self.lens = lens
        n_layer, cols = len(lens.top_ids), len(lens.positions)
        self.table.setUpdatesEnabled(False)
        self.table.clear()
        self.table.setRowCount(n_layer)
        self.table.setColumnCount(cols)
        self.table.setHorizontalHeaderLabels(
            [f"{p}: {_short(labels[p])}\n→ {_short(vocab_label(next_ids[p])) if p < len(next_ids) else '?'}"
             for p in lens.positions])
        self.table.setVerticalHeaderLabels(
            [f"layer {i + 1}" + (" (output)" if i == n_layer - 1 else "") for i in range(n_layer)])
        for layer in range(n_layer):
            for c, p in enumerate(lens.positions):
                top = lens.top_ids[layer][c]
                item = QTableWidgetItem(_short(vocab_label(top)))
                item.setBackground(QBrush(shade(lens.final_probs[layer][c])))
                item.setForeground(QBrush(QColor("black")))
                final = lens.final_ids[c]
                item.setToolTip(f"layer {layer + 1}, position {p} (after {labels[p]!r}):\n"
                                f"top token {vocab_label(top)!r}, p = {lens.top_probs[layer][c]:.3f}\n"
                                f"final choice {vocab_label(final)!r}: p = {lens.final_probs[layer][c]:.3f} here")
                self.table.setItem(layer, c, item)
        self.table.resizeColumnsToContents()  # once, after filling (resize-to-contents mode relayouts per cell)
        self.table.resizeRowsToContents()
        self.table.setUpdatesEnabled(True)
        self.table.scrollToItem(self.table.item(n_layer - 1, cols - 1))

    def cell_text(self, layer: int, column: int) -> str:
        return self.table.item(layer, column).text()
