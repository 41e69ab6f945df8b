"""Overlaid training curves of several runs: one colour per run, named in a legend beside the plot (never over the
data); x in steps, tokens or wall time; log-scale y; TensorBoard's debiased smoothing; hover shows every run's value.

Plot items are made once per run and fed only when their data changed; each line holds all its points and draws, once
per frame, what the view's pixel columns can show (:class:`app.experiments.lines.DecimatedLine`: each column's max
and min, or mean, from block reductions kept between data changes), the evaluations of every run are one item, and
smoothing continues from where it was when points are appended (:class:`engine.experiments.curves.Smoother`). Ten
runs of 100 000 points: ``bench/bench_overlay.py``.
"""

import csv
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSizePolicy, QSlider, QToolBar, QVBoxLayout, QWidget

from app.experiments.lines import DecimatedLine
from app.theme import hint_color, style_plots
from engine.experiments.curves import RunCurves, Smoother, ema, value_at

X_AXES = {"steps": "step", "tokens": "tokens seen", "time": "wall time (s)"}
# tab10: distinct in light and dark palettes, and what TensorBoard and matplotlib users know
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
SMOOTHING_STEPS = 100  # the slider's resolution: weight = value / 100, 0 .. 0.99


class _Cursor(pg.InfiniteLine):
    """The hover line. pyqtgraph tells the ViewBox of every move of an item, even one added with ignoreBounds; the
    ViewBox then works out its auto range again and repaints the whole plot, every curve, at each pointer move.
    The line's bounds never matter to the view: only the strips it leaves and enters are repainted."""

    def informViewBoundsChanged(self):  # noqa: N802 - pyqtgraph override
        pass


class _RunItems:
    """The plot items of one run: faint raw loss, smoothed loss (in the legend), and what they show.

    Both lines are drawn at the view's resolution, one pixel column at a time: the raw one keeps each column's max
    and min ("peak"), so a spike stays drawn at any zoom; the smoothed one draws each column's mean, a line through
    the raw band (the raw line under it keeps the spikes), and with no smoothing, when it is the raw line itself, its
    peaks. Data is set again only when it changed: a new weight re-smooths, new
    points smooth only what was appended. Every line is under the validation points, and every raw line under every
    smoothed one.
    """

    def __init__(self, plot, color, name: str, background: QColor):
        # the faint raw curve is an opaque mix with the background: alpha-blended lines cost 4x as much to paint
        faint = tuple(round(0.3 * c + 0.7 * b) for c, b in zip(color, background.getRgb()[:3]))
        self.raw = DecimatedLine(pg.mkPen(faint, width=1), "peak")
        self.raw.setZValue(-1)  # under every run's smoothed line
        self.smooth = DecimatedLine(pg.mkPen(color, width=2), "mean", bold=True)
        for item in (self.raw, self.smooth):
            plot.addItem(item)
        self.smoother: Smoother | None = None
        self.smoothed = np.empty(0)
        self.curves: RunCurves | None = None  # what the lines show, on x axis self.x_axis
        self.x_axis = ""

    def draw(self, curves: RunCurves, x_axis: str, weight: float) -> None:
        """Show these curves on this x axis with this smoothing; what is already shown is not set again."""
        new_data = curves is not self.curves or x_axis != self.x_axis
        new_weight = self.smoother is None or weight != self.smoother.weight
        if new_weight:
            if self.smoother is None:
                self.smoother = Smoother(weight)
            else:  # the values it holds are smoothed again, without another copy of them
                self.smoother.set_weight(weight)
            self.smooth.set_method("mean" if weight > 0 else "peak")
            self.raw.setVisible(weight > 0)  # with no smoothing the smoothed curve is the raw one
        if not (new_data or new_weight):
            return
        x = curves.x(x_axis)
        if new_data:
            self.raw.set_data(x, curves.loss)
        # the same curves (a new weight or x axis): the smoother holds their values, no need to compare them again
        self.smoothed = self.smoother.smooth(curves.loss) if curves is not self.curves else self.smoother.smoothed
        self.smooth.set_data(x, self.smoothed, fresh=new_weight, within=self.raw)
        self.curves, self.x_axis = curves, x_axis

    def items(self):
        return self.raw, self.smooth


