"""A read-only, painted view of tokens as coloured boxes: the text split (one box per token piece) or the ids.

Why painted and not a QTextEdit: the view lays out the boxes once (a Python loop over the tokens with cached text
widths) and paints only the lines in the viewport, so re-rendering 100 KB of text costs tens of milliseconds and
hover/selection repaint a few lines; char formats in a QTextDocument cost far more for tens of thousands of tokens.

Layout: boxes flow left to right and wrap at the viewport's width; a "\\n" inside a label ends the line (the text view
puts one after each newline of the text). Hover, click and keyboard selection are reported as token indices.
"""


import re
from bisect import bisect_right

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (QColor, QFontDatabase, QFontMetricsF, QPainter, QPalette, QPen, QTextCharFormat,
                           QTextCursor)
from PySide6.QtWidgets import (QAbstractScrollArea, QHBoxLayout, QLabel, QTextEdit, QToolTip, QVBoxLayout,
                               QWidget)

from app import theme
from app.theme import hint_color, selection_colors
from app.tokentext import shaping_runs

# Pastel backgrounds, cycled by token index (neighbours always differ); saturated enough to tell apart on white.
PASTELS = ["#fbd3d3", "#fde3bd", "#f6efaa", "#d3efc4", "#c4e9ee", "#cdd9fb", "#e0d1f6", "#f6cfe6"]
PARTIAL_TEXT = QColor("#a0213a")  # the <E2> pieces of a split character
SPECIAL_TEXT = QColor("#0b4f9c")
HOVER_PEN = QColor("#202020")
SELECTED_PEN = QColor("#1f6feb")
DARK_PARTIAL_TEXT = QColor("#ff9db0")  # the same two meanings, light enough to read on a dark chip
DARK_SPECIAL_TEXT = QColor("#9ccaff")


def token_colors(widget: QWidget) -> tuple[list[QColor], list[QColor], QColor]:
    """(chip fills, text pens for plain / partial / special tokens, hover outline) for widget's palette: light
    pastels under near-black text on a light base; on a dark base, dark shades of the same hues (theme.chip_colors)
    under the palette's text, so a dark theme neither glares nor loses the partial and special colours."""
    if not theme.is_dark(widget):
        return [QColor(c) for c in PASTELS], [QColor("#111111"), PARTIAL_TEXT, SPECIAL_TEXT], HOVER_PEN
    chips = [theme.chip_colors(QColor(c), widget) for c in PASTELS]
    text = chips[0][1]
    return [fill for fill, _ in chips], [text, DARK_PARTIAL_TEXT, DARK_SPECIAL_TEXT], text


PAD_X = 1.0  # inner horizontal padding of a box (text mode: boxes touch, so text keeps its natural spacing)
EMPTY_W = 6.0  # width given to an empty piece (the end of a "\\n" token without visible whitespace)


