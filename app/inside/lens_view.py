"""The logit lens: what the model would predict if it stopped after each layer.

A table of layers (rows, first to last) by every position of the text (columns, scrollable). A cell shows the top
token when that layer's residual stream goes straight through the final norm and the head, and the probability that
layer gives the token the model finally chooses there (the last row's top token), which also sets its shade: one can
watch the final answer form layer by layer. Hover a cell for both tokens and both probabilities.

The table is a model over arrays: the pane fills it a slice of positions at a time (each computed in the worker, with
its text ready), and only the cells in view are ever painted, so a 1024-token text costs the UI thread no more than a
short one.
"""

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt
from PySide6.QtGui import QBrush, QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QStyledItemDelegate, QTableView, QVBoxLayout,
                               QWidget)

from app.theme import mix, palette, strength_color

SHADES = 64  # the shade of a cell is one of this many blues
CELL_CHARS = 10  # a column fits this many (average) characters of a token

PAD = 4  # pixels between a cell's edge and its text
_ROLE = Qt.ItemDataRole


class LensModel(QAbstractTableModel):
    """Layers x positions. ``reset`` for a new text, ``add`` for each computed slice of positions."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.n_layer = 0
        self.headers: list[str] = []
        self.labels: list[str] = []  # the text's tokens, for hover
        self.done = np.zeros(0, dtype=bool)
        self.top_probs = np.zeros((0, 0), dtype=np.float32)
        self.final_probs = np.zeros((0, 0), dtype=np.float32)
        self.texts: list[list[str]] = []
        self.top_labels: list[list[str]] = []
        self.final_labels: list[str] = []
        self.chosen = -1  # the chosen position: its title is bold
        self.follow_palette(None)

    def follow_palette(self, widget) -> None:
        """The cells' shades, pending grey and text from ``widget``'s palette (the application's for None)."""
        self.shades = [QBrush(strength_color(i / (SHADES - 1), widget)) for i in range(SHADES)]
        p = palette(widget)
        self.text = p.color(QPalette.ColorRole.Text)
        self.text_brush = QBrush(self.text)
        self.pending = QBrush(mix(p.color(QPalette.ColorRole.Base), self.text, 0.12))  # a cell still being computed

    def reset(self, n_layer: int, headers: list[str], labels: list[str]):
        self.beginResetModel()
        n = len(headers)
        self.n_layer, self.headers, self.labels = n_layer, headers, labels
        self.done = np.zeros(n, dtype=bool)
        self.top_probs = np.zeros((n_layer, n), dtype=np.float32)
        self.final_probs = np.zeros((n_layer, n), dtype=np.float32)
        self.texts = [[""] * n for _ in range(n_layer)]
        self.top_labels = [[""] * n for _ in range(n_layer)]
        self.final_labels = [""] * n
        self.endResetModel()

    def add(self, chunk):
        """Show an ``app.inside.analysis.LensChunk`` (positions of the current text)."""
        cols = chunk.positions
        if not cols or chunk.top_probs.shape[0] != self.n_layer or max(cols) >= len(self.done):
            return
        self.top_probs[:, cols] = chunk.top_probs
        self.final_probs[:, cols] = chunk.final_probs
        for layer in range(self.n_layer):
            texts, tops = self.texts[layer], self.top_labels[layer]
            for c, p in enumerate(cols):
                texts[p] = chunk.texts[layer][c]
                tops[p] = chunk.top_labels[layer][c]
        for c, p in enumerate(cols):
            self.final_labels[p] = chunk.top_labels[-1][c]
        self.done[cols] = True
        self.dataChanged.emit(self.index(0, min(cols)), self.index(self.n_layer - 1, max(cols)))

    # ---- the Qt model ----------------------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else self.n_layer

    def columnCount(self, parent=QModelIndex()):  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self.headers)

    def data(self, index, role=_ROLE.DisplayRole):
        layer, p = index.row(), index.column()
        done = self.done[p]
        if role == _ROLE.DisplayRole:
            return self.texts[layer][p] if done else "…"
        if role == _ROLE.BackgroundRole:
            return self.shades[int(round(float(self.final_probs[layer, p]) * (SHADES - 1)))] if done else self.pending
        if role == _ROLE.ForegroundRole:
            return self.text_brush
        if role == _ROLE.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignCenter
        if role == _ROLE.ToolTipRole:
            return self.tooltip(layer, p)
        return None

    def tooltip(self, layer: int, p: int) -> str:
        where = f"layer {layer + 1}, position {p} (after {self.labels[p]!r})"
        if not self.done[p]:
            return f"{where}: being computed"
        return (f"{where}\ntop token if the model stopped here: {self.top_labels[layer][p]!r}, "
                f"p = {self.top_probs[layer, p]:.3f}\nthe final choice {self.final_labels[p]!r} (last layer's top): "
                f"p = {self.final_probs[layer, p]:.3f} here")

    def set_chosen(self, p: int):
        old, self.chosen = self.chosen, p
        for section in (old, p):
            if 0 <= section < len(self.headers):
                self.headerDataChanged.emit(Qt.Orientation.Horizontal, section, section)

    def headerData(self, section, orientation, role=_ROLE.DisplayRole):  # noqa: N802 - Qt override
        if role == _ROLE.FontRole and orientation == Qt.Orientation.Horizontal and section == self.chosen:
            font = QFont()
            font.setBold(True)
            return font
        if role != _ROLE.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.headers[section] if section < len(self.headers) else None
        return f"layer {section + 1}" + (" (output)" if section == self.n_layer - 1 else "")