class OverlayPlot(QWidget):
    """Curves of several runs in one plot. Feed it with :meth:`set_runs`; export with :meth:`export_png` / _csv."""

    sig_export_png = Signal()
    """The user asked for a PNG of the comparison (the owner picks the path)."""
    sig_export_csv = Signal()
    """The user asked for a CSV of the comparison."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.x_axis = "steps"
        self.weight = 0.6  # TensorBoard's default smoothing
        self.runs: dict[str, RunCurves] = {}  # name -> curves, in legend order
        self._items: dict[str, _RunItems] = {}
        self._colors: dict[str, tuple] = {}

        self.x_choice = QComboBox()
        for key, label in X_AXES.items():
            self.x_choice.addItem(label.replace(" (s)", ""), key)
        self.x_choice.setToolTip("Horizontal axis")
        self.x_choice.currentIndexChanged.connect(lambda _: self.set_x_axis(self.x_choice.currentData()))
        self.log_y = QCheckBox("log y")
        self.log_y.toggled.connect(self.set_log_y)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SMOOTHING_STEPS - 1)
        self.slider.setValue(round(self.weight * SMOOTHING_STEPS))
        self.slider.setToolTip("Smoothing: exponential moving average, debiased like TensorBoard's")
        self.slider.setMinimumWidth(80)
        self.slider.valueChanged.connect(lambda v: self.set_smoothing(v / SMOOTHING_STEPS))
        self.smoothing_label = QLabel()
        self.smoothing_label.setMinimumWidth(self.smoothing_label.fontMetrics().horizontalAdvance("0.00") + 4)
        bar = QToolBar()  # what does not fit a narrow window goes behind its » menu
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.addWidget(QLabel("x: "))
        bar.addWidget(self.x_choice)
        bar.addWidget(self.log_y)
        bar.addWidget(QLabel(" smoothing "))
        bar.addWidget(self.slider)
        bar.addWidget(self.smoothing_label)
        for text, tip, slot in (("Reset zoom", "Show all the data again (drag or wheel to zoom, right-drag to stretch)",
                                 self.reset_zoom),
                                ("PNG…", "Export the comparison as an image", self.sig_export_png),
                                ("CSV…", "Export every run's points (raw and smoothed) as CSV", self.sig_export_csv)):
            action = bar.addAction(text)
            action.setToolTip(tip)
            action.triggered.connect(slot)

        self.hover = QLabel(" ")  # above the plot, so it never covers a curve
        self.hover.setTextFormat(Qt.TextFormat.RichText)
        self.hover.setWordWrap(True)
        self.hover.setStyleSheet(f"color: {hint_color(self)};")

        self.graphics = pg.GraphicsLayoutWidget()
        self.plot = self.graphics.addPlot(row=0, col=0)
        self.plot.setLabel("left", "training loss")
        self.plot.getAxis("left").setWidth(52)
        # the legend is a cell of its own right of the plot: it can never sit on the data
        self.legend = pg.LegendItem(offset=None, labelTextColor=(40, 40, 40))
        self.legend.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)  # rows stay together
        self.graphics.addItem(self.legend, row=0, col=1)
        self.graphics.ci.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignTop)
        self.graphics.ci.layout.setColumnStretchFactor(0, 1)
        self.graphics.ci.layout.setColumnStretchFactor(1, 0)
        # every run's evaluations in one item: it paints in a tenth of the time ten items take
        self.val_points = self.plot.plot(pen=None, symbol="o", symbolSize=6, symbolPen=None)
        self.val_points.setZValue(1)
        # its points are set only when they change: not again for each new y range (their own positions are far
        # from any coordinate too large to paint, which is what dynamicRangeLimit guards the lines against)
        self.val_points.setDynamicRangeLimit(None)
        self._val_shown: tuple = ()  # (x axis, [(name, eval x, val loss) of every run]) the points show
        self.cursor = _Cursor(angle=90, movable=False, pen=pg.mkPen(128, 128, 128, 160, width=1))
        self.cursor.setVisible(False)
        self.plot.addItem(self.cursor, ignoreBounds=True)
        self._hover_proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(bar)
        layout.addWidget(self.hover)
        layout.addWidget(self.graphics, 1)
        style_plots(self.graphics)
        self._update_smoothing_label()
        self.set_x_axis("steps")

    # ---- data ----------------------------------------------------------------------------------------------------
    def color(self, name: str) -> tuple:
        """The run's colour: kept while it stays shown, the first free one for a new run."""
        if name not in self._colors:
            used = set(self._colors.values())
            free = [c for c in COLORS if c not in used]
            self._colors[name] = free[0] if free else COLORS[len(self._colors) % len(COLORS)]
        return self._colors[name]

    def set_runs(self, runs: dict) -> None:
        """Show exactly these runs ({name: RunCurves}, in legend order); unchanged ones keep their items."""
        for name in [n for n in self._items if n not in runs]:
            for item in self._items.pop(name).items():
                self.plot.removeItem(item)
            self._colors.pop(name, None)
        for name in runs:
            if name not in self._items:
                self._items[name] = _RunItems(self.plot, self.color(name), name,
                                              self.palette().color(QPalette.ColorRole.Base))
        self._items = {name: self._items[name] for name in runs}  # the legend lists them in this order
        self.runs = dict(runs)
        self._rebuild_legend()
        self.refresh()

    def update_run(self, name: str, curves: RunCurves) -> None:
        """New points for a shown run (a live one)."""
        if name in self.runs:
            self.runs[name] = curves
            self._items[name].draw(curves, self.x_axis, self.weight)
            self._draw_evaluations()

    def _rebuild_legend(self) -> None:
        self.legend.clear()
        for name, items in self._items.items():
            self.legend.addItem(items.smooth, name)
        style_plots(self.graphics)

    # ---- drawing -------------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring every item up to the runs, x axis and smoothing (each sets again only what changed)."""
        for name, curves in self.runs.items():
            self._items[name].draw(curves, self.x_axis, self.weight)
        self._draw_evaluations()

    def _draw_evaluations(self) -> None:
        """Every run's validation points, in its colour; set again only when one of them changed (a live run's
        new steps mostly bring no new evaluation)."""
        shown = [(name, c.x(self.x_axis, evals=True), c.val_loss) for name, c in self.runs.items()]
        axis, before = self._val_shown or ("", [])
        if axis == self.x_axis and len(shown) == len(before) and all(
                a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2], equal_nan=True)
                for a, b in zip(shown, before)):
            return
        self._val_shown = (self.x_axis, shown)
        if not shown:
            self.val_points.setData([], [])
            return
        brushes = {name: pg.mkBrush(self.color(name)) for name, _, _ in shown}
        self.val_points.setData(np.concatenate([x for _, x, _ in shown]), np.concatenate([y for _, _, y in shown]),
                                symbolBrush=[brushes[name] for name, x, _ in shown for _ in range(len(x))])

    def smoothed_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of a run's smoothed curve as drawn."""
        x, y = self._items[name].smooth.getData()
        return (np.empty(0), np.empty(0)) if x is None else (x, y)

    def curve_items(self, name: str) -> tuple:
        """A run's line items (raw and smoothed loss), e.g. for a benchmark to draw every point of them."""
        items = self._items[name]
        return items.raw, items.smooth

    def legend_names(self) -> list[str]:
        return [label.text for _, label in self.legend.items]

    def set_x_axis(self, choice: str) -> None:
        if choice not in X_AXES:
            raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {choice!r}")
        self.x_axis = choice
        i = self.x_choice.findData(choice)
        if self.x_choice.currentIndex() != i:
            self.x_choice.setCurrentIndex(i)
        self.plot.setLabel("bottom", X_AXES[choice])
        self.refresh()
        self.reset_zoom()

    def set_log_y(self, on: bool) -> None:
        if self.log_y.isChecked() != on:
            self.log_y.setChecked(on)
        self.plot.setLogMode(x=False, y=on)
        self.reset_zoom()

    def set_smoothing(self, weight: float) -> None:
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {weight}")
        self.weight = weight
        value = round(weight * SMOOTHING_STEPS)
        if self.slider.value() != value:
            self.slider.blockSignals(True)  # else valueChanged would smooth everything a second time
            self.slider.setValue(value)
            self.slider.blockSignals(False)
        self._update_smoothing_label()
        self.refresh()

    def _update_smoothing_label(self) -> None:
        self.smoothing_label.setText(f"{self.weight:.2f}")

    def reset_zoom(self) -> None:
        self.plot.enableAutoRange()

    # ---- hover ---------------------------------------------------------------------------------------------------
    def _on_mouse(self, event) -> None:
        pos = event[0]
        if not self.plot.sceneBoundingRect().contains(pos):
            return
        self.show_values_at(self.plot.vb.mapSceneToView(pos).x())

    def values_at(self, x: float) -> list[tuple[str, float, float, float]]:
        """(run, x of its nearest point, smoothed loss, raw loss) for every shown run with points."""
        out = []
        for name, curves in self.runs.items():
            xs = curves.x(self.x_axis)
            hit = value_at(xs, self._items[name].smoothed, x)
            if hit is not None:
                i = min(int(np.searchsorted(xs, hit[0])), len(xs) - 1)
                out.append((name, hit[0], hit[1], float(curves.loss[i])))
        return out

    def show_values_at(self, x: float) -> str:
        """Put the hover line at x and list every run's value there; returns the text shown."""
        rows = self.values_at(x)
        self.cursor.setPos(x)
        self.cursor.setVisible(bool(rows))
        unit = {"steps": "step", "tokens": "tokens", "time": "s"}[self.x_axis]
        parts = []
        for name, at, smooth, raw in rows:
            r, g, b = self.color(name)
            where = f"{at:,.0f}" if self.x_axis != "time" else f"{at:,.1f}"
            parts.append(f"<span style='color:rgb({r},{g},{b})'>■</span> {name} {_fmt(smooth)}"
                         + (f" (raw {_fmt(raw)})" if self.weight > 0 else "") + f" @ {unit} {where}")
        text = " · ".join(parts) or " "
        self.hover.setText(text)
        return text

    # ---- export --------------------------------------------------------------------------------------------------
    def export_png(self, path: str, width: int = 1600) -> None:
        from pyqtgraph.exporters import ImageExporter

        exporter = ImageExporter(self.graphics.scene())
        exporter.parameters()["width"] = width
        exporter.export(str(path))

    def export_csv(self, path: str) -> int:
        """One row per run and logged step (validation loss on its evaluation's step) -> rows written."""
        n = 0
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "step", "tokens_seen", "seconds", "loss", "loss_smoothed", "val_loss"])
            for name, c in self.runs.items():
                smoothed = ema(c.loss, self.weight)
                rows = {int(s): [int(t), _cell(sec), _cell(loss), _cell(sm), ""]
                        for s, t, sec, loss, sm in zip(c.step, c.tokens, c.seconds, c.loss, smoothed)}
                for s, t, sec, val in zip(c.eval_step, c.eval_tokens, c.eval_seconds, c.val_loss):
                    rows.setdefault(int(s), [int(t), _cell(sec), "", "", ""])[4] = _cell(val)
                for step in sorted(rows):
                    writer.writerow([name, step, *rows[step]])
                    n += 1
        return n


def _fmt(y: float) -> str:
    return "–" if not math.isfinite(y) else f"{y:.4f}"


def _cell(x) -> str:
    x = float(x)
    return "" if math.isnan(x) else repr(x)
