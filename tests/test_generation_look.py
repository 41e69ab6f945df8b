"""How the Generation pane looks: a long model line elided with the full text in its tooltip, a chart legend whose
entries never break across lines, the last-draw label clear of the strip's edges, rows refitted when the chart
shrinks, probability ticks whose labels stand apart on a narrow chart, and the banner and the probability chips
following a dark palette as well as a light one."""

import pytest
import torch
from PySide6.QtCore import QEvent, QPointF
from PySide6.QtGui import QColor, QPalette, QTextCursor, QTextDocument
from PySide6.QtWidgets import QWidget

from app.generation.chart import STRIP_GAP, ProbabilityAxis, ProbabilityChart
from app.generation.distribution import draw_strip
from app.generation.model_source import ModelSource
from app.generation.pane import GenerationPane
from app.generation.text_view import FORCED_COLOR, GeneratedText, Legend
from app.generation.widgets import BARS_LEGEND, LEGEND_SEPARATOR, Banner, ElidedLabel
from app.theme import PROB_BINS, chip_colors, dark_palette


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio of two colours (4.5 is the minimum for body text)."""
    def luminance(c: QColor) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def light_palette() -> QPalette:
    p = QPalette()
    for role, color in (("Window", "#efefef"), ("WindowText", "#000000"), ("Base", "#ffffff"), ("Text", "#000000")):
        p.setColor(getattr(QPalette.ColorRole, role), QColor(color))
    return p


@pytest.fixture
def random_pane(qtbot, reporter):
    """A Generation pane at the 900x600 the issue names, on a random tiny character model."""
    p = GenerationPane(reporter=reporter)
    qtbot.addWidget(p)
    p.prompt.setPlainText("hello")
    p.load_source(ModelSource("random", size="tiny", tokenizer="char"))
    qtbot.waitUntil(lambda: not p.busy and p.snapshot is not None, timeout=30000)
    p.resize(900, 560)
    p.show()
    qtbot.waitExposed(p)
    yield p
    p.shutdown()


def test_a_long_model_line_is_elided_with_the_whole_text_in_its_tooltip(qtbot, random_pane):
    info = random_pane.model_info
    full = random_pane.loaded.description
    assert info.text() == full  # the text stays whole: only its painting is shortened
    assert info.width() < info.fontMetrics().horizontalAdvance(full), "the test needs a line too long to fit"
    assert info.is_elided() and info.elided_text().endswith("…")
    assert info.fontMetrics().horizontalAdvance(info.elided_text()) <= info.contentsRect().width()
    assert full in info.toolTip()
    assert random_pane.loaded.source.title() in info.toolTip()  # the model's name (or file) under the text


def test_a_short_line_is_not_elided(qtbot):
    label = ElidedLabel()
    qtbot.addWidget(label)
    label.setText("3 layers")
    label.resize(400, 30)
    assert not label.is_elided() and label.elided_text() == "3 layers"
    label.set_detail("/models/tiny.pt")
    assert label.toolTip() == "3 layers\n/models/tiny.pt"


def test_the_chart_legend_breaks_only_between_entries(qtbot, random_pane):
    """At any width from its widest entry to all of it, every line of the legend starts at an entry."""
    label = random_pane.bars_legend

    def document(html: str) -> QTextDocument:
        doc = QTextDocument()
        doc.setDefaultFont(label.font())
        doc.setDocumentMargin(0)
        doc.setHtml(html)
        return doc

    doc = document(label.text())
    entries = doc.toRawText().split("\xa0\xa0 ")  # raw: the no-break spaces kept (toPlainText makes them plain)
    assert len(entries) == len(BARS_LEGEND)
    starts = {sum(len(e) + 3 for e in entries[:i]) for i in range(len(entries))}
    full = int(doc.idealWidth()) + 1
    widest = max(int(document(html + LEGEND_SEPARATOR).idealWidth()) + 1  # an entry and the no-break spaces after it
                 for html in label.text().split(LEGEND_SEPARATOR))
    text = doc.toRawText()
    broken = 0
    for width in range(widest, full + 1, 3):
        doc.setTextWidth(width)
        layout = doc.firstBlock().layout()
        lines = [layout.lineAt(i).textStart() for i in range(layout.lineCount())]
        assert all(start in starts for start in lines[1:]), (width, [text[s:s + 6] for s in lines])
        broken += len(lines) > 1
    assert broken, "the test never made the legend wrap"


def test_the_last_draw_label_stands_clear_of_the_strip_edges_and_the_bars(qtbot):
    chart = ProbabilityChart()
    qtbot.addWidget(chart)
    chart.resize(480, 330)
    chart.show()
    qtbot.waitExposed(chart)
    probs = torch.softmax(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.2, 0.1]), -1)
    view = chart.strip.vb
    for u in (0.002, 0.5, 0.97, 0.999):
        chart.set_draw(draw_strip(probs, int((probs.cumsum(0) <= u).sum()), u, str, 0))
        qtbot.wait(10)
        label, strip = chart.u_label_rect(), view.sceneBoundingRect()
        bars_top = view.mapViewToScene(QPointF(0, 1)).y()  # the bars span y = 0..1
        assert label.top() >= strip.top() + STRIP_GAP - 1, (u, label, strip)
        assert label.bottom() <= bars_top - STRIP_GAP + 1, (u, label, bars_top)
        assert strip.left() - 1 <= label.left() and label.right() <= strip.right() + 1, (u, label, strip)
        line_x = view.mapViewToScene(QPointF(u, 0)).x()
        assert label.left() - 1 <= line_x <= label.right() + 1  # the label is over its line


def test_the_chart_redraws_its_rows_to_fit_when_its_height_changes(qtbot, random_pane):
    """A banner appearing or the window shrinking makes the plot shorter: the rows are redrawn to fit it (they
    overlapped), and taller again shows more of them."""
    random_pane.top_n.setValue(40)
    chart = random_pane.chart

    def shown():
        return sum(not r.extra for r in chart.data.rows)

    random_pane.resize(900, 900)
    qtbot.waitUntil(lambda: shown() == min(40, chart.rows_that_fit()), timeout=5000)
    tall = shown()
    random_pane.resize(900, 560)
    qtbot.waitUntil(lambda: chart.rows_that_fit() < tall, timeout=5000)
    qtbot.waitUntil(lambda: shown() == chart.rows_that_fit(), timeout=5000)
    random_pane.resize(900, 900)
    qtbot.waitUntil(lambda: shown() == tall, timeout=5000)


@pytest.mark.parametrize("dark", [False, True])
def test_the_banner_takes_its_colours_from_the_palette(qtbot, dark):
    parent = QWidget()
    qtbot.addWidget(parent)
    parent.setPalette(dark_palette() if dark else light_palette())
    banner = Banner(parent)
    banner.setText("Could not load the model")
    background, text = banner.colors()
    window = parent.palette().color(QPalette.ColorRole.Window)
    assert (background.lightness() < 100) == dark and (text.lightness() > 160) == dark  # no light box in the dark
    assert abs(background.lightness() - window.lightness()) < 60  # a tint of the window, not a glaring patch
    assert background.red() > background.green() + 10  # still reads as an error
    assert contrast(background, text) >= 4.5
    assert background.name() in banner.styleSheet() and text.name() in banner.styleSheet()


def test_the_banner_follows_a_palette_change(qtbot):
    parent = QWidget()
    qtbot.addWidget(parent)
    parent.setPalette(light_palette())
    banner = Banner(parent)
    light = banner.styleSheet()
    parent.setPalette(dark_palette())
    banner.setText("Could not load the model")  # each message restyles
    assert banner.styleSheet() != light and banner.colors()[0].lightness() < 100
    banner.changeEvent(QEvent(QEvent.Type.ApplicationPaletteChange))
    assert banner.colors()[0].name() in banner.styleSheet()


@pytest.mark.parametrize("dark", [False, True])
def test_probability_chips_are_readable_in_the_palette(qtbot, dark):
    pal = dark_palette() if dark else light_palette()
    holder = QWidget()
    qtbot.addWidget(holder)
    holder.setPalette(pal)
    legend, text = Legend(holder), GeneratedText(holder)
    colours = [color for _, color, _ in PROB_BINS] + [FORCED_COLOR]
    for chip, expected in zip(legend.chips, colours, strict=True):
        background, foreground = chip_colors(expected, holder)
        assert chip.color == expected
        assert background.name() in chip.styleSheet() and foreground.name() in chip.styleSheet()
        assert contrast(background, foreground) >= 4.5, (chip.text(), background.name(), foreground.name())
        assert (background.lightness() < 110) == dark, chip.text()  # dark chips on a dark base: no glare
    hues = {chip_colors(c, holder)[0].hslHue() for c in colours}
    assert len(hues) == len(colours)  # every bin still its own colour
    text.set_prompt("hi")
    text.append_token(b" there", 0.9)
    cursor = QTextCursor(text.document())
    cursor.setPosition(4)
    fmt = cursor.charFormat()
    assert (fmt.background().color(), fmt.foreground().color()) == chip_colors(PROB_BINS[-1][1], holder)


def test_a_redraw_that_leaves_parts_unchanged_still_shows_the_new_data(qtbot):
    """The chart skips re-setting unchanged bars, labels and ticks: what it skips must be what it already shows."""
    import torch

    from app.generation.distribution import chart_data
    from engine.decoding import DecodeSettings

    chart = ProbabilityChart()
    qtbot.addWidget(chart)
    logits = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0, -1.0])

    def shown(data):
        chart.set_data(data)
        n = len(data.rows)
        return (list(chart.after_bars.opts["width"]), list(chart.raw_bars.opts["width"]),
                len(chart.cut_bars.opts["width"]), [t.toPlainText() for t in chart._texts[:n]],
                chart.plot.getAxis("left")._tickLevels)

    for i, settings in enumerate((DecodeSettings(), DecodeSettings(top_k=2), DecodeSettings(temperature=0.5, top_k=2),
                                  DecodeSettings(), DecodeSettings(top_k=2))):
        data = chart_data(logits, settings, (), 5, lambda i: f"t{i}")
        after, raw, n_cut, texts, ticks = shown(data)
        assert after == [r.final for r in data.rows] and raw == [r.raw for r in data.rows]
        assert n_cut == sum(bool(r.cut_by) for r in data.rows)
        assert [("before" in t) for t in texts] == [bool(r.cut_by) for r in data.rows]
        assert [label for _, label in ticks[0]] == [f"t{r.id}" for r in data.rows]
        if i == 2:
            chart.show_message("gone")  # empties the chart: the next redraw must set everything again
            assert len(chart.after_bars.opts["width"]) == 0


def test_probability_tick_labels_stand_apart_on_a_narrow_axis(qtbot):
    """Regression: at 900 px the chart's axis showed "0.001%0.002%0.003%", labels run together."""
    from PySide6.QtGui import QFontMetrics

    axis = ProbabilityAxis("bottom")
    axis.limit = 7e-5
    metrics = QFontMetrics(axis.style.get("tickFont") or axis.font())
    for size in (120, 300, 900):
        levels = axis.tickSpacing(0.0, 8e-5, size)
        assert levels
        for spacing, values in axis.tickValues(0.0, 8e-5, size):
            labels = axis.tickStrings(list(values), 1, spacing)
            widest = max((metrics.horizontalAdvance(t) for t in labels), default=0)
            assert spacing * size / 8e-5 > widest, (size, spacing, labels)
    axis.limit = 1.0
    assert axis.tickSpacing(0.0, 1.0, 900)[0][0] <= 0.25  # a wide axis with room keeps pyqtgraph's own ticks
