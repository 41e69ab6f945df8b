"""Live training curves: loss (raw and smoothed), validation loss, learning rate on its own axis, gradient norm.

Plot items are created once; :meth:`CurvesWidget.refresh` pushes the :class:`~app.training.history.History`
columns with ``setData`` (the pane calls it at most ~10 times a second). Peak downsampling and clip-to-view keep a
100 000-point run smooth.

Auto range is held steady while a run grows: each view box holds an invisible two-point item spanning the data with
some headroom (``steady_range``), so pyqtgraph's auto range, which fits everything shown, changes only when the
data leaves that span. A range change rebuilds every axis and re-clips every curve: most of a redraw's cost, and it
came with every new step.
"""

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.theme import style_plots
from app.training.history import History

X_AXES = {"steps": ("step", "step"), "tokens": ("tokens", "tokens seen")}  # choice -> (column, axis label)
LEGEND_COLUMNS = 3
AXIS_WIDTH = 64  # px for tick labels plus the axis title
# room the held ranges leave past the data, as a share of its span (below, above): a run grows to the right, its loss
# falls
HEADROOM = {"x": (0.0, 0.25), "loss": (0.25, 0.05), "lr": (0.1, 0.1), "grad": (0.1, 0.1)}
COLORS = {
    "raw": (31, 119, 180, 120),
    "smooth": (31, 119, 180),
    "val": (214, 39, 40),
    "lr": (44, 160, 44),
    "grad": (148, 103, 189),
    "skipped": (255, 127, 14),
    "nonfinite": (200, 0, 0),
}


