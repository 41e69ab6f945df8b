"""A plot item for a long line: it holds all the points and draws, for the view it is in, what the view's pixel
columns can show (:mod:`app.experiments.decimate`), worked out once per frame, when the plot is next painted.

pyqtgraph's own PlotDataItem clips and downsamples too, but it does the whole of it again for each axis that
changes (a zoom: x, then y), in Python per call, and guards against huge values (a diverged run's 1e30 ruins Qt's
raster engine) by clipping the downsampled line again at each change of y; ten runs' 20 lines took 16 ms of a zoom
that way. Here a view change only marks the line; its block reductions are kept from one data change to the next
(a live run's appended points add to them), so the frame costs a slice of a few thousand numbers per line.
"""

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPen, QPainter, QTransform

from app.experiments.decimate import Pyramid, clip_to_view, decimate


class DecimatedLine(pg.GraphicsObject):
    """A line through (x, y), x ascending: per pixel column its max and min (method "peak") or mean ("mean"), a
    break where a value is not finite; every point once a column holds fewer than two. With ``bold`` its 2-pixel
    pen is painted as three 1-pixel lines, the second one pixel right, the third one down: Qt paints a pen wider
    than one pixel through its general stroker, 4x as slow as the three cosmetic lines that cover the same pixels (a
    2x2 square swept along the line). Exports (antialiased), other pens and scaled screens get the pen as it is.
    """

    def __init__(self, pen, method: str = "peak", bold: bool = False):
        super().__init__()
        self.opts = {"pen": pg.mkPen(pen), "antialias": False, "fillLevel": None, "fillBrush": None, "symbol": None}
        self.method = method
        self.bold = bold
        self.full = False  # draw every point (a benchmark's baseline)
        self._x = self._y = np.empty(0)  # the data as given
        self._log_y = False
        self._pyramid = Pyramid(self._x, self._y, method)
        self._bounds: tuple | None = None  # (x0, x1, y0, y1) of the finite points, y as drawn (log10 in log mode)
        self._columns: tuple | None = None  # ((x0, x1, width), (x, y)) decimated for that x range and width
        self._shown: tuple | None = None  # (x, y) drawn for the current view; None: work it out at the next paint
        self._path = None
        self._rect: QRectF | None = None

    # ---- data ----------------------------------------------------------------------------------------------------
    def set_data(self, x: np.ndarray, y: np.ndarray, fresh: bool = False, within: "DecimatedLine | None" = None):
        """Show (x, y); if it only appends to what is shown (a live run), only the new points' blocks are worked on.
        ``fresh``: the caller knows y is new throughout (a new smoothing weight), so the check is skipped.
        ``within``: a line on the same x (in the same plot) whose extent holds this one's, e.g. a raw curve for its
        moving average (an average of values lies between their least and greatest): its extent is taken as this
        line's, instead of a pass over y for it."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        n = len(self._y)
        appended = (not fresh and 0 < n <= len(y) and np.array_equal(x[:n].view(np.int64), self._x.view(np.int64))
                    and np.array_equal(y[:n].view(np.int64), self._y.view(np.int64)))
        self._x, self._y = x, y
        self._rebuild(appended, within._bounds if within is not None and within._log_y == self._log_y else None)

    def set_method(self, method: str) -> None:
        if method != self.method:
            self.method = method
            self._rebuild(False)

    def setLogMode(self, x_log: bool, y_log: bool) -> None:  # noqa: N802 - called by PlotItem for its items
        if y_log != self._log_y:
            self._log_y = y_log
            self._rebuild(False)

    def _rebuild(self, appended: bool, bounds: tuple | None = None) -> None:
        y = self._y
        if self._log_y:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.log10(np.where(y > 0, y, np.nan))
        if appended and self._pyramid.method == self.method:
            self._pyramid.extend(self._x, y)
        else:
            self._pyramid = Pyramid(self._x, y, self.method)
        self._bounds = bounds if bounds is not None else self._pyramid.bounds()
        self._columns = None
        self._view_changed()
        self.informViewBoundsChanged()

    def getData(self) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802 - pyqtgraph's name
        """(x, y) as drawn for the current view (an auto range still to come is applied first, as a paint would)."""
        view = self.getViewBox()
        if view is not None:
            view.prepareForPaint()
        return self._drawn()

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange=None):  # noqa: N802 - pyqtgraph override
        """The range on axis ax (0: x, 1: y) for the view's auto range: all the data's x; y of what is drawn (the
        points within the view's x range, as pyqtgraph's own clipped lines gave) unless x is auto-ranged too."""
        view = self.getViewBox()
        if self._bounds is None or ax == 0 or view is None or view.autoRangeEnabled()[0]:
            return None if self._bounds is None else list(self._bounds[2 * ax:2 * ax + 2])
        _, y = self._decimated()
        y = y[np.isfinite(y)]
        return [float(y.min()), float(y.max())] if len(y) else None

    def pixelPadding(self) -> float:  # noqa: N802 - pyqtgraph override
        return self.opts["pen"].widthF() / 2 + (2.0 if self.bold else 1.0)

    # ---- the view ------------------------------------------------------------------------------------------------
    def viewRangeChanged(self, view=None, ranges=None, changed=None) -> None:  # noqa: N802 - pyqtgraph hook
        """Called for each axis that changed: a new x range shows other points, whose y range the view's auto range
        may follow."""
        self._view_changed()
        if changed is None or changed[0]:
            self.informViewBoundsChanged()

    def viewTransformChanged(self, *args) -> None:  # noqa: N802 - pyqtgraph hook: the plot was resized
        self._view_changed()

    def setExportMode(self, export, opts=None) -> None:  # noqa: N802 - an export is drawn at its own resolution
        super().setExportMode(export, opts)
        self._view_changed()

    def _view_changed(self) -> None:
        self._shown = self._path = None
        if self._rect is not None:
            self.prepareGeometryChange()
            self._rect = None
        self.update()

    def _decimated(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) for the view's x range and pixel columns, before clipping to its y range (kept while those stay)."""
        view = self.getViewBox()
        x, y = self._pyramid.x, self._pyramid.y
        if view is None or not len(x) or self.full:
            return x, y
        (x0, x1), _ = view.viewRange()
        scale = self._exportOpts.get("resolutionScale", 1.0) if self._exportOpts is not False else 1.0
        views = view.scene().views() if view.scene() is not None else []
        width = max(1, round(view.width() * scale * (views[0].devicePixelRatioF() if views else 1.0)))
        if self._columns is None or self._columns[0] != (x0, x1, width):
            self._columns = ((x0, x1, width), decimate(self._pyramid, x0, x1, width))
        return self._columns[1]

    def _drawn(self) -> tuple[np.ndarray, np.ndarray]:
        if self._shown is None:
            x, y = self._decimated()
            view = self.getViewBox()
            if view is not None:
                y = clip_to_view(y, *view.viewRange()[1])
            self._shown = (x, y)
        return self._shown

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        """The data's extent within the view (and a few pixels): what the plot's clipping leaves of the line."""
        if self._rect is None:
            rect = QRectF()
            view = self.getViewBox()
            if self._bounds is not None:
                bx0, bx1, by0, by1 = self._bounds
                if view is not None:
                    (x0, x1), (y0, y1) = view.viewRange()
                    w, h = max(view.width(), 1.0), max(view.height(), 1.0)
                    pad_x = (self.pixelPadding() + 2) * (x1 - x0) / w  # and the column beyond each edge
                    pad_y = (self.pixelPadding() + 2) * (y1 - y0) / h
                    bx0, bx1 = max(bx0, x0) - pad_x, min(bx1, x1) + pad_x
                    by0, by1 = max(by0, y0) - pad_y, min(by1, y1) + pad_y
                if bx1 >= bx0 and by1 >= by0:
                    rect = QRectF(bx0, by0, bx1 - bx0, by1 - by0)
            self._rect = rect
        return self._rect

    # ---- painting ------------------------------------------------------------------------------------------------
    def paint(self, p: QPainter, opt, widget) -> None:
        x, y = self._drawn()
        if len(x) < 2:
            return
        if self._path is None:
            self._path = pg.arrayToQPath(x, y, connect="all" if np.isfinite(y).all() else "finite")
        pen = self.opts["pen"]
        exporting = self._exportOpts is not False
        p.setRenderHint(QPainter.RenderHint.Antialiasing,
                        bool(self._exportOpts.get("antialias", True)) if exporting else self.opts["antialias"])
        ratio = p.device().devicePixelRatioF() if p.device() is not None else 1.0
        if (not self.bold or exporting or self.opts["antialias"] or pen.widthF() != 2 or not pen.isCosmetic()
                or pen.style() != Qt.PenStyle.SolidLine or ratio != 1.0):
            p.setPen(pen)
            p.drawPath(self._path)
            return
        thin = QPen(pen)
        thin.setWidthF(1.0)
        p.setPen(thin)
        transform = p.worldTransform()
        for dx, dy in ((0, 0), (1, 0), (0, 1)):
            p.setWorldTransform(transform * QTransform.fromTranslate(dx, dy))
            p.drawPath(self._path)
        p.setWorldTransform(transform)
