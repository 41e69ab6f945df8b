"""Colours from the palette, so a dark desktop theme gives readable panes (no fixed light colours under light text).

``style_plots`` gives pyqtgraph widgets, which default to black or a fixed white, the palette's base and text colours.
``install_style`` is the one place the app adjusts its style: Fusion's check boxes drawn visibly in a dark palette.
"""

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QApplication, QLabel, QProxyStyle, QStyle, QStyleFactory, QWidget


def palette(widget: QWidget | None = None) -> QPalette:
    return widget.palette() if widget is not None else QApplication.palette()


def is_dark(widget: QWidget | None = None) -> bool:
    return palette(widget).color(QPalette.ColorRole.Base).lightness() < 128


def hint_color(widget: QWidget | None = None) -> str:
    """A colour for secondary text that stays readable on the window background, light or dark."""
    p = palette(widget)
    text, window = p.color(QPalette.ColorRole.WindowText), p.color(QPalette.ColorRole.Window)
    mixed = QColor((text.red() * 3 + window.red() * 2) // 5, (text.green() * 3 + window.green() * 2) // 5,
                   (text.blue() * 3 + window.blue() * 2) // 5)
    return mixed.name()


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` moved a fraction ``t`` of the way to ``b``.

    >>> mix(QColor("#000000"), QColor("#ffffff"), 0.5).name()
    '#808080'
    """
    return QColor(*(round(x + (y - x) * t) for x, y in ((a.red(), b.red()), (a.green(), b.green()),
                                                         (a.blue(), b.blue()))))


def error_color(widget: QWidget | None = None) -> str:
    """A red for error text that stays readable on the window background, light or dark."""
    return "#ff7b8a" if palette(widget).color(QPalette.ColorRole.Window).lightness() < 128 else "#b00020"


def warning_color(widget: QWidget | None = None) -> str:
    """An amber for cautionary notes that stays readable on the window background, light or dark."""
    return "#e0b04a" if is_dark(widget) else "#8a5a00"


def banner_colors(widget: QWidget | None = None) -> tuple[QColor, QColor]:
    """(background, text) of an error banner: the window colour tinted red under error-red text, so the banner is a
    soft pink on a light window and a deep wine on a dark one (never a light box glaring in a dark window)."""
    p = palette(widget)
    window = p.color(QPalette.ColorRole.Window)
    dark = window.lightness() < 128
    background = mix(window, QColor(220, 40, 50), 0.28 if dark else 0.14)
    return background, QColor("#ffb4bc" if dark else "#7a1212")


# The probability a token had, in five bins: (upper bound, light colour, legend). Generation colours the tokens it
# drew by it, Inside every token of a text; on a dark base chip_colors turns each into a dark shade of its hue.
PROB_BINS = (
    (0.05, QColor("#f5a3a3"), "< 5%"),
    (0.20, QColor("#f7c99a"), "5–20%"),
    (0.50, QColor("#f2e49b"), "20–50%"),
    (0.80, QColor("#c9e6a3"), "50–80%"),
    (float("inf"), QColor("#94d3a9"), "≥ 80%"),
)


def prob_color(prob: float) -> QColor:
    """The light colour of ``prob``'s bin.

    >>> prob_color(0.01).name(), prob_color(0.2).name(), prob_color(1.0).name()
    ('#f5a3a3', '#f2e49b', '#94d3a9')
    """
    for upper, color, _ in PROB_BINS:
        if prob < upper:
            return color
    return PROB_BINS[-1][1]


def chip_colors(color: QColor, widget: QWidget | None = None) -> tuple[QColor, QColor]:
    """(background, text) for a colour-coded chip: the light ``color`` under black text on a light base; on a dark
    base a dark shade of the same hue under the palette's text colour, so it reads without glaring."""
    p = palette(widget)
    base = p.color(QPalette.ColorRole.Base)
    if base.lightness() >= 128:
        return QColor(color), QColor("black")
    hue, saturation = max(color.hslHueF(), 0.0), color.hslSaturationF()  # hue -1: a grey
    return QColor.fromHslF(hue, saturation * 0.55, 0.3), p.color(QPalette.ColorRole.Text)


class Chip(QLabel):
    """A legend chip of ``color`` as ``chip_colors`` shows it (light under black text on a light base, a dark shade
    under the palette's text on a dark one). Its holder calls ``restyle(self)`` when its palette changes: the chip's
    own palette is the one its style sheet made, not the window's."""

    def __init__(self, text: str, color: QColor, underline: bool = False):
        super().__init__(text)
        self.color, self.underline = QColor(color), underline
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)

    def restyle(self, holder: QWidget | None) -> None:
        background, foreground = chip_colors(self.color, holder)
        deco = " text-decoration: underline;" if self.underline else ""
        self.setStyleSheet(f"background: {background.name()}; color: {foreground.name()}; padding: 1px 6px; "
                           f"border-radius: 3px;{deco}")


def strength_color(share: float, widget: QWidget | None = None) -> QColor:
    """A table cell's shade for a share in [0, 1]: from the base colour (0) to a strong blue (1), under the palette's
    text, which stays readable on every shade: white to light blue in a light palette, dark grey to mid blue in a dark
    one."""
    share = min(max(share, 0.0), 1.0)
    base = palette(widget).color(QPalette.ColorRole.Base)
    strong = QColor(105, 145, 255) if base.lightness() >= 128 else QColor(45, 95, 175)
    return mix(base, strong, share)


def selection_colors(widget: QWidget | None = None) -> tuple[QColor, QColor]:
    """(background, text) for marking a selected token: the palette's highlight pair, readable in any theme."""
    p = palette(widget)
    return p.color(QPalette.ColorRole.Highlight), p.color(QPalette.ColorRole.HighlightedText)


def style_plots(view) -> None:
    """Base-coloured background and text-coloured axes, ticks, titles and legends for a pyqtgraph widget."""
    import pyqtgraph as pg

    p = view.palette()
    base, text = p.color(QPalette.ColorRole.Base), p.color(QPalette.ColorRole.Text)
    view.setBackground(base)
    for item in view.scene().items():
        if isinstance(item, pg.AxisItem):
            item.setPen(pg.mkPen(text))
            item.setTextPen(pg.mkPen(text))
            if item.label is not None:
                item.label.setDefaultTextColor(text)
        elif isinstance(item, pg.LegendItem):
            item.setLabelTextColor(text)
            item.setBrush(pg.mkBrush(base.red(), base.green(), base.blue(), 200))
        elif isinstance(item, pg.LabelItem):
            item.setAttr("color", text.name())
            item.setText(item.text)


def dark_palette() -> QPalette:
    """A dark palette like a dark desktop theme gives (the screenshot tools and tests use it)."""
    p = QPalette()
    for role, color in (("Window", "#2b2b2b"), ("WindowText", "#e6e6e6"), ("Base", "#1e1e1e"),
                        ("AlternateBase", "#2b2b2b"), ("Text", "#e6e6e6"), ("Button", "#353535"),
                        ("ButtonText", "#e6e6e6"), ("Highlight", "#2a82da"), ("HighlightedText", "#ffffff"),
                        ("ToolTipBase", "#353535"), ("ToolTipText", "#e6e6e6"), ("PlaceholderText", "#8a8a8a")):
        p.setColor(getattr(QPalette.ColorRole, role), QColor(color))
    # as a desktop theme does: disabled text greyed, or a running form looks editable and every button pressable
    for role in ("WindowText", "Text", "ButtonText"):
        p.setColor(QPalette.ColorGroup.Disabled, getattr(QPalette.ColorRole, role), QColor("#7f7f7f"))
    return p


def indicator_outline(pal: QPalette) -> QColor | None:
    """The outline ``VisibleIndicatorStyle`` draws around a check box or radio button: None in a light palette
    (Fusion's own outline is visible there), else a mix of text and window colours (dimmer when disabled)."""
    active = QPalette.ColorGroup.Active  # the dimming of a disabled box is the style's, not the palette's grey text
    window = pal.color(active, QPalette.ColorRole.Window)
    if window.lightness() >= 128:
        return None
    return mix(window, pal.color(active, QPalette.ColorRole.WindowText), 0.55)


class VisibleIndicatorStyle(QProxyStyle):
    """Fusion, with check boxes and radio buttons outlined visibly in a dark palette.

    Fusion outlines an indicator in the window colour darkened and fills it with the base colour; a dark palette's
    base and window are both near black, so an unchecked box all but vanished. Ticked rows in item views (the runs
    list) are drawn through the same primitive, so they gain the outline too.
    """

    def drawPrimitive(self, element, option, painter, widget=None):  # noqa: N802 - Qt override
        super().drawPrimitive(element, option, painter, widget)
        if element not in (QStyle.PrimitiveElement.PE_IndicatorCheckBox,
                           QStyle.PrimitiveElement.PE_IndicatorRadioButton):
            return
        focused = QStyle.StateFlag.State_HasFocus | QStyle.StateFlag.State_KeyboardFocusChange
        if option.state & focused == focused:
            return  # Fusion's highlighted focus outline is visible: keep it
        color = indicator_outline(option.palette)
        if color is None:
            return
        if not option.state & QStyle.StateFlag.State_Enabled:
            color = mix(option.palette.color(QPalette.ColorRole.Window), color, 0.45)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(color, 1))
        painter.setBrush(QColor(0, 0, 0, 0))
        rect = QRectF(option.rect).adjusted(0.5, 0.5, -1.5, -1.5)
        if element == QStyle.PrimitiveElement.PE_IndicatorRadioButton:
            painter.drawEllipse(rect)
        else:
            painter.drawRoundedRect(rect, 1, 1)
        painter.restore()


def install_style(app: QApplication | None = None) -> None:
    """Give the application the visible-indicator Fusion when it runs Fusion (Linux's default; a dark desktop theme
    then brings a dark palette). Other styles draw their own indicators and are left alone. Idempotent."""
    app = app or QApplication.instance()
    if app is None or isinstance(app.style(), VisibleIndicatorStyle) or app.style().name().lower() != "fusion":
        return
    app.setStyle(VisibleIndicatorStyle(QStyleFactory.create("Fusion")))