class CurvesWidget(QWidget):
    """The plots plus a small toolbar (x-axis choice, gradient-norm toggle, PNG/CSV export)."""

    sig_export_png = Signal()
    """The user asked for a PNG export (the pane picks the path)."""
    sig_export_csv = Signal()
    """The user asked for a CSV export."""

    def __init__(self, history: History, parent=None):
        super().__init__(parent)
        self.history = history
        self.x_axis = "steps"
        self._pinned = False  # ranges were set by hand for no or one point (see _fit_degenerate)

        self.x_choice = QComboBox()
        self.x_choice.addItem("steps", "steps")
        self.x_choice.addItem("tokens seen", "tokens")
        self.x_choice.setToolTip("Horizontal axis")
        self.x_choice.currentIndexChanged.connect(lambda _: self.set_x_axis(self.x_choice.currentData()))
        self.show_grad = QCheckBox("gradient norm")
        self.show_grad.setChecked(True)
        self.show_grad.toggled.connect(self._on_show_grad)
        png = QToolButton(text="PNG…")
        png.setToolTip("Export the plots as an image")
        png.clicked.connect(self.sig_export_png)
        csv = QToolButton(text="CSV…")
        csv.setToolTip("Export every point as CSV")
        csv.clicked.connect(self.sig_export_csv)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("x:"))
        bar.addWidget(self.x_choice)
        bar.addWidget(self.show_grad)
        bar.addStretch(1)
        bar.addWidget(QLabel("export"))
        bar.addWidget(png)
        bar.addWidget(csv)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        # the legend has a row of its own above the plots: inside them it covered lines and markers
        self.legend = pg.LegendItem(colCount=LEGEND_COLUMNS, labelTextColor=(40, 40, 40), frame=False)
        self.graphics.addItem(self.legend, row=0, col=0)
        self.loss_plot = self.graphics.addPlot(row=1, col=0, axisItems=_axes())
        self.grad_plot = self.graphics.addPlot(row=2, col=0, axisItems=_axes())
        layout = self.graphics.ci.layout
        layout.setRowStretchFactor(1, 3)
        layout.setRowStretchFactor(2, 1)
        self.grad_plot.setXLink(self.loss_plot)
        self.grad_plot.showAxis("right")
        self.grad_plot.getAxis("right").setStyle(showValues=False)
        for plot in (self.loss_plot, self.grad_plot):
            # no grid: pyqtgraph's axis grid costs ~20 ms per repaint, ten times the 100 000-point curves themselves
            plot.getAxis("left").setWidth(AXIS_WIDTH)  # the same widths line the two plots up, and leave the
            plot.getAxis("right").setWidth(AXIS_WIDTH)  # axis titles room beside the tick labels
            for name in ("left", "bottom", "right"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(90, 90, 90))
                axis.setTextPen(pg.mkPen(40, 40, 40))
        self.loss_plot.setLabel("left", "loss")
        self.grad_plot.setLabel("left", "grad norm")

        def line(plot, color, width=1.0, name=None, **kw):
            item = plot.plot(pen=pg.mkPen(color, width=width, **kw))
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            if name:
                self.legend.addItem(item, name)
            return item

        self.raw_curve = line(self.loss_plot, COLORS["raw"], name="training loss")
        self.smooth_curve = line(self.loss_plot, COLORS["smooth"], 2.0, name="smoothed")
        self.val_curve = self.loss_plot.plot(pen=pg.mkPen(COLORS["val"], width=2), symbol="o", symbolSize=6,
                                             symbolBrush=COLORS["val"], symbolPen=None)
        self.legend.addItem(self.val_curve, "validation loss")
        # event markers join the legend when the first one appears
        self.skipped_marks = pg.ScatterPlotItem(symbol="t", size=10, brush=pg.mkBrush(COLORS["skipped"]), pen=None)
        self.nonfinite_marks = pg.ScatterPlotItem(symbol="x", size=12, brush=pg.mkBrush(COLORS["nonfinite"]),
                                                  pen=pg.mkPen(COLORS["nonfinite"]))
        self._mark_names = {id(self.skipped_marks): "skipped AMP step", id(self.nonfinite_marks): "non-finite"}
        self._shown: dict[int, tuple] = {}  # per sparse item (evaluations, marks): the data it shows, in brief
        self.loss_plot.addItem(self.skipped_marks)
        self.loss_plot.addItem(self.nonfinite_marks)

        # learning rate: its own view box on the right axis, sharing x with the loss
        self.lr_view = pg.ViewBox()
        self.lr_view.setZValue(-100)  # under the loss plot and its legend
        self.loss_plot.showAxis("right")
        self.loss_plot.scene().addItem(self.lr_view)
        right = self.loss_plot.getAxis("right")
        right.linkToView(self.lr_view)
        right.enableAutoSIPrefix(False)  # "learning rate (x0.001)" over ticks 0 … 1 read wrong: ShortAxis writes 3e-4
        right.setLabel("learning rate", color="#2ca02c")
        self.lr_view.setXLink(self.loss_plot)
        self.lr_curve = pg.PlotDataItem(pen=pg.mkPen(COLORS["lr"], width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.lr_curve.setDownsampling(auto=True, method="peak")
        self.lr_curve.setClipToView(True)
        self.lr_view.addItem(self.lr_curve)
        self.legend.addItem(self.lr_curve, "learning rate")
        self.loss_plot.vb.sigResized.connect(self._sync_lr_view)

        self.grad_curve = line(self.grad_plot, COLORS["grad"])

        # the steady-range anchors: a transparent line counts in auto range, a hidden item would not
        self._anchors = {}
        for key, box in (("loss", self.loss_plot.vb), ("lr", self.lr_view), ("grad", self.grad_plot.vb)):
            self._anchors[key] = pg.PlotDataItem(pen=pg.mkPen(0, 0, 0, 0))
            box.addItem(self._anchors[key])
        self._steady: dict[str, tuple[float, float] | None] = {}  # per axis ("x", "loss", "lr", "grad"): its span

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.graphics, 1)
        style_plots(self.graphics)  # palette colours: readable in a dark theme too
        self.set_x_axis("steps")

    def _sync_lr_view(self) -> None:
        self.lr_view.setGeometry(self.loss_plot.vb.sceneBoundingRect())
        self.lr_view.linkedViewChanged(self.loss_plot.vb, self.lr_view.XAxis)

    def _on_show_grad(self, shown: bool) -> None:
        self.grad_plot.setVisible(shown)
        self.graphics.ci.layout.setRowStretchFactor(1, 1 if shown else 0)
        self.graphics.ci.layout.setRowMaximumHeight(1, 1e6 if shown else 0)

    def set_x_axis(self, choice: str) -> None:
        """Steps or tokens seen along the bottom."""
        if choice not in X_AXES:
            raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {choice!r}")
        self.x_axis = choice
        i = self.x_choice.findData(choice)
        if self.x_choice.currentIndex() != i:
            self.x_choice.setCurrentIndex(i)
        label = X_AXES[choice][1]
        self.loss_plot.setLabel("bottom", label)
        self.grad_plot.setLabel("bottom", label)
        self._pinned = False
        self._steady = {}
        self.loss_plot.enableAutoRange()
        self.grad_plot.enableAutoRange()
        self.refresh()

    def refresh(self) -> None:
        """Push the history into the plot items."""
        h = self.history
        xcol = X_AXES[self.x_axis][0]
        x = h.train.column(xcol)
        every_x = np.concatenate([x, h.evals.column(xcol)])
        self._fit_degenerate(every_x, np.concatenate([h.train.column("loss"), h.evals.column("val_loss")]))
        self._hold_ranges(every_x,
                          {"loss": (h.train.column("loss"), h.train.column("smooth"), h.evals.column("val_loss")),
                           "lr": (h.train.column("lr"),), "grad": (h.train.column("grad_norm"),)})
        self.raw_curve.setData(x, _finite(h.train.column("loss")))
        self.smooth_curve.setData(x, h.train.column("smooth"))
        self.lr_curve.setData(x, h.train.column("lr"))
        self.grad_curve.setData(x, _finite(h.train.column("grad_norm")))
        # the sparse items change a few times a run: setting one again re-packs its symbols and sends its view
        # through another auto-range pass, the most of a redraw's worst cases
        if self._changed(self.val_curve, h.evals, xcol):
            self.val_curve.setData(h.evals.column(xcol), h.evals.column("val_loss"))
        for marks, table in ((self.skipped_marks, h.skipped), (self.nonfinite_marks, h.nonfinite)):
            if not self._changed(marks, table, xcol):
                continue
            xs, ys = table.column(xcol), table.column("loss")
            ok = np.isfinite(xs) & np.isfinite(ys)
            marks.setData(xs[ok], ys[ok])
            name = self._mark_names.pop(id(marks), None) if ok.any() else None
            if name:
                self.legend.addItem(marks, name)

    def _hold_ranges(self, x: np.ndarray, ys: dict) -> None:
        """Move each anchor only when its data left the span it marks (see the module's note)."""
        spans = {"x": None if self._pinned else _finite_span(x)}
        for key, columns in ys.items():
            spans[key] = None if spans["x"] is None else _finite_span(np.concatenate(columns))
        steady = {key: steady_range(span, self._steady.get(key), *HEADROOM[key]) for key, span in spans.items()}
        x_moved = steady["x"] != self._steady.get("x")
        for key, anchor in self._anchors.items():
            if not x_moved and steady[key] == self._steady.get(key):
                continue
            if steady["x"] is None or steady[key] is None:
                anchor.setData([], [])
            else:
                anchor.setData(list(steady["x"]), list(steady[key]))
        self._steady = steady

    def _changed(self, item, table, xcol: str) -> bool:
        """Whether table differs from what item was last given: its length, x axis and last row (tables only grow,
        shrink or are cleared, so a change shows there)."""
        last = np.array([table.column(name)[-1] for name in table.names]) if len(table) else np.empty(0)
        key = (xcol, len(table), last.tobytes())  # bytes: a NaN in the row compares equal to itself
        if self._shown.get(id(item)) == key:
            return False
        self._shown[id(item)] = key
        return True

    def _fit_degenerate(self, x: np.ndarray, y: np.ndarray) -> None:
        """Ranges where autorange has nothing sensible to do: no points (a run that failed to start leaves the plots
        empty at 0..10 steps, not at the last run's range) or one x or y value (one point gave -150 … 150)."""
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        plots = (self.loss_plot, self.grad_plot)
        if not len(x):
            for plot in plots:
                plot.setRange(xRange=(0, 10), yRange=(0, 1), padding=0.02)
            self._pinned = True
            return
        x_lo, x_hi, y_lo, y_hi = x.min(), x.max(), y.min(), y.max()
        if x_lo == x_hi or y_lo == y_hi:
            x_pad = max(abs(x_lo) * 0.1, 5.0) if x_lo == x_hi else 0.02 * (x_hi - x_lo)
            y_pad = max(abs(y_lo) * 0.1, 0.1) if y_lo == y_hi else 0.05 * (y_hi - y_lo)
            self.loss_plot.setRange(xRange=(max(0.0, x_lo - x_pad), x_hi + x_pad),
                                    yRange=(y_lo - y_pad, y_hi + y_pad), padding=0.02)
            self._pinned = True
        elif self._pinned:  # enough points again: back to following the data
            self._pinned = False
            for plot in plots:
                plot.enableAutoRange()

    def export_png(self, path: str, width: int = 1600) -> None:
        """The plots as they are on screen, drawn at ``width`` pixels: text, lines and legend scale together (the
        scene exporter enlarged the axis labels and left the legend at its screen size, unreadably small)."""
        from PySide6.QtCore import QRectF
        from PySide6.QtGui import QImage, QPainter

        view = self.graphics
        w, h = max(1, view.viewport().width()), max(1, view.viewport().height())
        scale = max(1.0, width / w)
        image = QImage(round(w * scale), round(h * scale), QImage.Format.Format_ARGB32)
        image.setDevicePixelRatio(scale)  # drawn as on screen, with `scale` pixels per screen pixel
        image.fill(view.backgroundBrush().color())
        painter = QPainter(image)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            view.scene().render(painter, QRectF(0, 0, w, h), view.mapToScene(view.viewport().rect()).boundingRect())
        finally:
            painter.end()
        if not image.save(str(path), "PNG"):
            raise OSError(f"cannot write a PNG image to {path}")

    def save_settings(self, s) -> None:
        s.setValue("curves/x_axis", self.x_axis)
        s.setValue("curves/show_grad", self.show_grad.isChecked())

    def restore_settings(self, s) -> None:
        from app.settings import read

        choice = read(s, "curves/x_axis", "steps")
        self.set_x_axis(choice if choice in X_AXES else "steps")
        self.show_grad.setChecked(read(s, "curves/show_grad", True))


class CountAxis(pg.AxisItem):
    """Steps and tokens: whole numbers only (no tick at step 2.5), written short (12k, 1.5M)."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph's name
        levels = super().tickValues(minVal, maxVal, size)
        whole = [(spacing, [v for v in values if float(v).is_integer()]) for spacing, values in levels
                 if spacing >= 1]
        return whole or [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [count_label(v * scale) for v in values]


class ShortAxis(pg.AxisItem):
    """Values of very different sizes (a learning rate) in at most five characters: 3e-4, 0.001, 12."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [f"{v * scale:.2g}" if v else "0" for v in values]


def _axes() -> dict:
    return {"bottom": CountAxis("bottom"), "right": ShortAxis("right")}


def count_label(v: float) -> str:
    """A tick label for a count.

    >>> [count_label(v) for v in (0, 250, 12_000, 1_500_000, 2e9)]
    ['0', '250', '12k', '1.5M', '2G']
    """
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.4g}{suffix}"
    return f"{v:.0f}"


