"""The prompt followed by the generated tokens, each coloured by the probability it had when it was chosen.

Tokens arrive as bytes, and a token may hold only part of a character, so the text is decoded incrementally: a
token's piece is whatever complete characters its bytes finish (empty for the first half of an emoji). Hovering a
generated piece asks ``tooltip_for(step)`` for the alternatives of that step. Whitespace is drawn visibly (a dot per
space, ¶ at a line end) on the token's coloured chip, while the text itself stays the model's.
"""

import codecs
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint
from PySide6.QtGui import QColor, QFontDatabase, QPalette, QTextCharFormat, QTextCursor, QTextOption
from PySide6.QtWidgets import QHBoxLayout, QLabel, QTextEdit, QToolTip, QWidget

from app.theme import PROB_BINS, Chip, chip_colors, hint_color, is_dark, mix, prob_color

FORCED_COLOR = QColor("#d3c4ef")
START_COLOR = QColor(225, 225, 225)  # behind the start token of an empty prompt (on a light base)


def _utf16_len(text: str) -> int:
    """Length in the UTF-16 units QTextDocument counts positions in (an emoji is 2)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Piece:
    step: int  # index into the session history
    start: int  # document position
    length: int  # UTF-16 units
    decoder_state: tuple  # the incremental decoder's state before this token


class GeneratedText(QTextEdit):
    """Read-only text: the prompt in grey, then one coloured piece per generated token."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.setFont(font)
        self.setMouseTracking(True)
        option = self.document().defaultTextOption()  # spaces as dots, line ends as ¶: a whitespace token is seen
        option.setFlags(option.flags() | QTextOption.Flag.ShowTabsAndSpaces
                        | QTextOption.Flag.ShowLineAndParagraphSeparators)
        self.document().setDefaultTextOption(option)
        self.tooltip_for: Callable[[int], str] | None = None
        self._pieces: list[_Piece] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def n_pieces(self) -> int:
        return len(self._pieces)

    def set_prompt(self, text: str, start_token: str | None = None):
        """Start over: only the prompt. ``start_token`` is the visible label of the token an empty prompt becomes
        (the model needs one to predict from); it is shown boxed, so the user sees what the model was given."""
        self.clear()
        self._pieces.clear()
        self._decoder.reset()
        fmt = QTextCharFormat()
        fmt.setForeground(QColor(hint_color(self)))
        if start_token is not None and not text:
            boxed = QTextCharFormat(fmt)
            p = self.palette()
            boxed.setBackground(mix(p.color(QPalette.ColorRole.Base), p.color(QPalette.ColorRole.Text), 0.2)
                                if is_dark(self) else START_COLOR)
            self.textCursor().insertText(start_token, boxed)
        self.textCursor().insertText(text, fmt)

    def append_token(self, data: bytes, prob: float, forced: bool = False):
        state = self._decoder.getstate()
        text = self._decoder.decode(data)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        start = cursor.position()
        fmt = QTextCharFormat()
        background, foreground = chip_colors(FORCED_COLOR if forced else prob_color(prob), self)
        fmt.setForeground(foreground)
        fmt.setBackground(background)
        if forced:
            fmt.setFontUnderline(True)
        cursor.insertText(text, fmt)
        self._pieces.append(_Piece(len(self._pieces), start, _utf16_len(text), state))
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def pop_token(self):
        piece = self._pieces.pop()
        cursor = QTextCursor(self.document())
        cursor.setPosition(piece.start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self._decoder.setstate(piece.decoder_state)

    def generated_text(self) -> str:
        """The text of the generated pieces only (what the tests compare)."""
        if not self._pieces:
            return ""
        units = self.toPlainText().encode("utf-16-le", "surrogatepass")  # positions count UTF-16 units
        return units[2 * self._pieces[0].start:].decode("utf-16-le", "surrogatepass")

    # ---- hover -------------------------------------------------------------------------------------------------
    def step_at(self, pos: QPoint) -> int | None:
        """The generated step under a viewport position, or None over the prompt or empty space."""
        cursor = self.cursorForPosition(pos)
        if not self.cursorRect(cursor).adjusted(-12, -2, 12, 2).contains(pos):
            return None  # past the end of a line
        where = cursor.position()
        for candidate in (where, where - 1):  # the character to either side of the caret gap under the mouse
            for piece in reversed(self._pieces):
                if piece.start <= candidate < piece.start + piece.length:
                    return piece.step
                if piece.start + piece.length <= candidate:
                    break
        return None

    def viewportEvent(self, event):  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ToolTip:
            step = self.step_at(event.pos())
            if step is not None and self.tooltip_for is not None:
                QToolTip.showText(event.globalPos(), self.tooltip_for(step), self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)


class Legend(QWidget):
    """A row of colour chips saying what the token colours mean, coloured as the text view colours its tokens."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        title = QLabel("p:")
        title.setToolTip("The colour of a generated token: the probability it had when it was chosen")
        layout.addWidget(title)
        self.chips = [Chip(text, color) for _, color, text in PROB_BINS] + [Chip("forced", FORCED_COLOR, True)]
        for chip in self.chips:
            chip.restyle(self)
            layout.addWidget(chip)
        layout.addStretch(1)

    def changeEvent(self, event):  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            for chip in self.chips:
                chip.restyle(self)
