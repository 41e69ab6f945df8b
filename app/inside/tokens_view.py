"""Every position predicts: the text with each token coloured by how likely the model found it, given all before it.

Colour by probability (the Generation pane's five bins) or by GLTR's rank buckets (was the token the model's top
choice, in its top 10, 100, 1000, or further down?). Hovering a token shows its loss and the model's top guesses
there; clicking it chooses the position the other views look at.
"""

from collections.abc import Callable

from PySide6.QtCore import QEvent, QPoint, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QTextEdit, QToolTip, QWidget

from app.theme import PROB_BINS, Chip, chip_colors, prob_color, selection_colors

RANK_COLORS = (  # GLTR's buckets, best first, in the probability bins' hues
    (QColor("#94d3a9"), "top 1"),
    (QColor("#c9e6a3"), "top 10"),
    (QColor("#f2e49b"), "top 100"),
    (QColor("#f7c99a"), "top 1000"),
    (QColor("#d8b4e8"), "rank > 1000"),
)
FIRST_COLOR = QColor(200, 200, 200)  # the first token: nothing came before it, so nothing predicted it
MODES = ("probability", "rank")
PIECE = 256  # tokens inserted per event-loop turn


def _utf16_len(text: str) -> int:
    """Length in the UTF-16 units QTextDocument counts positions in (an emoji is 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class TokensView(QTextEdit):
    """Read-only text, one coloured span per token; ``sig_position_clicked(t)`` when token t is clicked."""

    sig_position_clicked = Signal(int)
    """The user clicked the token at this position (0 = the first token shown)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.setFont(font)
        self.setMouseTracking(True)
        self.viewport().setCursor(Qt.CursorShape.PointingHandCursor)
        self.tooltip_for: Callable[[int], str] | None = None
        self.mode = "probability"
        self._spans: list[tuple[int, int]] = []  # per position: (document start, length in UTF-16 units)
        self._probs: list[float] = []
        self._buckets: list[int] = []
        self.selected = -1
        self._formats: dict[tuple[int, bool], QTextCharFormat] = {}
        self._shown: list[str] = []  # each token's text as inserted
        self._inserted = 0  # tokens inserted so far (see insert_more)

    @property
    def n_tokens(self) -> int:
        return len(self._spans)

    def set_tokens(self, pieces: list[str], probs: list[float], buckets: list[int], selected: int = -1):
        """pieces: each token's text; probs / buckets: of tokens 1..T-1 (the first has no prediction)."""
        # an empty piece (the first bytes of a character) still needs a spot to hover: a thin marker
        shown = [piece if piece else "·" for piece in pieces]
        spans, start = [], 0
        for piece in shown:
            spans.append((start, _utf16_len(piece)))
            start += spans[-1][1]
        self.begin(shown, spans, probs, buckets, selected)
        while self.insert_more():
            pass

    def begin(self, shown: list[str], spans: list[tuple[int, int]], probs: list[float], buckets: list[int],
              selected: int = -1):
        """Start showing a new text: each token's text, its (start, length) in UTF-16 units, as ``set_tokens`` makes
        them. ``insert_more`` then adds it a piece at a time (one per event-loop turn keeps a long text from holding
        up the UI)."""
        self._probs, self._buckets, self.selected = probs, buckets, selected
        self.clear()
        self._shown, self._spans, self._inserted = shown, spans, 0

    def insert_more(self, count: int = PIECE) -> bool:
        """Insert the next ``count`` tokens; True while some are left. Scrolls to the end after the last."""
        end = min(len(self._shown), self._inserted + count)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()  # one layout for the piece, not one per token
        for t in range(self._inserted, end):
            cursor.insertText(self._shown[t], self._format(t))
        cursor.endEditBlock()
        self._inserted = end
        if end < len(self._shown):
            return True
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())
        return False

    def color_of(self, t: int) -> QColor:
        if t == 0 or t - 1 >= len(self._probs):
            return FIRST_COLOR
        if self.mode == "rank":
            return RANK_COLORS[self._buckets[t - 1]][0]
        return prob_color(self._probs[t - 1])

    def _format(self, t: int) -> QTextCharFormat:
        color, selected = self.color_of(t), t == self.selected
        key = (color.rgba(), selected)
        fmt = self._formats.get(key)  # a dozen formats serve every token: making one per token cost ~0.1 ms each
        if fmt is None:
            fmt = QTextCharFormat()
            background, foreground = chip_colors(color, self)  # light chips on a light base, dark ones on a dark
            fmt.setForeground(foreground)
            fmt.setBackground(background)
            if selected:
                fmt.setFontUnderline(True)
                fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
                fmt.setUnderlineColor(selection_colors(self)[0])
                fmt.setFontWeight(700)
            self._formats[key] = fmt
        return fmt

    def _restyle(self, positions):
        for t in positions:
            if 0 <= t < self._inserted:
                start, length = self._spans[t]
                cursor = QTextCursor(self.document())
                cursor.setPosition(start)
                cursor.setPosition(start + length, QTextCursor.MoveMode.KeepAnchor)
                cursor.setCharFormat(self._format(t))

    def changeEvent(self, event):  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._formats.clear()
            self._restyle(range(len(self._spans)))

    def set_mode(self, mode: str):
        if mode not in MODES:
            raise ValueError(f"colour mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self._restyle(range(len(self._spans)))

    def select(self, t: int):
        old, self.selected = self.selected, t
        self._restyle([old, t])

    def span_of(self, t: int) -> tuple[int, int]:
        """(document start, length) of token t, in the document's UTF-16 positions."""
        return self._spans[t]

    def rect_of(self, t: int):
        """The viewport rectangle of token t's first character (tests hover there)."""
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._spans[t][0] + 1)
        return self.cursorRect(cursor)

    def position_at(self, pos: QPoint) -> int | None:
        cursor = self.cursorForPosition(pos)
        if not self.cursorRect(cursor).adjusted(-12, -2, 12, 2).contains(pos):
            return None
        where = cursor.position()
        for candidate in (where - 1, where):
            for t, (start, length) in enumerate(self._spans):
                if start <= candidate < start + length:
                    return t
        return None

    def viewportEvent(self, event):  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ToolTip:
            t = self.position_at(event.pos())
            if t is not None and self.tooltip_for is not None:
                QToolTip.showText(event.globalPos(), self.tooltip_for(t), self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt override
        super().mouseReleaseEvent(event)
        if event.button() == Qt.MouseButton.LeftButton and not self.textCursor().hasSelection():
            t = self.position_at(event.position().toPoint())
            if t is not None:
                self.sig_position_clicked.emit(t)


class Legend(QWidget):
    """Colour chips for the current mode."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._chips: list[Chip] = []
        self.set_mode("probability")

    def set_mode(self, mode: str):
        while self._layout.count():
            item = self._layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        items = [(c, text) for _, c, text in PROB_BINS] if mode == "probability" else list(RANK_COLORS)
        self._layout.addWidget(QLabel("p of the true token:" if mode == "probability" else "its rank:"))
        self._chips = [Chip(text, color) for color, text in items + [(FIRST_COLOR, "first (unpredicted)")]]
        for chip in self._chips:
            chip.restyle(self)
            self._layout.addWidget(chip)
        self._layout.addStretch(1)

    def changeEvent(self, event):  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            for chip in self._chips:
                chip.restyle(self)
