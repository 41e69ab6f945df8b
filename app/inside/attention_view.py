"""Causal self-attention as pictures: one head enlarged (queries down, keys across, tokens on both axes) beside a grid
of every head of the layer as thumbnails; click a thumbnail to enlarge it.

Row q of a head is the softmax over keys 0..q that query q used to mix the values: each row sums to 1 and everything
right of the diagonal is zero (a token never sees the future). One row can be marked: the chosen position, or the
newest token while the user steps in the Generation pane.
"""

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.inside.analysis import colourise
from app.inside.thumb_grid import ThumbGrid
from app.theme import style_plots

MARK_COLOR = QColor(255, 90, 40)
SELECTED_BORDER = QColor(255, 90, 40)
AXIS_LABEL = 8  # characters of a token label on an axis


def _short(label: str, n: int = AXIS_LABEL) -> str:
    return label if len(label) <= n else label[:n - 1] + "…"


class AttentionView(QWidget):
    """``set_maps(maps, labels)`` shows a layer: maps (n_head, T, T); ``mark_row(q)`` marks a query row."""

    sig_head_chosen = Signal(int)
    """A thumbnail was clicked: show this head enlarged."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.maps: np.ndarray | None = None
        self.tops: list[float] = []
        self.labels: list[str] = []
        self.head = 0
        self.marked = -1
        self.cmap = pg.colormap.get("viridis")
        self.lut = self.cmap.getLookupTable(0.0, 1.0, 256, alpha=True)  # (256, 4) uint8: the worker colours with it

        self.plot = pg.PlotWidget(self)
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)
        self.plot.setAspectLocked(False)
        self.plot.getPlotItem().hideButtons()
        self.plot.setLabel("left", "query (the token reading)")
        self.plot.setLabel("bottom", "key (the token read)")
        self.image = pg.ImageItem(axisOrder="row-major")  # rows are queries (y), columns keys (x)
        self.plot.addItem(self.image)
        self.row_mark = QGraphicsRectItem()
        pen = QPen(MARK_COLOR)
        pen.setWidthF(2)
        pen.setCosmetic(True)
        self.row_mark.setPen(pen)
        self.row_mark.setVisible(False)
        self.plot.addItem(self.row_mark)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.getViewBox().sigResized.connect(self._update_ticks)
        style_plots(self.plot)

        self.hover = QLabel("Hover over a cell: which key a query read, and how much.")
        self.hover.setTextFormat(Qt.TextFormat.PlainText)
        self.scale = QLabel("")
        self.scale.setWordWrap(True)
        self.grid = ThumbGrid(SELECTED_BORDER, self)
        self.grid.setMinimumWidth(160)
        self.grid.sig_clicked.connect(self.choose_head)

        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.plot, 1)
        left.addWidget(self.hover)
        left.addWidget(self.scale)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(QLabel("Every head of this layer (click to enlarge):"))
        right.addWidget(self.grid, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(left, 3)
        layout.addLayout(right, 2)

    # ---- data ----------------------------------------------------------------------------------------------------
    def set_maps(self, layer, labels: list[str]):
        """layer: an ``app.inside.analysis.LayerAttention``; labels: the tokens' visible text."""
        maps = layer.maps
        self.maps, self.tops, self.labels = maps, layer.tops, list(labels)
        self.colours = layer.colours if layer.colours is not None else colourise(maps, layer.tops, self.lut)
        self.head = min(self.head, maps.shape[0] - 1)
        colours = layer.thumb_colours
        self.grid.set_images(colours if colours is not None else colourise(layer.thumbs, layer.tops, self.lut))
        self._show_head()

    def choose_head(self, head: int):
        if self.maps is None or not 0 <= head < self.maps.shape[0]:
            return
        self.head = head
        self._show_head()
        self.sig_head_chosen.emit(head)

    def _show_head(self):
        if self.maps is None:
            return
        m = self.maps[self.head]
        top = self.tops[self.head]
        self.image.setImage(self.colours[self.head], levels=None)  # coloured in the worker: query rows, key columns
        self.plot.setTitle(f"head {self.head}")
        T = m.shape[0]
        self.plot.setRange(xRange=(0, T), yRange=(0, T), padding=0)
        self.scale.setText(f"Colour: 0 (dark) to {top:.3f} and above (yellow), the 99th percentile of this head's "
                           "weights (the first rows are close to 1 and would darken the rest). Rows sum to 1; "
                           "nothing right of the diagonal.")
        self.grid.set_selected(self.head)
        self._update_ticks()
        self.mark_row(self.marked)

    def _update_ticks(self):
        if self.maps is None:
            return
        T = len(self.labels)
        metrics = QFontMetrics(self.plot.font())
        vb = self.plot.getViewBox()
        h, w = max(1.0, vb.height()), max(1.0, vb.width())
        rows_per_label = max(1, math.ceil(metrics.height() * 1.1 / (h / max(T, 1))))
        cols_per_label = max(1, math.ceil(metrics.horizontalAdvance("M" * (AXIS_LABEL - 2)) / (w / max(T, 1))))
        left = [(i + 0.5, _short(self.labels[i], 14)) for i in range(0, T, rows_per_label)]
        bottom = [(i + 0.5, _short(self.labels[i])) for i in range(0, T, cols_per_label)]
        self.plot.getAxis("left").setTicks([left])
        self.plot.getAxis("bottom").setTicks([bottom])

    def mark_row(self, q: int):
        """Outline query row ``q`` (-1: none)."""
        self.marked = q
        if self.maps is None or not 0 <= q < self.maps.shape[1]:
            self.row_mark.setVisible(False)
            return
        self.row_mark.setRect(QRectF(0, q, q + 1, 1))
        self.row_mark.setVisible(True)

    # ---- hover ---------------------------------------------------------------------------------------------------
    def cell_text(self, q: int, k: int) -> str:
        w = float(self.maps[self.head, q, k])
        if k > q:
            return f"query {q} {self.labels[q]!r} cannot read key {k} {self.labels[k]!r}: it comes later (0)"
        return f"query {q} {self.labels[q]!r} reads key {k} {self.labels[k]!r} with weight {w:.3f}"

    def _on_mouse_moved(self, pos):
        if self.maps is None:
            return
        point = self.plot.getViewBox().mapSceneToView(pos)
        k, q = int(math.floor(point.x())), int(math.floor(point.y()))
        T = self.maps.shape[1]
        if 0 <= q < T and 0 <= k < T:
            self.hover.setText(self.cell_text(q, k))