def _finite_span(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def steady_range(span: tuple[float, float] | None, held: tuple[float, float] | None, below: float,
                 above: float) -> tuple[float, float] | None:
    """The range to mark for data spanning ``span``: ``held`` while the data stays inside it and fills at least half
    of it, else the span with ``below`` and ``above`` of its width added (a flat span: of its size, or 1).

    >>> steady_range((0.0, 100.0), None, 0.0, 0.25)
    (0.0, 125.0)
    >>> steady_range((0.0, 120.0), (0.0, 125.0), 0.0, 0.25)  # still inside: held
    (0.0, 125.0)
    >>> steady_range((0.0, 130.0), (0.0, 125.0), 0.0, 0.25)
    (0.0, 162.5)
    """
    if span is None:
        return None
    lo, hi = span
    if held is not None and held[0] <= lo and hi <= held[1] and hi - lo >= 0.5 * (held[1] - held[0]):
        return held
    width = hi - lo or abs(hi) or 1.0
    return (lo - below * width, hi + above * width)


def _finite(y: np.ndarray) -> np.ndarray:
    """Non-finite values (a diverged step) become NaN, which pyqtgraph leaves as a gap instead of breaking autorange."""
    return y if np.isfinite(y).all() else np.where(np.isfinite(y), y, np.nan)
