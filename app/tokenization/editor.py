"""A plain-text editor that takes megabytes without freezing: long pastes and drops go in a piece at a time.

Qt inserts a paste in one call on the UI thread: 1 MB of text took 0.35-0.55 s here, 300 000 ids on one line over 2 s
plus as long again to lay the line out. :class:`PieceEdit` inserts ``PIECE_CHARS`` at a time (about 30 ms each),
one piece per turn of the event loop, all as one undo step, and is read-only until the last piece is in. A line of
ids is broken into short lines first (``break_long_lines``): Qt lays out a whole line at once, however long.
"""

import re

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from engine.tokenizers.text import chunks

PIECE_CHARS = 32_768  # inserted per turn of the event loop (up to twice that where a long line has no break)
_BREAK = re.compile(r"([^\n]{100}[^\s,;\n]*)(?:(,|;)[ \t]*|[ \t]+)(?=[^\n])")


def break_long_lines(text: str) -> str:
    """Break lines of ids after a separator about every 100 characters; the ids and their separators are kept.

    >>> text = ", ".join(["12345"] * 40)
    >>> lines = break_long_lines(text).split("\\n")
    >>> [len(line) for line in lines], " ".join(lines) == text
    ([104, 104, 68], True)
    """
    return _BREAK.sub(lambda m: m.group(1) + (m.group(2) or "") + "\n", text)


class PieceEdit(QPlainTextEdit):
    """QPlainTextEdit whose long pastes, drops and :meth:`set_text_in_pieces` arrive a piece per event-loop turn."""

    sig_insert_progress = Signal(int, int)
    """(characters inserted, characters in all) while a long text goes in; the two are equal at the end."""

    def __init__(self, parent=None, *, prepare=None):
        super().__init__(parent)
        self._prepare = prepare  # applied to long pasted text first (break_long_lines for ids)
        self._queue: list[str] = []
        self._cursor: QTextCursor | None = None
        self._done = self._total = 0
        self._was_read_only = False
        # A timer between pieces, not QTimer.singleShot(0, ...): Qt 6 posts a zero single-shot as an event, and
        # posted events can run back to back in one pass of the event loop, so a piece and whatever else was posted
        # (the token views' layout) made one freeze. A timer lets input, painting and other timers in between.
        self._next_piece = QTimer(self)
        self._next_piece.setSingleShot(True)
        self._next_piece.setInterval(0)
        self._next_piece.timeout.connect(self._insert_next)

    @property
    def inserting(self) -> bool:
        """A long text is still going in."""
        return self._cursor is not None

    def insertFromMimeData(self, source) -> None:  # noqa: N802 - Qt override
        text = source.text() if source.hasText() else ""
        if len(text) <= PIECE_CHARS or self.inserting:
            super().insertFromMimeData(source)
            return
        self._start(self.textCursor(), text, undo=True, prepare=self._prepare)

    def set_text_in_pieces(self, text: str) -> None:
        """Replace the whole text (not undoable, as setPlainText), a piece per event-loop turn when it is long."""
        self._stop()
        if len(text) <= PIECE_CHARS:
            self.setPlainText(text)
            return
        self.setPlainText("")
        self.document().setUndoRedoEnabled(False)
        self._start(QTextCursor(self.document()), text, undo=False)

    def _start(self, cursor: QTextCursor, text: str, *, undo: bool, prepare=None) -> None:
        # prepare goes piece by piece too (on 2 MB of ids it took 60 ms at once); pieces join seamlessly
        self._prepare_piece = prepare or (lambda piece: piece)
        self._queue = chunks(text, PIECE_CHARS)[::-1]  # popped from the end; "\r\n" never split
        self._done, self._total, self._undo = 0, len(text), undo
        self._was_read_only = self.isReadOnly()
        self.setReadOnly(True)  # typing between the pieces would land in the middle of the paste
        self._cursor = cursor  # inserting from here on: the first piece's textChanged must see it (issue 10)
        cursor.beginEditBlock()  # the first piece opens the undo step the others join
        cursor.removeSelectedText()
        cursor.insertText(self._prepare_piece(self._queue.pop()))
        cursor.endEditBlock()
        self._done = self._total - sum(map(len, self._queue))
        self.sig_insert_progress.emit(self._done, self._total)
        self._next_piece.start()

    def _insert_next(self) -> None:
        cursor = self._cursor
        if cursor is None:
            return
        if self._queue:
            piece = self._queue.pop()
            cursor.joinPreviousEditBlock()
            cursor.insertText(self._prepare_piece(piece))
            cursor.endEditBlock()
            self._done += len(piece)
            self.sig_insert_progress.emit(self._done, self._total)
        if self._queue:
            self._next_piece.start()
            return
        self._stop()
        if self._undo:
            self.setTextCursor(cursor)  # the caret after the paste, as Qt leaves it
        else:
            self.document().setUndoRedoEnabled(True)
            self.moveCursor(QTextCursor.MoveOperation.Start)

    def _stop(self) -> None:
        self._next_piece.stop()
        if self._cursor is not None:
            self._cursor = None
            self._queue = []
            self.setReadOnly(self._was_read_only)
