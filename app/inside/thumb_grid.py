"""Every head of a layer as a thumbnail, in a grid; a click asks for that head.

The thumbnails arrive coloured (RGBA, made in the worker), so showing a layer is wrapping each in a QImage and one
repaint: the grid of pyqtgraph view boxes this replaces cost 100-200 ms of the UI thread to build for 12 heads.
"""

import math

import numpy as np
from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QFontMetrics, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

GAP = 14  # pixels between cells


class ThumbGrid(QWidget):
    """``set_images(rgba)`` with rgba (n_head, t, t, 4) uint8; ``set_selected(h)`` outlines head h."""

    sig_clicked = Signal(int)
    """The thumbnail of this head was clicked."""

    def __init__(self, border, parent=None):
        super().__init__(parent)
        self.border = border
        self.images: list[QImage] = []
        self.selected = -1
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    @property
    def n_heads(self) -> int:
        return len(self.images)

    def set_images(self, rgba: np.ndarray):
        n, t = rgba.shape[0], rgba.shape[1]
        data = np.ascontiguousarray(rgba, dtype=np.uint8)
        self.images = [QImage(data[h].tobytes(), t, t, 4 * t, QImage.Format.Format_RGBA8888) for h in range(n)]
        self.update()

    def set_selected(self, head: int):
        self.selected = head
        self.update()

    def _layout(self) -> tuple[int, int, int]:
        """(columns, cell width, cell height) for the current size."""
        n = max(1, self.n_heads)
        cols = max(1, math.ceil(math.sqrt(n)))
        rows = math.ceil(n / cols)
        return cols, max(1, self.width() // cols), max(1, self.height() // rows)

    def head_rect(self, head: int) -> QRect:
        """Where head ``head``'s picture is drawn (a square under its label)."""
        cols, w, h = self._layout()
        label = QFontMetrics(self.font()).height()
        side = max(4, min(w, h - label) - GAP)
        x, y = (head % cols) * w, (head // cols) * h
        return QRect(x + (w - side) // 2, y + label, side, side)

    def head_at(self, pos) -> int | None:
        cols, w, h = self._layout()
        head = (pos.y() // h) * cols + pos.x() // w
        return head if 0 <= pos.x() < cols * w and 0 <= head < self.n_heads else None

    def paintEvent(self, event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)  # one block per weight, sharp
        painter.fillRect(self.rect(), self.palette().base())  # as the plots beside it (app.theme.style_plots)
        text = self.palette().text().color()
        label = QFontMetrics(self.font()).height()
        for head, image in enumerate(self.images):
            rect = self.head_rect(head)
            painter.setPen(text)
            painter.drawText(QRect(rect.x(), rect.y() - label, rect.width(), label),
                             Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, f"head {head}")
            painter.drawImage(rect, image)
            if head == self.selected:
                pen = QPen(self.border)
                pen.setWidth(2)
                painter.setPen(pen)
                painter.drawRect(rect.adjusted(-1, -1, 0, 0))
        painter.end()

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            head = self.head_at(event.position().toPoint())
            if head is not None:
                self.sig_clicked.emit(head)