class TokenView(QAbstractScrollArea):
    """Boxes for tokens; ``set_tokens(labels)``; hover/click/arrow keys report token indices."""

    sig_hovered = Signal(int)
    """Index of the token under the mouse, -1 when it leaves the tokens."""

    sig_clicked = Signal(int)
    """Index of the token the user clicked or moved the keyboard selection to."""

    def __init__(self, parent=None, *, gap: float = 0.0, font_delta: float = 1.0):
        super().__init__(parent)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(font.pointSizeF() + font_delta)
        self.setFont(font)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._gap = gap  # space between boxes (the ids view separates its numbers)
        self._labels: list[str] = []
        self._styles: list[int] = []  # 0 plain, 1 partial, 2 special
        self._hover = -1
        self._linked = -1  # highlighted because the other view hovers it
        self._selected = -1
        self._placeholder = ""
        self.tooltip_for = None  # callable(index) -> str, set by the pane
        self._widths: dict[str, float] = {}
        self._layout_width = -1.0
        self._clear_layout()

    # ---- data -------------------------------------------------------------------------------------------------------
    def set_tokens(self, labels: list[str], styles: list[int] | None = None) -> None:
        """Show ``labels``, one per token ("\\n" inside a label breaks the line).

        styles: per token 0 plain, 1 partial (a piece of a character), 2 special token.
        """
        self._labels = labels
        self._styles = styles if styles is not None else [0] * len(labels)
        self._hover = self._linked = self._selected = -1
        bar = self.verticalScrollBar()
        position = bar.value()  # typing re-renders: keep the user's place (clamped to the new length)
        self._relayout()
        bar.setValue(position)
        self.viewport().update()

    def set_placeholder(self, text: str) -> None:
        """Grey text shown when there are no tokens."""
        self._placeholder = text
        self.viewport().update()

    def count(self) -> int:
        return len(self._labels)

    def label(self, index: int) -> str:
        return self._labels[index]

    def setFont(self, font) -> None:  # noqa: N802 - Qt override
        super().setFont(font)
        self._fm = QFontMetricsF(font)
        self._line_h = self._fm.height() + 4.0
        self._widths = {}
        # In a fixed-pitch font every printable ASCII character has one advance: such labels (most of them, and every
        # id) need no measuring, which for 10 000 distinct labels took 0.25 s. Checked, not assumed.
        advance = self._fm.horizontalAdvance("M")
        sample = "".join(map(chr, range(0x20, 0x7F)))
        fixed = abs(self._fm.horizontalAdvance(sample) - advance * len(sample)) < 0.01
        self._ascii_advance = advance if fixed else None
        # the visible-whitespace signs count too where the font draws them at that pitch
        same = "".join(c for c in "␣↵→␍◌" if abs(self._fm.horizontalAdvance(c) - advance) < 0.01)
        self._unmeasured = re.compile(f"[\\x20-\\x7e{same}]*")
        if hasattr(self, "_labels"):
            self._relayout()

    # ---- highlight & selection ------------------------------------------------------------------------------------
    @property
    def selected(self) -> int:
        return self._selected

    @property
    def highlighted(self) -> int:
        """The token lit because the linked view hovers it (-1: none)."""
        return self._linked

    def set_highlight(self, index: int) -> None:
        if index != self._linked:
            self._update_token(self._linked)
            self._linked = index
            self._update_token(index)

    def set_selected(self, index: int, *, ensure_visible: bool = True) -> None:
        if not -1 <= index < len(self._labels):
            index = -1
        if index != self._selected:
            self._update_token(self._selected)
            self._selected = index
            self._update_token(index)
        if ensure_visible and index >= 0:
            self.ensure_visible(index)

    def ensure_visible(self, index: int) -> None:
        rect = self.token_rect(index)  # viewport coordinates: 0 is the top of what is visible
        bar = self.verticalScrollBar()
        if rect.top() < 0:
            bar.setValue(bar.value() + int(rect.top()) - 4)
        elif rect.bottom() > self.viewport().height():
            bar.setValue(bar.value() + int(rect.bottom() - self.viewport().height()) + 4)

    # ---- geometry ---------------------------------------------------------------------------------------------------
    def _clear_layout(self) -> None:
        self._box_token: list[int] = []  # per box: token index
        self._box_x: list[float] = []
        self._box_w: list[float] = []
        self._box_text: list[str] = []
        self._line_first_box: list[int] = [0]  # per line: index of its first box (+ a final sentinel)
        self._n_lines = 0
        self._box_line: list[int] = []
        self._token_first_box: list[int] = [0]  # per token: its first box (+ sentinel)

    def _widths_of(self, texts: list[str]) -> np.ndarray:
        """(n,) advance of each text, measured once per distinct text (tokens repeat a lot)."""
        cache = self._widths
        if len(cache) > 200_000:  # distinct texts seen so far; keep memory bounded over a long session
            cache.clear()
        widths = list(map(cache.get, texts))
        if None in widths:
            measure, ascii_advance, fixed = self._fm.horizontalAdvance, self._ascii_advance, self._unmeasured.fullmatch
            for text in {t for t, w in zip(texts, widths) if w is None}:
                if not text:
                    cache[text] = EMPTY_W
                elif ascii_advance is not None and (text.isascii() and text.isprintable() or fixed(text)):
                    cache[text] = ascii_advance * len(text)
                else:
                    cache[text] = sum(map(measure, shaping_runs(text)))  # as paintEvent draws it
            widths = list(map(cache.get, texts))
        return np.asarray(widths, dtype=np.float64)

    def _pieces(self) -> tuple[list[str], list[int], list[bool]]:
        """The labels cut at their newlines: (text of each box, its token, whether a line break follows it)."""
        labels = self._labels
        with_newline = [i for i, text in enumerate(labels) if "\n" in text]
        if not with_newline:
            return list(labels), list(range(len(labels))), [False] * len(labels)
        texts, tokens, breaks = [], [], []
        done = 0
        for i in with_newline + [len(labels)]:
            texts.extend(labels[done:i])
            tokens.extend(range(done, i))
            breaks.extend([False] * (i - done))
            if i == len(labels):
                break
            parts = labels[i].split("\n")
            ends_with_newline = not parts[-1]
            if ends_with_newline:
                parts.pop()  # nothing after the last break
            texts.extend(parts)
            tokens.extend([i] * len(parts))
            breaks.extend([True] * (len(parts) - 1) + [ends_with_newline])
            done = i + 1
        return texts, tokens, breaks

    def _relayout(self) -> None:
        """Flow the boxes into lines for the current width.

        Vectorised: with C the cumulative advance of the boxes on one endless line, a line starting at box s holds
        the boxes whose end C[j] + w[j] stays within C[s] + the width, up to the next forced break; so each line costs
        one binary search, not a Python step per token.
        """
        self._clear_layout()
        self._layout_width = self._wrap_width()
        avail = max(40.0, self._layout_width - 8.0)
        texts, tokens, breaks = self._pieces()
        widths = self._widths_of(texts)
        if widths.max(initial=0.0) > avail - 2 * PAD_X:  # rare: a piece wider than the view is cut to fit
            texts, tokens, breaks = self._cut_wide(texts, tokens, breaks, widths.tolist(), avail - 2 * PAD_X)
            widths = self._widths_of(texts)
        n = len(texts)
        box_w = widths + 2 * PAD_X  # (n,)
        advance = np.zeros(n + 1)  # (n+1,) C: where each box starts on one endless line
        np.cumsum(box_w + self._gap, out=advance[1:])
        ends = (advance[:-1] + box_w).tolist()  # (n,)
        starts_at = advance.tolist()
        forced = [j for j, b in enumerate(breaks) if b] + [n]  # a line ends after these boxes
        starts, s, f, room = [], 0, 0, avail - 4.0
        while s < n:
            starts.append(s)
            j = bisect_right(ends, room + starts_at[s], s) - 1
            while forced[f] < s:
                f += 1
            s = min(max(j, s), forced[f]) + 1
        starts_arr = np.asarray(starts, dtype=np.int64)
        box_line = np.repeat(np.arange(len(starts)), np.diff(np.append(starts_arr, n)))  # (n,)
        box_x = 4.0 + advance[:-1] - advance[starts_arr][box_line] if n else np.zeros(0)
        self._box_token = tokens
        self._box_x = box_x.tolist()
        self._box_w = box_w.tolist()
        self._box_text = texts
        self._box_line = box_line.tolist()
        self._line_first_box = starts + [n]
        self._token_first_box = np.searchsorted(np.asarray(tokens, dtype=np.int64),
                                                np.arange(len(self._labels) + 1)).tolist()
        self._n_lines = len(starts)
        bar = self.verticalScrollBar()
        total = int(self._n_lines * self._line_h + 8)
        bar.setRange(0, max(0, total - self.viewport().height()))
        bar.setPageStep(self.viewport().height())
        bar.setSingleStep(int(self._line_h))

    def _cut_wide(self, texts, tokens, breaks, widths, avail):
        out_texts, out_tokens, out_breaks = [], [], []
        for text, token, brk, w in zip(texts, tokens, breaks, widths):
            chunks = self._split_to_fit(text, avail) if w > avail else [text]
            out_texts.extend(chunks)
            out_tokens.extend([token] * len(chunks))
            out_breaks.extend([False] * (len(chunks) - 1) + [brk])
        return out_texts, out_tokens, out_breaks

    def _split_to_fit(self, text: str, avail: float) -> list[str]:
        chunks, start = [], 0
        for end in range(1, len(text) + 1):
            if self._fm.horizontalAdvance(text[start:end]) > avail and end - start > 1:
                chunks.append(text[start : end - 1])
                start = end - 1
        chunks.append(text[start:])
        return chunks

    def _box_rect(self, box: int) -> QRectF:
        y = 4.0 + self._box_line[box] * self._line_h - self.verticalScrollBar().value()
        return QRectF(self._box_x[box], y, self._box_w[box], self._line_h - 2.0)

    def token_rect(self, index: int) -> QRectF:
        """Bounding rectangle (viewport coordinates) of a token's boxes; empty for a bad index."""
        if not 0 <= index < len(self._labels):
            return QRectF()
        rect = QRectF()
        for box in range(self._token_first_box[index], self._token_first_box[index + 1]):
            rect = rect.united(self._box_rect(box))
        return rect

    def index_at(self, pos: QPointF) -> int:
        """Token index under a viewport position, -1 if none."""
        line = int((pos.y() + self.verticalScrollBar().value() - 4.0) // self._line_h)
        if not 0 <= line < self._n_lines:
            return -1
        for box in range(self._line_first_box[line], self._line_first_box[line + 1]):
            if self._box_x[box] <= pos.x() < self._box_x[box] + self._box_w[box]:
                return self._box_token[box]
        return -1

    def _update_token(self, index: int) -> None:
        if 0 <= index < len(self._labels):
            self.viewport().update(self.token_rect(index).adjusted(-3, -3, 3, 3).toAlignedRect())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(400, 160)

    # ---- events ------------------------------------------------------------------------------------------------------
    def _wrap_width(self) -> int:
        """The width lines wrap at: the viewport's with the vertical scroll bar shown, shown or not. When a long
        text arrives the bar appears a turn later and narrows the viewport; wrapping at the viewport's own width
        laid 10 000 tokens out a second time then, in both views (issue 10: part of the stall after a paste)."""
        bar = self.verticalScrollBar()
        width = self.viewport().width()
        return width if bar.isVisible() else width - bar.sizeHint().width()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._wrap_width() != self._layout_width:
            self._relayout()
        else:
            self.verticalScrollBar().setPageStep(self.viewport().height())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self.viewport())
        painter.fillRect(event.rect(), self.palette().color(QPalette.ColorRole.Base))
        if not self._labels:
            if self._placeholder:
                painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
                painter.drawText(self.viewport().rect().adjusted(8, 6, -8, -6),
                                 Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                                 self._placeholder)
            return
        painter.setFont(self.font())
        top = self.verticalScrollBar().value() + event.rect().top()
        bottom = self.verticalScrollBar().value() + event.rect().bottom()
        first_line = max(0, int((top - 4.0) // self._line_h))
        last_line = min(self._n_lines - 1, int((bottom - 4.0) // self._line_h))
        if first_line > last_line:
            return
        ascent = self._fm.ascent() + 1.0
        fills, text_pens, hover_pen = token_colors(self)
        marked = {self._hover, self._linked, self._selected} - {-1}
        for box in range(self._line_first_box[first_line], self._line_first_box[last_line + 1]):
            token = self._box_token[box]
            rect = self._box_rect(box)
            painter.fillRect(rect, fills[token % len(fills)])
            style = self._styles[token]
            painter.setPen(text_pens[style])
            x = rect.x() + PAD_X
            for run in shaping_runs(self._box_text[box]):  # text and hex bytes apart: a virama cannot take the "<"
                painter.drawText(QPointF(x, rect.y() + ascent), run)
                x += self._fm.horizontalAdvance(run)
            if style == 1:  # partial: a dashed underline says "this is a piece of a character"
                painter.setPen(QPen(text_pens[1], 1, Qt.PenStyle.DashLine))
                y = rect.bottom() - 1
                painter.drawLine(QPointF(rect.left() + 1, y), QPointF(rect.right() - 1, y))
            if token in marked:
                pen = QPen(SELECTED_PEN if token == self._selected else hover_pen, 2.0)
                painter.setPen(pen)
                painter.drawRect(rect.adjusted(1, 1, -1, -1))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._set_hover(self.index_at(event.position()))
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._set_hover(-1)
        super().leaveEvent(event)

    def _set_hover(self, index: int) -> None:
        if index != self._hover:
            self._update_token(self._hover)
            self._hover = index
            self._update_token(index)
            self.sig_hovered.emit(index)

    @property
    def hovered(self) -> int:
        return self._hover

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            index = self.index_at(event.position())
            if index >= 0:
                self.set_selected(index, ensure_visible=False)
                self.sig_clicked.emit(index)
        super().mousePressEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        step = {Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1}.get(event.key())
        if step and self._labels:
            index = min(max(self._selected + step, 0), len(self._labels) - 1) if self._selected >= 0 else 0
            self.set_selected(index)
            self.sig_clicked.emit(index)
            return
        super().keyPressEvent(event)

    def viewportEvent(self, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == event.Type.ToolTip and self.tooltip_for is not None:
            index = self.index_at(QPointF(event.pos()))
            if index >= 0:
                QToolTip.showText(event.globalPos(), self.tooltip_for(index), self.viewport(),
                                  self.token_rect(index).toAlignedRect())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)


def titled(title: str, widget: QWidget, hint: str = "", button: QWidget | None = None) -> QWidget:
    """A heading (bold title, a hint in grey, an optional button at the right) above ``widget``."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 4, 0, 0)
    layout.setSpacing(2)
    heading = QLabel(f"<b>{title}</b>&nbsp;&nbsp;<span style='color:{hint_color()}'>{hint}</span>")
    if button is None:
        layout.addWidget(heading)
    else:
        row = QHBoxLayout()
        row.addWidget(heading, 1)
        row.addWidget(button)
        layout.addLayout(row)
    layout.addWidget(widget, 1)
    return box


def marked_characters(editor, text: str, span) -> QTextEdit.ExtraSelection:
    """An extra selection of ``editor`` (showing ``text``) over the characters of ``span``, in the palette's
    highlight colours (a fixed light yellow was unreadable in dark themes)."""
    start = len(text[: span.char_start].encode("utf-16-le")) // 2  # Qt positions count UTF-16 units
    end = start + len(text[span.char_start : span.char_end].encode("utf-16-le")) // 2
    selection = QTextEdit.ExtraSelection()
    fmt = QTextCharFormat()
    background, foreground = selection_colors(editor)
    fmt.setBackground(background)
    fmt.setForeground(foreground)
    selection.format = fmt
    cursor = QTextCursor(editor.document())
    cursor.setPosition(start)
    cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
    selection.cursor = cursor
    return selection
