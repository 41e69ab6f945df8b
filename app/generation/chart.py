"""The next-token probability chart: horizontal bars, one row per token, and a strip showing where the last draw fell.

Each row shows the model's raw probability (outlined bar) and the probability after the decoding controls (solid
bar). Tokens a stage removed are hatched grey and say which stage cut them; a dashed line marks the end of the top-p
nucleus. Clicking a row (bar or label) asks to force that token next. Items are created once; a redraw only pushes
new data into them.
"""

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QCursor, QFont, QFontDatabase, QFontMetrics, QPalette, QTransform
from PySide6.QtWidgets import QLabel, QToolTip, QVBoxLayout, QWidget

from app.generation.distribution import STAGE_TITLES, ChartData, number_format, percent
from app.theme import is_dark

RAW_PEN = QColor(70, 90, 120)
RAW_PEN_DARK = QColor(140, 165, 200)  # the raw outline on a dark base: the light theme's slate would vanish there
AFTER_BRUSH = QColor(52, 101, 164)
CUT_COLOR = QColor(150, 150, 150)
DRAWN_COLOR = QColor(230, 120, 20)
CUTOFF_COLOR = QColor(200, 40, 40)
STRIP_COLORS = (QColor(52, 101, 164), QColor(114, 159, 207))
MAX_LABEL = 18  # characters of a token label on the axis
STRIP_LABEL_MIN = 0.04  # slices of the last-draw strip at least this wide show their token
STRIP_GAP = 4  # px between the "u = …" label and the bars below it, and the strip's top edge above it


