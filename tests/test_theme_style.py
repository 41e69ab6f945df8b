"""The app's style: under Fusion in a dark palette an unchecked check box (and a tickable row of a list) is outlined
visibly; a light palette is left as Fusion draws it."""

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (QApplication, QCheckBox, QListWidget, QListWidgetItem, QStyle, QStyleFactory, QWidget,
                               QStyleOptionButton)

from app.theme import VisibleIndicatorStyle, dark_palette, indicator_outline, install_style


def _indicator_contrast(widget, rect) -> int:
    """The largest lightness difference between a pixel of ``rect`` in the rendered widget and the window colour
    around it: how far the indicator stands out."""
    image = widget.grab().toImage()
    ratio = image.devicePixelRatio()
    window = widget.palette().color(QPalette.ColorRole.Window).lightness()
    return max(abs(QColor(image.pixel(QPoint(int(x * ratio), int(y * ratio)))).lightness() - window)
               for x in range(rect.left(), rect.right() + 1) for y in range(rect.top(), rect.bottom() + 1))


def _checkbox(qtbot, style, palette):
    box = QCheckBox("Greedy")
    qtbot.addWidget(box)
    box.setStyle(style)
    box.setPalette(palette)
    box.resize(box.sizeHint())
    option = QStyleOptionButton()
    box.initStyleOption(option)
    return box, style.subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)


def test_an_unchecked_box_stands_out_in_a_dark_palette(qtbot):
    style = VisibleIndicatorStyle(QStyleFactory.create("Fusion"))
    box, rect = _checkbox(qtbot, style, dark_palette())
    enabled = _indicator_contrast(box, rect)
    assert enabled >= 60
    box.setEnabled(False)
    assert 25 <= _indicator_contrast(box, rect) < enabled - 15  # disabled: visible, and dimmer than an enabled box


def test_a_tickable_list_row_stands_out_in_a_dark_palette(qtbot):
    view = QListWidget()
    qtbot.addWidget(view)
    view.setStyle(VisibleIndicatorStyle(QStyleFactory.create("Fusion")))
    view.setPalette(dark_palette())
    item = QListWidgetItem("run-a")
    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
    item.setCheckState(Qt.CheckState.Unchecked)
    view.addItem(item)
    view.resize(200, 60)
    row = view.visualItemRect(item).translated(view.viewport().pos())
    indicator = row.adjusted(0, 0, -(row.width() - row.height()), 0)  # the indicator sits at the row's left
    assert _indicator_contrast(view, indicator) >= 60


def test_a_light_palette_is_drawn_as_fusion_draws_it(qtbot):
    light = QPalette(QColor("#efefef"))
    assert indicator_outline(light) is None
    fusion = QStyleFactory.create("Fusion")
    ours = VisibleIndicatorStyle(QStyleFactory.create("Fusion"))
    plain, rect = _checkbox(qtbot, fusion, light)
    proxied, _ = _checkbox(qtbot, ours, light)
    assert plain.grab().toImage() == proxied.grab().toImage()


def test_install_style_wraps_fusion_once(qapp):
    install_style(qapp)
    if QApplication.style().name().lower() == "fusion" or isinstance(qapp.style(), VisibleIndicatorStyle):
        style = qapp.style()
        assert isinstance(style, VisibleIndicatorStyle)
        install_style(qapp)
        assert qapp.style() is style


def test_token_chips_follow_the_palette(qtbot):
    """Light pastels under near-black text in a light palette; dark shades under the palette's light text in a dark
    one, with partial and special tokens still told apart from plain ones and readable on their chips."""
    from app.tokenization.token_view import token_colors

    light, dark = QWidget(), QWidget()
    for w in (light, dark):
        qtbot.addWidget(w)
    dark.setPalette(dark_palette())
    fills, pens, _ = token_colors(light)
    assert all(f.lightness() > 180 for f in fills) and pens[0].lightness() < 40
    fills, pens, hover = token_colors(dark)
    assert all(f.lightness() < 100 for f in fills)
    assert all(p.lightness() > 150 for p in pens) and len({p.name() for p in pens}) == 3
    assert hover.lightness() > 150  # the hover outline shows on a dark chip
