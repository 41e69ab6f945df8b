"""Colours from the palette, so a dark desktop theme gives readable panes (no fixed light colours under light text).

``style_plots`` gives pyqtgraph widgets, which default to black or a fixed white, the palette's base and text colours.
"""

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget


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


def error_color(widget: QWidget | None = None) -> str:
    """A red for error text that stays readable on the window background, light or dark."""
    return "#ff7b8a" if palette(widget).color(QPalette.ColorRole.Window).lightness() < 128 else "#b00020"


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