class ProbabilityAxis(pg.AxisItem):
    """A probability axis: no ticks past the largest value (the view reaches past the top bar to leave room for its
    label): 1 for probabilities, 0 for log-probabilities."""

    limit = 1.0
    log = False
    fmt = None  # the chart's number format for its bar labels, so the ticks read the same way

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph override
        return [(spacing, [v for v in values if v <= self.limit + 1e-9])
                for spacing, values in super().tickValues(minVal, maxVal, size)]

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph override
        """pyqtgraph's tick levels whose labels stand apart, else its major spacing widened (1, 2, 5 × 10^n) until
        they do: its choice assumes short labels, and "0.001%" ticks ran into each other on a 900-pixel window."""
        levels = super().tickSpacing(minVal, maxVal, size)
        span = maxVal - minVal
        if not levels or span <= 0 or size <= 0 or self.orientation not in ("bottom", "top"):
            return levels
        metrics = QFontMetrics(self.style.get("tickFont") or self.font())
        gap = metrics.horizontalAdvance("  ")

        def apart(spacing: float) -> bool:
            first = np.ceil(minVal / spacing) * spacing
            values = [float(v) for v in np.arange(first, min(maxVal, self.limit) + spacing * 1e-6, spacing)]
            widest = max((metrics.horizontalAdvance(t) for t in self.tickStrings(values, 1, spacing)), default=0)
            return spacing * size / span >= widest + gap

        fitting = [level for level in levels if apart(level[0])]
        if fitting:
            return fitting
        spacing = levels[0][0]
        for _ in range(8):
            spacing = _wider(spacing)
            if apart(spacing):
                break
        return [(spacing, 0)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph override
        """Probabilities in the labels' own format (percent, or scientific for tiny ones); ln p as plain numbers."""
        if self.log:
            return [f"{v:g}" for v in values]
        fmt = self.fmt or number_format([v for v in values if v > 0])
        return [fmt(v) if v > 0 else "0" for v in values]


def _wider(spacing: float) -> float:
    """The next tick spacing of the 1, 2, 5 × 10^n series above spacing."""
    power = 10.0 ** np.floor(np.log10(spacing))
    mantissa = spacing / power
    return float(power * (2 if mantissa < 1.5 else 5 if mantissa < 3.5 else 10))


def raw_pen(widget) -> QColor:
    """The colour of the raw bars' outline, readable on the widget's base colour."""
    return RAW_PEN_DARK if is_dark(widget) else RAW_PEN


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


class ProbabilityChart(QWidget):
    """Bars for the next-token distribution; ``set_data`` redraws, ``set_draw`` updates the last-draw strip."""

    sig_token_clicked = Signal(int)
    """A row was clicked: the token id to force as the next token."""
    sig_rows_fit_changed = Signal()
    """The plot was resized (a banner appeared, the user dragged a splitter) and a different number of rows fits:
    the owner should redraw, or the rows it drew would overlap or leave the plot half empty."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: ChartData | None = None
        self.log_scale = False  # bars show natural log-probabilities instead of probabilities
        self.header = QLabel(self)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.view = pg.GraphicsLayoutWidget(self)
        self.view.setBackground(self.palette().color(QPalette.ColorRole.Base))
        self.view.ci.setSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.view, 1)

        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._mono = mono
        text_color = self.palette().color(QPalette.ColorRole.Text)
        self._text_color = text_color

        self.plot = self.view.addPlot(row=0, col=0, axisItems={"bottom": ProbabilityAxis("bottom")})
        self._setup_plot(self.plot, text_color)
        self.plot.invertY(True)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.vb.sigTransformChanged.connect(self._on_view_transform)
        left = self.plot.getAxis("left")
        left.setStyle(tickFont=mono, tickLength=0)
        left.setWidth(_label_width(mono, MAX_LABEL + 2))
        self.raw_bars = pg.BarGraphItem(x0=[], y=[], height=0.8, width=[], pen=pg.mkPen(raw_pen(self), width=1.2),
                                        brush=None)
        self.cut_bars = pg.BarGraphItem(x0=[], y=[], height=0.8, width=[], pen=pg.mkPen(CUT_COLOR, width=1),
                                        brush=self._hatch())
        self.after_bars = pg.BarGraphItem(x0=[], y=[], height=0.5, width=[], pen=None, brush=AFTER_BRUSH)
        for item in (self.cut_bars, self.raw_bars, self.after_bars):
            self.plot.addItem(item)
        dashed = pg.mkPen(CUTOFF_COLOR, width=1.5, style=Qt.PenStyle.DashLine)
        self.cutoff = pg.InfiniteLine(angle=0, movable=False, pen=dashed, label="",
                                      labelOpts={"position": 0.98, "color": CUTOFF_COLOR, "anchors": [(1, 0), (1, 0)]})
        self.plot.addItem(self.cutoff)
        dotted = pg.mkPen(CUT_COLOR, width=1, style=Qt.PenStyle.DotLine)
        self.extra_line = pg.InfiniteLine(angle=0, movable=False, pen=dotted)  # above the rows outside the top N
        self.plot.addItem(self.extra_line)
        self._texts: list[pg.TextItem] = []
        self._ticks: list = []  # the left axis's (row, label) ticks
        self._bars_shown: dict = {}  # bar item -> the options last given to it
        self._label_shown: dict[int, tuple] = {}  # row -> the (text, colour) its value label shows
        self.message = pg.TextItem("", color=text_color, anchor=(0.5, 0.5))
        self.plot.addItem(self.message)
        self.plot.vb.sigResized.connect(self._wrap_message)
        self._rows_fit = 0
        self.plot.vb.sigResized.connect(self._on_plot_resized)

        self.view.nextRow()
        self.strip = self.view.addPlot(row=1, col=0)
        self._setup_plot(self.strip, text_color)
        bottom = self.strip.getAxis("bottom")
        base = self.palette().color(QPalette.ColorRole.Base)
        self.u_label = pg.TextItem("u = 0.000", color=text_color, anchor=(0.5, 1), fill=base,
                                   border=pg.mkPen(DRAWN_COLOR, width=1))
        self.u_label.textItem.document().setDocumentMargin(2)  # Qt's 4 px would make the box needlessly tall
        label = int(self.u_label.boundingRect().height())
        self._strip_band = label + 2 * STRIP_GAP  # px above the bars for the "u = …" label, a gap on each side
        strip_height = self._strip_band + label + STRIP_GAP + bottom.height()  # the bars as tall as the label
        self.strip.setMinimumHeight(strip_height)
        self.strip.setMaximumHeight(strip_height)
        self.strip.hideAxis("left")
        bottom.setTicks([[(v, f"{v:g}") for v in (0, 0.25, 0.5, 0.75, 1)]])
        self.strip.setXRange(0, 1, padding=0.01)
        self.strip.getAxis("left").setWidth(left.width())
        self.strip_bars = pg.BarGraphItem(x0=[], y0=0.0, height=1.0, width=[], pen=None, brush=CUT_COLOR)
        self.strip.addItem(self.strip_bars)
        self._strip_texts: list[pg.TextItem] = []
        self.u_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(DRAWN_COLOR, width=2))
        self.strip.addItem(self.u_line)
        self.strip.addItem(self.u_label)
        self.strip.vb.sigResized.connect(self._place_u_label)
        self.strip_title = QLabel(self)
        self.strip_title.setTextFormat(Qt.TextFormat.RichText)
        self.strip_title.setWordWrap(True)
        layout.addWidget(self.strip_title)
        self.set_draw(None)

        self.view.scene().sigMouseClicked.connect(self._on_click)
        self.view.scene().sigMouseMoved.connect(self._on_hover)
        self.show_message("No model loaded yet")

    @staticmethod
    def _setup_plot(plot, text_color):
        plot.setMouseEnabled(False, False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setTextPen(text_color)
            axis.setPen(text_color)

    def _hatch(self) -> QBrush:
        """Diagonal hatching for cut bars, drawn at screen scale (a pattern brush would stretch with the data)."""
        brush = QBrush(CUT_COLOR, Qt.BrushStyle.BDiagPattern)
        if hasattr(self, "plot"):
            px, py = self.plot.vb.viewPixelSize()
            if px > 0 and py > 0:
                brush.setTransform(QTransform.fromScale(px, py))
        return brush

    def _wrap_message(self, *_):
        """Wrap the message to the plot's width: a long error on one line would be cut off at both ends."""
        self.message.setTextWidth(max(120.0, self.plot.vb.width() - 24))

    def _on_plot_resized(self, *_):
        rows = self.rows_that_fit()
        if rows != self._rows_fit:
            self._rows_fit = rows
            if self.data is not None:
                self.sig_rows_fit_changed.emit()

    def _on_view_transform(self, *_):
        if self.data is not None:
            self.cut_bars.setOpts(brush=self._hatch())

    # ---- drawing -----------------------------------------------------------------------------------------------
    def show_message(self, text: str):
        """Empty the chart and show a line of text in its middle (no model, no prompt, an error)."""
        self.data = None
        for item in (self.raw_bars, self.cut_bars, self.after_bars):
            self._set_bars(item, x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0))
        for t in self._texts:
            t.setVisible(False)
        self.cutoff.setVisible(False)
        self.extra_line.setVisible(False)
        self.plot.getAxis("left").setTicks([[]])
        self._ticks = []
        self.plot.setXRange(0, 1, padding=0)
        self.plot.setYRange(0, 1, padding=0)
        self.message.setText(text)
        self._wrap_message()
        self.message.setPos(0.5, 0.5)
        self.message.setVisible(True)
        self.header.setText("")

    def rows_that_fit(self) -> int:
        """How many rows the plot can show without their labels overlapping (at least 3)."""
        line = QFontMetrics(self._mono).height()
        return max(3, int(self.plot.vb.height() // line)) if self.plot.vb.height() > 0 else 40

    def set_data(self, data: ChartData, header: str = ""):
        self.data = data
        rows = data.rows
        n = len(rows)
        self.message.setVisible(False)
        y = np.arange(n, dtype=float)
        raw = np.array([r.raw for r in rows])
        final = np.array([r.final for r in rows])
        cut = np.array([bool(r.cut_by) for r in rows])
        pre_cut = np.array([r.pre_cut for r in rows])
        fmt = number_format([v for r in rows for v in (r.raw, r.final, r.pre_cut)], log=self.log_scale)
        if self.log_scale:  # bars from a floor below the least likely row to log p: longer is still likelier
            def to_x(p):
                return np.log(np.maximum(p, 1e-45))
            shown = [v for v in np.concatenate([raw, final, pre_cut]) if v > 0]
            floor = float(np.log(min(shown))) * 1.08 - 0.5 if shown else -10.0
            x = {name: np.where(v > 0, to_x(v) - floor, 0.0) for name, v in
                 (("raw", raw), ("final", final), ("pre", pre_cut))}
            origin, top_end = floor, 0.0
        else:
            x = {"raw": raw, "final": final, "pre": pre_cut}
            origin, top_end = 0.0, max(float(raw.max(initial=0)), float(final.max(initial=0)),
                                       float(pre_cut.max(initial=0)), 1e-6)
        self._set_bars(self.raw_bars, x0=np.full(n, origin), y=y, width=x["raw"])
        self._set_bars(self.cut_bars, x0=np.full(int(cut.sum()), origin), y=y[cut], width=x["pre"][cut])
        self._set_bars(self.after_bars, x0=np.full(n, origin), y=y, width=x["final"])

        span = top_end - origin
        texts: list[str] = []
        while len(self._texts) < n:
            item = pg.TextItem("", anchor=(0, 0.5))
            self.plot.addItem(item)
            self._texts.append(item)
        for i, item in enumerate(self._texts):
            if i >= n:
                item.setVisible(False)
                continue
            r = rows[i]
            if r.cut_by:
                text = f"{fmt(r.pre_cut)} before {STAGE_TITLES.get(r.cut_by, r.cut_by)} cut it"
                color = CUT_COLOR
            else:
                text, color = f"{fmt(r.final)}  (raw {fmt(r.raw)})", self._text_color
            if (text, color) != self._label_shown.get(i):  # a label set again is laid out and painted again
                item.setText(text, color=color)
                self._label_shown[i] = (text, color)
            texts.append(text)
            item.setPos(origin + max(x["raw"][i], x["final"][i], x["pre"][i]) + span * 0.01, i)
            item.setVisible(True)

        ticks = [(i, _short(r.label) if not r.extra else "⋯ " + _short(r.label)) for i, r in enumerate(rows)]
        if ticks != self._ticks:  # a control change keeps the rows: laying out their labels again is ~1/3 of a paint
            self.plot.getAxis("left").setTicks([ticks])
            self._ticks = ticks
        axis = self.plot.getAxis("bottom")
        axis.limit = top_end
        axis.log = self.log_scale
        axis.fmt = None if self.log_scale else fmt
        axis.setLabel("ln p" if self.log_scale else "")  # the scale box above says what the bars are
        self.plot.setXRange(origin, origin + span * self._room_for_labels(texts), padding=0)
        self.plot.setYRange(-0.6, n - 0.4, padding=0)

        if data.top_p_row is not None:
            info = data.top_p_info
            mass = info.get("cumulative_at_cutoff")
            text = "top-p nucleus ends" + (f" (Σ = {mass:.3f})" if mass is not None else "")
            self.cutoff.setPos(data.top_p_row - 0.5)
            self.cutoff.label.setFormat(text)
            self.cutoff.setVisible(True)
        else:
            self.cutoff.setVisible(False)
        n_extra = sum(r.extra for r in rows)
        self.extra_line.setVisible(n_extra > 0)
        self.extra_line.setPos(n - n_extra - 0.5)
        self.header.setText(header)

    def _set_bars(self, item: pg.BarGraphItem, **opts):
        """setOpts unless nothing changed: a control change leaves the raw bars as they were, and pyqtgraph would
        record their picture again."""
        shown = self._bars_shown.get(item)
        if shown is None or any(not np.array_equal(shown[k], v) for k, v in opts.items()):
            item.setOpts(**opts)
            self._bars_shown[item] = opts

    def _room_for_labels(self, texts: list[str]) -> float:
        """How far past the longest bar the x range must reach (a multiple of it) for its value label to fit."""
        width = self.plot.vb.width()
        if width <= 0 or not texts:
            return 1.7
        label = max(QFontMetrics(self.font()).horizontalAdvance(t) for t in texts) + 16
        return min(6.0, max(1.3, width / max(width - label, width / 6)))

    def set_draw(self, strip):
        """Show the last draw: ``strip`` from distribution.draw_strip, or None before the first step."""
        if strip is None:
            self.strip_bars.setOpts(x0=[], width=[], brushes=[])
            self.u_line.setVisible(False)
            self.u_label.setVisible(False)
            for item in self._strip_texts:
                item.setVisible(False)
            self.strip_title.setText("<span style='color:gray'>Last draw: none yet. Step to draw a token: "
                                     "a uniform number u in [0, 1) picks the token whose slice of the "
                                     "cumulative probability contains it.</span>")
            return
        brushes = []
        for i, seg in enumerate(strip.segments):
            brushes.append(DRAWN_COLOR if seg.drawn else STRIP_COLORS[i % 2])
        self.strip_bars.setOpts(x0=np.array([s.x0 for s in strip.segments]),
                                width=np.array([s.width for s in strip.segments]), brushes=brushes)
        wide = [seg for seg in strip.segments if seg.width >= STRIP_LABEL_MIN]
        while len(self._strip_texts) < len(wide):
            item = pg.TextItem("", color="white", anchor=(0.5, 0.5))
            item.setFont(self._mono)
            self.strip.addItem(item)
            self._strip_texts.append(item)
        for i, item in enumerate(self._strip_texts):
            item.setVisible(i < len(wide))
            if i < len(wide):
                item.setText(_short(strip.labels.get(wide[i].id, "")))
                item.setPos(wide[i].x0 + wide[i].width / 2, 0.5)
        if strip.u is not None:
            self.u_line.setPos(strip.u)
            self.u_label.setText(f"u = {strip.u:.3f}")
            self._place_u_label()
        for item in (self.u_line, self.u_label):
            item.setVisible(strip.u is not None)
        self.strip_title.setText(strip.title)
        self.strip_title.setToolTip(strip.detail)
        self.strip.setToolTip(strip.detail)

    def _place_u_label(self, *_):
        """The bars fill the strip's height below a band for the "u = …" label, which sits in the band's middle
        (a gap to the bars and to the strip's top) on top of the u line, moved sideways just enough to stay inside."""
        height, width = self.strip.vb.height(), self.strip.vb.width()
        if height <= self._strip_band or width <= 0:
            return
        bars = height - self._strip_band - STRIP_GAP  # px of the bars, which span y = 0..1
        top = 1.0 + self._strip_band / bars  # y of the view's top edge
        self.strip.setYRange(-STRIP_GAP / bars, top, padding=0)
        self.u_line.setSpan(0.0, (bars + 2 * STRIP_GAP) / height)  # from the strip's foot up to the label's foot
        x0, x1 = self.strip.vb.viewRange()[0]
        line_px = (self.u_line.value() - x0) / (x1 - x0) * width
        label_px = self.u_label.boundingRect().width()
        anchor = 0.5 if label_px <= 0 else min(max(0.5, 1 - (width - line_px) / label_px), line_px / label_px)
        self.u_label.setAnchor((min(max(anchor, 0.0), 1.0), 1))
        self.u_label.setPos(self.u_line.value(), 1.0 + STRIP_GAP / bars)

    def u_label_rect(self):
        """The "u = …" label's rectangle in scene coordinates (tests check it clears the bars and the top)."""
        return self.u_label.mapRectToScene(self.u_label.boundingRect())

    # ---- mouse -------------------------------------------------------------------------------------------------
    def row_at(self, scene_pos) -> int | None:
        """The row under a scene position (over the bars or their labels), or None."""
        if self.data is None:
            return None
        over_bars = self.plot.vb.sceneBoundingRect().contains(scene_pos)
        over_labels = self.plot.getAxis("left").sceneBoundingRect().contains(scene_pos)
        if not (over_bars or over_labels):
            return None
        y = self.plot.vb.mapSceneToView(scene_pos).y()
        row = int(round(y))
        return row if 0 <= row < len(self.data.rows) and abs(y - row) <= 0.45 else None

    def row_scene_pos(self, row: int) -> QPointF:
        """Scene position of the middle of a row's bar (tests click there)."""
        x0 = float(self.raw_bars.opts["x0"][row])
        return self.plot.vb.mapViewToScene(QPointF(x0 + float(self.raw_bars.opts["width"][row]) / 2, row))

    def _on_click(self, event):
        if event.button() != Qt.MouseButton.LeftButton:
            return
        row = self.row_at(event.scenePos())
        if row is not None:
            self.sig_token_clicked.emit(self.data.rows[row].id)

    def _on_hover(self, scene_pos):
        row = self.row_at(scene_pos)
        if row is None:
            QToolTip.hideText()
            return
        r = self.data.rows[row]
        state = (f"{percent(r.pre_cut)} before {STAGE_TITLES.get(r.cut_by, r.cut_by)} cut it" if r.cut_by
                 else f"{percent(r.final)} after the decoding controls")
        QToolTip.showText(QCursor.pos(), f"<b><tt>{_html(r.label)}</tt></b> (id {r.id})<br>raw {percent(r.raw)}, "
                                         f"{state}<br><i>click to force it as the next token</i>", self.view)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _label_width(font: QFont, chars: int) -> int:
    return QFontMetrics(font).horizontalAdvance("M" * chars)
