"""Embeddings and positions: a token's nearest neighbours in the embedding table, a 2-D PCA of the whole vocabulary
(hover a point for its token), and the model's position scheme drawn as a picture.
"""

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QListWidget, QSpinBox, QVBoxLayout, QWidget)

from app.theme import style_plots

POINT_COLOR = QColor(52, 101, 164, 110)
CHOSEN_COLOR = QColor(255, 90, 40)
NEIGHBOUR_COLOR = QColor(240, 170, 30)


class EmbeddingView(QWidget):
    """Call ``set_embeddings`` once per model, ``set_neighbours`` per chosen token."""

    sig_token_chosen = Signal(int)
    """The user picked a token id to find the neighbours of."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.labels: list[str] = []
        self.coords: np.ndarray | None = None
        self.token = QSpinBox(self)
        self.token.setMinimum(0)
        self.token.setKeyboardTracking(False)
        self.token.valueChanged.connect(self.sig_token_chosen)
        self.token_label = QLabel("")
        self.token_label.setTextFormat(Qt.TextFormat.PlainText)
        self.neighbours = QListWidget(self)
        self.hover = QLabel("Hover a point for its token.")
        self.hover.setTextFormat(Qt.TextFormat.PlainText)

        self.scatter_plot = pg.PlotWidget(self)
        self.scatter_plot.setMenuEnabled(False)
        self.scatter_plot.getPlotItem().hideButtons()
        self.scatter = pg.ScatterPlotItem(size=4, pen=None, brush=POINT_COLOR, hoverable=True,
                                          tip=self._tip, hoverSize=8)
        self.scatter.sigHovered.connect(self._on_hovered)
        self.marks = pg.ScatterPlotItem(size=10, pen=pg.mkPen("k"), brush=NEIGHBOUR_COLOR)
        self.scatter_plot.addItem(self.scatter)
        self.scatter_plot.addItem(self.marks)
        style_plots(self.scatter_plot)

        self.scheme_plot = pg.PlotWidget(self)
        self.scheme_plot.setMenuEnabled(False)
        self.scheme_plot.getPlotItem().hideButtons()
        self.scheme_plot.invertY(True)
        self.scheme_image = pg.ImageItem()
        self.scheme_image.setColorMap(pg.colormap.get("viridis"))
        self.scheme_plot.addItem(self.scheme_image)
        style_plots(self.scheme_plot)
        self.scheme_title = QLabel("")
        self.scheme_title.setWordWrap(True)
        self.scheme_head = QSpinBox(self)  # ALiBi: which head's bias is drawn
        self.scheme_head.setPrefix("head ")
        self.scheme_head.setToolTip("Each ALiBi head has its own slope: the steeper, the shorter it looks back")
        self.scheme_head.valueChanged.connect(self.show_picture)
        self.scheme_head.hide()
        self.emb = None

        picker = QHBoxLayout()
        picker.addWidget(QLabel("Token id:"))
        picker.addWidget(self.token)
        picker.addWidget(self.token_label, 1)
        left = QVBoxLayout()
        left.addLayout(picker)
        left.addWidget(QLabel("Nearest by cosine similarity of the embeddings:"))
        left.addWidget(self.neighbours, 1)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.pca_title = QLabel("PCA of the token embeddings")
        self.pca_title.setWordWrap(True)
        grid.addLayout(left, 0, 0, 2, 1)
        grid.addWidget(self.pca_title, 0, 1)
        grid.addWidget(self.scatter_plot, 1, 1)
        grid.addWidget(self.hover, 2, 1)
        scheme_top = QVBoxLayout()
        scheme_top.addWidget(self.scheme_title)
        scheme_top.addWidget(self.scheme_head, 0, Qt.AlignmentFlag.AlignLeft)
        grid.addLayout(scheme_top, 0, 2)
        grid.addWidget(self.scheme_plot, 1, 2)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        grid.setColumnStretch(2, 3)

    def set_embeddings(self, emb, labels: list[str]):
        self.labels = labels
        self.coords = emb.coords
        n = len(emb.coords)
        self.token.blockSignals(True)
        self.token.setMaximum(max(0, n - 1))
        self.token.blockSignals(False)
        self.scatter.setData(pos=emb.coords, data=np.arange(n))
        self.pca_title.setText(f"PCA of {n} token embeddings (axes hold {100 * emb.explained[0]:.0f}% and "
                               f"{100 * emb.explained[1]:.0f}% of the variance)")
        self.emb = emb
        self.scheme_plot.setLabel("bottom", emb.picture_axes[0])
        self.scheme_plot.setLabel("left", emb.picture_axes[1])
        self.scheme_head.blockSignals(True)
        self.scheme_head.setMaximum(len(emb.pictures) - 1)
        self.scheme_head.setValue(min(self.scheme_head.value(), len(emb.pictures) - 1))
        self.scheme_head.blockSignals(False)
        self.scheme_head.setVisible(len(emb.pictures) > 1)
        self.show_picture(self.scheme_head.value())

    def show_picture(self, index: int):
        """Draw the position scheme's picture ``index`` (an ALiBi head; the others have one picture)."""
        emb = self.emb
        if emb is None or not 0 <= index < len(emb.pictures):
            return
        picture = np.asarray(emb.pictures[index], dtype=np.float32)
        self.scheme_title.setText(emb.picture_titles[index])
        if emb.levels is None:
            self.scheme_image.setImage(picture.T)
        else:
            self.scheme_image.setImage(picture.T, levels=emb.levels)
        rows, cols = picture.shape
        self.scheme_plot.setRange(xRange=(0, cols), yRange=(0, rows), padding=0)

    def set_neighbours(self, token_id: int, neighbours: list[tuple[int, float]]):
        self.token.blockSignals(True)
        self.token.setValue(token_id)
        self.token.blockSignals(False)
        self.token_label.setText(repr(self.label(token_id)))
        self.neighbours.clear()
        for i, cos in neighbours:
            self.neighbours.addItem(f"{cos:+.3f}   {self.label(i)!r}  (id {i})")
        if self.coords is not None:
            ids = [token_id] + [i for i, _ in neighbours]
            brushes = [pg.mkBrush(CHOSEN_COLOR)] + [pg.mkBrush(NEIGHBOUR_COLOR)] * len(neighbours)
            self.marks.setData(pos=self.coords[ids], brush=brushes)

    def label(self, i: int) -> str:
        return self.labels[i] if 0 <= i < len(self.labels) and self.labels[i] is not None else f"<id {i}>"

    def _tip(self, x, y, data):
        return f"{self.label(int(data))!r} (id {int(data)})"

    def _on_hovered(self, item, points, ev):
        if len(points):
            self.hover.setText(self._tip(0, 0, points[0].data()))