class _CellPainter(QStyledItemDelegate):
    """Paints a cell straight from the model's arrays: the stock delegate asks the model for a dozen roles per cell
    through Python, which made a screenful of cells cost 20-35 ms of the UI thread."""

    def __init__(self, model: LensModel, parent=None):
        super().__init__(parent)
        self.lens = model

    def paint(self, painter, option, index):
        model, layer, p, rect = self.lens, index.row(), index.column(), option.rect
        if not model.done[p]:
            painter.fillRect(rect, model.pending)
            painter.setPen(model.text)
            painter.drawText(rect.x() + PAD, rect.y() + PAD + option.fontMetrics.ascent(), "…")
            return
        painter.fillRect(rect, model.data(index, _ROLE.BackgroundRole))
        painter.setPen(model.text)
        # two lines drawn at points: laying text out in the rectangle (alignment, wrapping) cost several times more
        top, _, share = model.texts[layer][p].rpartition("\n")
        baseline = rect.y() + PAD + option.fontMetrics.ascent()
        painter.drawText(rect.x() + PAD, baseline, top)
        painter.drawText(rect.x() + PAD, baseline + option.fontMetrics.lineSpacing(), share)


class _TitleRow(QHeaderView):
    """The column titles, two lines tall: Qt sizes a header by asking the model for 200 titles' text, font and
    alignment (1700 Python calls, 5-10 ms, after every new text); two lines of the font are known without asking."""

    def __init__(self, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)

    def sizeHint(self):  # noqa: N802 - Qt override
        return QSize(self.length(), 2 * self.fontMetrics().lineSpacing() + 2 * PAD + 2)


class LensView(QWidget):
    """The lens table; the pane calls ``reset`` per text, ``add`` per computed slice, ``show_position`` per choice."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = LensModel(self)
        self.table = QTableView(self)
        self.table.setHorizontalHeader(_TitleRow(self.table))
        self.table.setModel(self.model)
        self.table.setItemDelegate(_CellPainter(self.model, self.table))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.setWordWrap(False)
        self.note = QLabel("Each cell: the top token if the model stopped after that layer (through the final norm "
                           "and the head), and that layer's probability of the token finally chosen (the last row's "
                           "top), which also sets its shade. Columns: every position, its token → the next one.")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        self._size_sections()
        self.model.follow_palette(self)

    def _size_sections(self):
        """Fixed sizes from the font (sizing each section to its contents would read every cell)."""
        metrics = QFontMetrics(self.table.font())
        across = self.table.horizontalHeader()
        across.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        across.setDefaultSectionSize(metrics.horizontalAdvance("m" * CELL_CHARS) + 2 * PAD)
        down = self.table.verticalHeader()
        down.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        down.setDefaultSectionSize(2 * metrics.lineSpacing() + 2 * PAD)

    def changeEvent(self, event):  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == event.Type.FontChange:
            self._size_sections()
        elif event.type() in (event.Type.PaletteChange, event.Type.ApplicationPaletteChange):
            self.model.follow_palette(self)
            self.table.viewport().update()

    def reset(self, n_layer: int, headers: list[str], labels: list[str]):
        self.model.reset(n_layer, headers, labels)

    def add(self, chunk):
        self.model.add(chunk)

    def show_position(self, p: int):
        """Scroll so that position ``p``'s column is in view, its title in bold."""
        self.model.set_chosen(p)
        if 0 <= p < self.model.columnCount():
            self.table.scrollTo(self.model.index(max(0, self.model.n_layer - 1), p),
                                QAbstractItemView.ScrollHint.EnsureVisible)

    def visible_positions(self) -> tuple[int, int]:
        """The first and last position whose column is (partly) in view."""
        n = self.model.columnCount()
        if n == 0:
            return (0, -1)
        header = self.table.horizontalHeader()
        first = header.logicalIndexAt(0)
        last = header.logicalIndexAt(max(0, header.viewport().width() - 1))
        return (max(first, 0), last if last >= 0 else n - 1)

    def cell_text(self, layer: int, column: int) -> str:
        return self.model.data(self.model.index(layer, column)) or ""
